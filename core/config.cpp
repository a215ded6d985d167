#include "core/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/url.hpp"
#include "protocol/limits.hpp"

namespace spiderhub::core {
namespace {

// Walks one YAML mapping: each get() consumes a key, finish() rejects the rest.
class section {
 public:
  section(YAML::Node node, std::string file, std::string path)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
    if (node_ && !node_.IsNull() && !node_.IsMap())
      fail(node_, "'" + display_path() + "' must be a mapping");
  }

  void get(const char* key, std::string& out) {
    if (auto v = take(key)) {
      if (!v.IsScalar())
        fail(v, "'" + full(key) + "' must be a string");
      out = v.Scalar();
    }
  }

  void get(const char* key, bool& out) {
    if (auto v = take(key)) {
      bool b = false;
      if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b))
        fail(v, "'" + full(key) + "' must be true or false");
      out = b;
    }
  }

  template <class Int>
  void get(const char* key, Int& out, std::int64_t min,
           std::int64_t max = std::numeric_limits<Int>::max()) {
    if (auto v = take(key)) {
      std::int64_t x = 0;
      if (!v.IsScalar() || !YAML::convert<std::int64_t>::decode(v, x))
        fail(v, "'" + full(key) + "' must be an integer, got '" + scalar_of(v) + "'");
      if (x < min || x > max)
        fail(v, "'" + full(key) + "' = " + std::to_string(x) + " is out of range " +
                  std::to_string(min) + ".." + std::to_string(max));
      out = static_cast<Int>(x);
    }
  }

  void get_ms(const char* key, milliseconds& out, std::int64_t min_ms, std::int64_t max_ms) {
    std::int64_t v = out.count();
    get(key, v, min_ms, max_ms);
    out = milliseconds{v};
  }

  void get_one_of(const char* key, std::string& out, std::initializer_list<const char*> allowed) {
    auto v = take(key);
    if (!v)
      return;
    if (!v.IsScalar())
      fail(v, "'" + full(key) + "' must be a string");
    std::string joined;
    for (auto a : allowed) {
      if (v.Scalar() == a) {
        out = v.Scalar();
        return;
      }
      joined += joined.empty() ? a : std::string(", ") + a;
    }
    fail(v, "'" + full(key) + "' = '" + v.Scalar() + "' must be one of: " + joined);
  }

  section child(const char* key) { return section(take(key), file_, full(key)); }

  /// A sequence of mappings under `key` (absent: none), one section per element.
  std::vector<section> list(const char* key) {
    std::vector<section> out;
    auto v = take(key);
    if (!v)
      return out;
    if (!v.IsSequence())
      fail(v, "'" + full(key) + "' must be a list");
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto path = full(key) + "[" + std::to_string(i) + "]";
      if (!v[i].IsMap())
        fail(v[i], "'" + path + "' must be a mapping");
      out.emplace_back(v[i], file_, path);
    }
    return out;
  }

  /// Broker base URLs: one URL, "URL1,URL2" or a YAML list of URLs (core::parse_broker_urls
  /// checks each). Absent: `out` is kept.
  void get_broker_urls(const char* key, std::vector<std::string>& out) {
    auto v = take(key);
    if (!v)
      return;
    std::vector<std::string> urls;
    auto add = [&](const YAML::Node& at, const std::string& path) {
      if (!at.IsScalar())
        fail(at, "'" + path + "' must be a URL or a comma-separated list of URLs");
      try {
        for (auto& u : parse_broker_urls(at.Scalar(), "'" + path + "'"))
          urls.push_back(std::move(u));
      } catch (const input_error& e) {
        fail(at, e.what());
      }
    };
    if (v.IsSequence()) {
      if (v.size() == 0)
        fail(v, "'" + full(key) + "' is an empty list: name at least one broker URL");
      for (std::size_t i = 0; i < v.size(); ++i)
        add(v[i], full(key) + "[" + std::to_string(i) + "]");
      // Twice across elements: parse_broker_urls of the whole list says which.
      std::string joined;
      for (auto& u : urls)
        joined += (joined.empty() ? "" : ",") + u;
      try {
        parse_broker_urls(joined, "'" + full(key) + "'");
      } catch (const input_error& e) {
        fail(v, e.what());
      }
    } else {
      add(v, full(key));
    }
    out = std::move(urls);
  }

  bool has(const char* key) const { return node_ && node_.IsMap() && node_[key]; }
  const YAML::Node& node() const { return node_; }

  void finish() {
    if (!node_ || !node_.IsMap())
      return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      if (!it->first.IsScalar())
        fail(it->first, "keys of '" + display_path() + "' must be plain names");
      auto name = it->first.Scalar();
      if (!seen_.count(name))
        fail(it->first, "unknown key '" + (path_.empty() ? name : path_ + "." + name) + "'");
    }
  }

  [[noreturn]] void fail(const YAML::Node& at, const std::string& msg) const {
    auto m = at.Mark();
    std::ostringstream os;
    os << file_;
    if (!m.is_null())
      os << ':' << (m.line + 1) << ':' << (m.column + 1);
    os << ": " << msg;
    throw input_error(os.str());
  }

 private:
  YAML::Node take(const char* key) {
    seen_.insert(key);
    if (!node_ || !node_.IsMap())
      return YAML::Node(YAML::NodeType::Undefined);
    auto v = node_[key];
    if (!v || v.IsNull())
      return YAML::Node(YAML::NodeType::Undefined);
    return v;
  }
  static std::string scalar_of(const YAML::Node& v) { return v.IsScalar() ? v.Scalar() : "?"; }
  std::string full(const char* key) const { return path_.empty() ? key : path_ + "." + key; }
  std::string display_path() const { return path_.empty() ? "(top level)" : path_; }

  YAML::Node node_;
  std::string file_;
  std::string path_;
  std::set<std::string> seen_;
};

YAML::Node parse_yaml(const std::string& text, const std::string& name) {
  try {
    auto root = YAML::Load(text);
    if (root && !root.IsNull() && !root.IsMap())
      throw input_error(name + ": the top level must be a mapping of keys");
    return root;
  } catch (const YAML::Exception& e) {
    std::ostringstream os;
    os << name;
    if (!e.mark.is_null())
      os << ':' << (e.mark.line + 1) << ':' << (e.mark.column + 1);
    os << ": YAML syntax error: " << e.msg;
    throw input_error(os.str());
  }
}

std::string read_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw input_error(file + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr std::int64_t day_ms = 24LL * 3600 * 1000;

void read_client_tls(section s, client_tls_config& t) {
  s.get("ca_file", t.ca_file);
  s.get("verify", t.verify);
  s.finish();
}

void read_log(section s, log_config& c) {
  s.get_one_of("level", c.level, {"trace", "debug", "info", "warn", "error", "critical", "off"});
  s.get("file", c.file);
  s.get("max_file_bytes", c.max_file_bytes, 4096);
  s.get("max_files", c.max_files, 1, 100);
  s.finish();
}

void read_actors(section s, actors_config& c) {
  s.get("threads", c.threads, 0, 256);
  s.get_one_of("policy", c.policy, {"sharing", "stealing"});
  s.finish();
}

} // namespace

broker_config parse_broker_config(const std::string& yaml, const std::string& name) {
  broker_config c;
  section top(parse_yaml(yaml, name), name, "");
  {
    auto s = top.child("http");
    auto& h = c.http;
    s.get("address", h.address);
    s.get("port", h.port, 0, 65535);
    s.get("io_threads", h.io_threads, 1, 64);
    s.get("max_body_bytes", h.max_body_bytes, 1024, 1LL << 32);
    s.get("max_message_bytes", h.max_message_bytes, 1024, 1LL << 32);
    s.get("max_write_queue_bytes", h.max_write_queue_bytes, 1LL << 20, 1LL << 34);
    s.get_ms("handshake_timeout_ms", h.handshake_timeout, 100, day_ms);
    s.get_ms("idle_timeout_ms", h.idle_timeout, 1000, day_ms);
    s.get("max_connections", h.max_connections, 1, 1000000);
    s.get("tls_cert", h.tls_cert);
    s.get("tls_key", h.tls_key);
    if (h.tls_cert.empty() != h.tls_key.empty())
      throw input_error(name + ": http.tls_cert and http.tls_key must be set together");
    s.finish();
  }
  {
    auto s = top.child("auth");
    bool token_given = s.has("token");
    s.get("token", c.auth.token);
    s.get("sign_window_s", c.auth.sign_window_s, 1, 86400);
    s.get("insecure", c.auth.insecure);
    s.get("max_failures", c.auth.max_failures, 1, 1000000);
    s.get("failure_window_s", c.auth.failure_window_s, 1, 86400);
    s.get("block_s", c.auth.block_s, 1, 86400);
    std::set<std::string> names;
    for (auto& e : s.list("tokens")) {
      credential cr;
      std::string role_text;
      e.get("name", cr.name);
      e.get_one_of("role", role_text, {"node", "worker", "viewer", "admin"});
      e.get("secret", cr.secret);
      if (cr.name.empty() || role_text.empty() || cr.secret.empty())
        e.fail(e.node(), "every auth.tokens entry needs name, role and secret");
      cr.role_ = *parse_role(role_text);
      e.finish();
      names.insert(cr.name + "/" + role_text);
      c.auth.tokens.push_back(std::move(cr));
    }
    if (names.size() != c.auth.tokens.size())
      throw input_error(name + ": auth.tokens: a name appears twice with one role");
    if (!c.auth.tokens.empty() && !token_given)
      c.auth.token.clear();  // the legacy default must not stay valid beside a token list
    s.finish();
  }
  {
    auto s = top.child("storage");
    s.get_one_of("kind", c.storage.kind, {"sqlite", "postgresql"});
    s.get("path", c.storage.path);
    s.get("postgresql", c.storage.postgresql);
    if (c.storage.kind == "sqlite" && c.storage.path.empty())
      throw input_error(name + ": storage.path must not be empty");
    if (c.storage.kind == "postgresql" && c.storage.postgresql.empty())
      throw input_error(name + ": storage.kind is postgresql but storage.postgresql (a libpq "
                               "connection string, e.g. 'host=db1 dbname=spiderhub "
                               "user=spiderhub') is empty");
    s.get_ms("busy_timeout_ms", c.storage.busy_timeout, 0, 600000);
    s.get("batch_max", c.storage.batch_max, 1, 1000000);
    s.get("compress_results", c.storage.compress_results);
    s.get("result_spool", c.storage.result_spool);
    s.get("spool_dir", c.storage.spool_dir);
    s.get("spool_segment_mb", c.storage.spool_segment_mb, 1, 4096);
    s.get("spool_sync", c.storage.spool_sync);
    s.get("compress_spool_above_mb", c.storage.compress_spool_above_mb, 0, 1000000);
    s.get("node_status_retention_h", c.storage.node_status_retention_h, 1, 24 * 365);
    s.get("audit_max_rows", c.storage.audit_max_rows, 1, 100000000);
    s.finish();
  }
  {
    auto s = top.child("failover");
    s.get("name", c.failover.name);
    s.get("advertise_url", c.failover.advertise_url);
    s.get_ms("lease_ms", c.failover.lease, 1000, 600000);
    s.get_ms("poll_ms", c.failover.poll, 50, 60000);
    if (c.failover.poll >= c.failover.lease)
      throw input_error(name + ": failover.poll_ms must be below failover.lease_ms");
    s.finish();
  }
  {
    auto s = top.child("sessions");
    s.get_ms("heartbeat_interval_ms", c.sessions.heartbeat_interval, 100, day_ms);
    s.get("missed_heartbeats", c.sessions.missed_heartbeats, 1, 100);
    s.finish();
  }
  {
    auto s = top.child("dispatch");
    auto& d = c.dispatch;
    s.get("block_size", d.block_size, 1, 100000);
    s.get_ms("lease_timeout_ms", d.lease_timeout, 1000, day_ms);
    s.get("max_attempts", d.max_attempts, 1, 1000);
    s.get("max_redirects", d.max_redirects, 0, 100);
    s.get("thread_num", d.thread_num, 1, 1000);
    s.get("max_poll", d.max_poll, 1, 100000);
    s.get("max_poll_bytes", d.max_poll_bytes, 1024, 1LL << 32);
    s.get("max_body_bytes", d.max_body_bytes, 1024, 1LL << 32);
    s.get("blocks_per_node", d.blocks_per_node, 1, 1000);
    s.get_ms("slow_node_block_ms", d.slow_node_block, 0, day_ms);
    s.get("frontier_memory_max", d.frontier_memory_max, 0, 1LL << 40);
    s.get("max_unacked_results", d.max_unacked, 0, 1LL << 40);
    s.get("max_unacked_bytes", d.max_unacked_bytes, 0, 1LL << 44);
    s.finish();
    // One result alone must fit in a hub message, and a Poll reply (its byte budget, or
    // one result over it) in a worker's write queue with room to spare.
    auto wire = protocol::result_wire_bytes(d.max_body_bytes);
    if (wire > c.http.max_message_bytes)
      throw input_error(name + ": dispatch.max_body_bytes " + std::to_string(d.max_body_bytes) +
                        " does not fit in http.max_message_bytes " +
                        std::to_string(c.http.max_message_bytes) + ": a body that size takes up to " +
                        std::to_string(wire) + " bytes on the wire (base64 and 1 MiB for the rest of "
                        "the result); raise http.max_message_bytes or lower dispatch.max_body_bytes");
    auto reply = std::max(d.max_poll_bytes, c.http.max_message_bytes);
    if (2 * reply > c.http.max_write_queue_bytes)
      throw input_error(name + ": http.max_write_queue_bytes " +
                        std::to_string(c.http.max_write_queue_bytes) +
                        " must be at least twice the largest Poll reply, max(dispatch.max_poll_bytes, "
                        "http.max_message_bytes) = " + std::to_string(reply));
  }
  {
    auto s = top.child("politeness");
    auto& d = c.politeness;
    s.get_one_of("key", d.key, {"host", "domain", "ip"});
    s.get("max_concurrency_per_host", d.max_concurrency_per_host, 1, 100000);
    s.get_ms("delay_ms", d.delay, 0, 3600000);
    s.get_ms("max_delay_ms", d.max_delay, 0, day_ms);
    s.get("robots", d.robots);
    s.get("adaptive", d.adaptive);
    s.get_ms("robots_ttl_ms", d.robots_ttl, 1000, 30 * day_ms);
    s.get_ms("robots_retry_ms", d.robots_retry, 1, day_ms);
    s.get("robots_max_attempts", d.robots_max_attempts, 1, 100);
    s.get_ms("backoff_initial_ms", d.backoff_initial, 1, day_ms);
    s.get("backoff_after_errors", d.backoff_after_errors, 1, 1000);
    s.finish();
  }
  {
    auto s = top.child("scheduler");
    auto& d = c.scheduler;
    s.get_one_of("kind", d.kind, {"builtin", "schedulernet"});
    s.get("timezone", d.timezone);
    s.get("misfire_grace_s", d.misfire_grace_s, 0, 86400 * 7);
    s.get("schedulernet_url", d.schedulernet_url);
    s.get("schedulernet_token", d.schedulernet_token);
    s.get("callback_base_url", d.callback_base_url);
    if (d.kind == "schedulernet" && d.schedulernet_url.empty())
      throw input_error(name + ": scheduler.schedulernet_url is required when kind is schedulernet");
    s.finish();
  }
  {
    auto s = top.child("inspector");
    auto& d = c.inspector;
    s.get("enabled", d.enabled);
    s.get("address", d.address);
    s.get("port", d.port, 0, 65535);
    s.get("secret", d.secret);
    bool loopback = d.address == "127.0.0.1" || d.address == "localhost" || d.address == "::1";
    if (d.enabled && !loopback && d.secret.empty())
      throw input_error(name + ": inspector.secret is required when inspector.address is not loopback");
    s.finish();
  }
  {
    auto s = top.child("packages");
    auto& d = c.packages;
    s.get("dir", d.dir);
    s.get("max_bytes", d.max_bytes, 1024, 1LL << 40);
    s.get("max_unpacked_bytes", d.max_unpacked_bytes, 1024, 1LL << 42);
    s.finish();
  }
  {
    auto s = top.child("placement");
    auto& d = c.placement;
    s.get("max_cpu", d.max_cpu, 1, 100);
    s.get("min_free_memory_mb", d.min_free_memory_mb, 0, 1 << 30);
    s.get("online_window_s", d.online_window_s, 1, 86400);
    s.finish();
  }
  read_actors(top.child("actors"), c.actors);
  read_log(top.child("log"), c.log);
  top.finish();
  return c;
}

void check_client_tls(const client_tls_config& tls, const std::vector<std::string>& brokers,
                      const std::string& file) {
  if (!tls.ca_file.empty()) {
    std::ifstream in(tls.ca_file);
    if (!in)
      throw input_error(file + ": tls.ca_file '" + tls.ca_file + "' cannot be read");
  }
  bool any_secure = false;
  for (const auto& broker : brokers) {
    bool secure = broker.rfind("https://", 0) == 0 || broker.rfind("wss://", 0) == 0;
    any_secure = any_secure || secure;
    if (!secure && !tls.ca_file.empty())
      spdlog::warn("{}: tls.ca_file is set but broker {} is not https:// or wss://", file, broker);
  }
  if (any_secure && !tls.verify)
    spdlog::warn("{}: tls.verify is false: the broker's certificate is not checked, anyone on the "
                 "path can read the secret's signs and the traffic", file);
}

node_config parse_node_config(const std::string& yaml, const std::string& name) {
  node_config c;
  section top(parse_yaml(yaml, name), name, "");
  top.get_broker_urls("broker", c.brokers);
  top.get("token", c.token);
  read_client_tls(top.child("tls"), c.tls);
  top.get("node_id", c.node_id);
  top.get("id_file", c.id_file);
  top.get("group", c.group);
  top.get("node_type", c.node_type, 1, 2);
  top.get("max_process_count", c.max_process_count, 0, 10000);
  top.get_ms("heartbeat_interval_ms", c.heartbeat_interval, 100, day_ms);
  top.get("retry_download", c.retry_download, 0, 100);
  {
    auto s = top.child("download");
    auto& d = c.download;
    s.get("max_blocks", d.max_blocks, 1, 1000);
    s.get_ms("timeout_ms", d.timeout, 100, day_ms);
    s.get_ms("connect_timeout_ms", d.connect_timeout, 100, day_ms);
    s.get("max_body_bytes", d.max_body_bytes, 1024, 1LL << 32);
    s.get("max_redirects", d.max_redirects, 0, 100);
    s.get_ms("retry_backoff_ms", d.retry_backoff, 0, 600000);
    s.get("change_ip_command", d.change_ip_command);
    s.get_ms("change_ip_min_interval_ms", d.change_ip_min_interval, 0, day_ms);
    s.get("results_batch", d.results_batch, 1, 100000);
    s.get("results_batch_bytes", d.results_batch_bytes, 1024, 1LL << 32);
    s.get("max_buffered_bytes", d.max_buffered_bytes, 1LL << 20, 1LL << 40);
    s.get("allow_private_addresses", d.allow_private_addresses);
    s.get_ms("results_flush_ms", d.results_flush, 1, 60000);
    s.finish();
  }
  {
    auto s = top.child("reconnect");
    s.get_ms("initial_ms", c.reconnect.initial, 10, day_ms);
    s.get_ms("max_ms", c.reconnect.max, 10, day_ms);
    s.finish();
  }
  {
    auto s = top.child("render");
    s.get("enabled", c.render.enabled);
    s.get("chromium", c.render.chromium);
    s.get("max_tabs", c.render.max_tabs, 1, 64);
    s.finish();
  }
  {
    auto s = top.child("applications");
    auto& a = c.applications;
    s.get("work_dir", a.work_dir);
    s.get("log_dir", a.log_dir);
    s.get("cache_dir", a.cache_dir);
    s.get_ms("exit_grace_ms", a.exit_grace, 0, day_ms);
    s.get("log_max_bytes", a.log_max_bytes, 1024, 1LL << 40);
    s.get("log_files", a.log_files, 1, 100);
    s.get("max_package_bytes", a.max_package_bytes, 1024, 1LL << 40);
    s.get("max_unpacked_bytes", a.max_unpacked_bytes, 1024, 1LL << 42);
    s.get("cache_max_bytes", a.cache_max_bytes, 0, 1LL << 42);
    s.get("run_as", a.run_as);
    s.get("allow_root", a.allow_root);
    s.get("max_memory_mb", a.max_memory_mb, 0, 1LL << 30);
    s.get("max_processes", a.max_processes, 0, 1 << 22);
    s.get("max_open_files", a.max_open_files, 0, 1 << 24);
    s.get("cgroup_root", a.cgroup_root);
    s.get("isolate", a.isolate);
    s.finish();
  }
  read_actors(top.child("actors"), c.actors);
  read_log(top.child("log"), c.log);
  top.finish();
  return c;
}

worker_config parse_worker_config(const std::string& yaml, const std::string& name) {
  worker_config c;
  section top(parse_yaml(yaml, name), name, "");
  top.get_broker_urls("broker", c.brokers);
  top.get("token", c.token);
  read_client_tls(top.child("tls"), c.tls);
  top.get("full_class_name", c.full_class_name);
  if (c.full_class_name.empty())
    throw input_error(name + ": full_class_name must not be empty");
  top.get("poll_max", c.poll_max, 1, 100000);
  top.get("poll_max_bytes", c.poll_max_bytes, 1024, 1LL << 32);
  top.get_ms("poll_idle_ms", c.poll_idle, 1, 60000);
  top.get_ms("poll_wait_ms", c.poll_wait, 0, 10000);
  top.get("parse_threads", c.parse_threads, 0, 64);
  top.get_ms("reconnect_max_ms", c.reconnect_max, 10, day_ms);
  top.get_ms("idle_timeout_ms", c.idle_timeout, 1000, day_ms);
  read_log(top.child("log"), c.log);
  top.finish();
  return c;
}

broker_config load_broker_config(const std::string& file) {
  return parse_broker_config(read_file(file), file);
}
node_config load_node_config(const std::string& file) {
  return parse_node_config(read_file(file), file);
}
worker_config load_worker_config(const std::string& file) {
  return parse_worker_config(read_file(file), file);
}

} // namespace spiderhub::core
