#include "protocol/json_codec.hpp"

#include <algorithm>
#include <array>

#include "core/media_type.hpp"
#include "core/proxy.hpp"
#include "core/text_pattern.hpp"
#include "protocol/limits.hpp"

namespace spiderhub::protocol {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw core::input_error(path + ": " + what);
}

const json& object_at(const json& j, const std::string& path) {
  if (!j.is_object())
    fail(path, "expected an object");
  return j;
}

// Reads j[key] into out when present (null counts as absent); `required` makes absence an error.
void read(const json& j, const char* key, std::string& out, const std::string& path,
          bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required)
      fail(path + "." + key, "missing");
    return;
  }
  if (!it->is_string())
    fail(path + "." + key, "expected a string");
  out = it->get<std::string>();
}

template <class Int>
void read(const json& j, const char* key, Int& out, const std::string& path,
          bool required = false) {
  static_assert(std::is_integral_v<Int>);
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required)
      fail(path + "." + key, "missing");
    return;
  }
  if (!it->is_number_integer())
    fail(path + "." + key, "expected an integer");
  if (it->is_number_unsigned()) {
    auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<Int>::max()))
      fail(path + "." + key, "integer out of range");
    out = static_cast<Int>(v);
    return;
  }
  auto v = it->get<std::int64_t>();
  if (v < static_cast<std::int64_t>(std::numeric_limits<Int>::min()) ||
      v > static_cast<std::int64_t>(std::numeric_limits<Int>::max()))
    fail(path + "." + key, "integer out of range");
  out = static_cast<Int>(v);
}

void read(const json& j, const char* key, bool& out, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  if (!it->is_boolean())
    fail(path + "." + key, "expected true or false");
  out = it->get<bool>();
}

void read(const json& j, const char* key, header_map& out, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  if (!it->is_object())
    fail(path + "." + key, "expected an object of strings");
  for (auto& [k, v] : it->items()) {
    if (!v.is_string())
      fail(path + "." + key + "." + k, "expected a string");
    out[k] = v.get<std::string>();
  }
}

void read(const json& j, const char* key, std::vector<std::string>& out,
          const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  if (!it->is_array())
    fail(path + "." + key, "expected an array of strings");
  for (std::size_t i = 0; i < it->size(); ++i) {
    if (!(*it)[i].is_string())
      fail(path + "." + key + "[" + std::to_string(i) + "]", "expected a string");
    out.push_back((*it)[i].get<std::string>());
  }
}

template <class T>
void read_object(const json& j, const char* key, T& out, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  out = decode<T>(*it, path + "." + key);
}

template <class T>
void read_array(const json& j, const char* key, std::vector<T>& out, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  out = decode_array<T>(*it, path + "." + key);
}

} // namespace

namespace {
json to_json(const std::vector<redirect_hop>& hops) {
  auto out = json::array();
  for (auto& h : hops)
    out.push_back({{"status", h.status}, {"url", h.url}});
  return out;
}

void read(const json& j, const char* key, std::vector<redirect_hop>& out, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  if (!it->is_array())
    fail(path + "." + key, "expected an array");
  for (std::size_t i = 0; i < it->size(); ++i) {
    auto hpath = path + "." + key + "[" + std::to_string(i) + "]";
    object_at((*it)[i], hpath);
    redirect_hop h;
    read((*it)[i], "status", h.status, hpath);
    read((*it)[i], "url", h.url, hpath, true);
    out.push_back(std::move(h));
  }
}
} // namespace

json to_json(const request& x) {
  json j = {{"url", x.url},           {"method", x.method},   {"referer", x.referer},
            {"origin", x.origin},     {"content", x.content}, {"depth", x.depth},
            {"cycleTriedTimes", x.cycle_tried_times}, {"headers", x.headers}};
  if (!x.redirected_from.empty()) {
    j["redirectedFrom"] = x.redirected_from;
    j["redirects"] = to_json(x.redirects);
  }
  if (!x.fingerprint.empty())
    j["fingerprint"] = x.fingerprint;
  if (x.dont_filter)
    j["dontFilter"] = true;
  if (!x.proxy.empty())
    j["proxy"] = x.proxy;
  if (!x.payload.empty())
    j["payload"] = x.payload;
  return j;
}

template <> request decode<request>(const json& j, const std::string& path) {
  object_at(j, path);
  request r;
  read(j, "url", r.url, path, true);
  if (r.url.empty())
    fail(path + ".url", "must not be empty");
  read(j, "method", r.method, path);
  if (r.method.empty())
    r.method = "GET";
  read(j, "referer", r.referer, path);
  read(j, "origin", r.origin, path);
  read(j, "content", r.content, path);
  read(j, "depth", r.depth, path);
  read(j, "cycleTriedTimes", r.cycle_tried_times, path);
  read(j, "headers", r.headers, path);
  read(j, "redirectedFrom", r.redirected_from, path);
  read(j, "redirects", r.redirects, path);
  read(j, "fingerprint", r.fingerprint, path);
  if (j.contains("fingerprint") &&
      (r.fingerprint.empty() || r.fingerprint.size() > max_fingerprint_bytes))
    fail(path + ".fingerprint", "must be 1 to " + std::to_string(max_fingerprint_bytes) + " bytes");
  read(j, "dontFilter", r.dont_filter, path);
  read(j, "proxy", r.proxy, path);
  if (!r.proxy.empty() && r.proxy != "direct") {
    try {
      core::parse_proxy_url(r.proxy);
    } catch (const core::input_error& e) {
      fail(path + ".proxy", e.what());
    }
  }
  read(j, "payload", r.payload, path);
  if (r.payload.size() > max_payload_bytes)
    fail(path + ".payload", "is longer than " + std::to_string(max_payload_bytes) + " bytes");
  return r;
}

json to_json(const site& x) {
  return {{"headers", x.headers},
          {"contentType", x.content_type},
          {"domains", x.domains},
          {"userAgent", x.user_agent},
          {"accept", x.accept},
          {"encodingName", x.encoding_name},
          {"sleepTime", x.sleep_time},
          {"cycleRetryTimes", x.cycle_retry_times},
          {"cookies", x.cookies},
          {"maxConcurrencyPerHost", x.max_concurrency_per_host},
          {"delayMs", x.delay_ms},
          {"robotsTxt", x.robots_txt},
          {"politenessKey", x.politeness_key},
          {"adaptiveThrottle", x.adaptive_throttle},
          {"render", x.render ? json{{"wait", x.render->wait},
                                     {"selector", x.render->selector},
                                     {"timeoutMs", x.render->timeout_ms},
                                     {"viewportWidth", x.render->viewport_width},
                                     {"viewportHeight", x.render->viewport_height},
                                     {"blockImages", x.render->block_images},
                                     {"screenshot", x.render->screenshot}}
                              : json()},
          {"maxBodyBytes", x.max_body_bytes},
          {"allowedContentTypes", x.allowed_content_types},
          {"brokerRedirects", x.broker_redirects},
          {"maxUrlLength", x.max_url_length},
          {"maxDepth", x.max_depth},
          {"maxPages", x.max_pages},
          {"maxPagesPerHost", x.max_pages_per_host},
          {"maxRepeatedSegments", x.max_repeated_segments},
          {"verifyTls", x.verify_tls},
          {"allowPrivateAddresses", x.allow_private_addresses},
          {"sortQuery", x.sort_query},
          {"stripSessionIds", x.strip_session_ids},
          {"stripTracking", x.strip_tracking},
          {"workersPerRun", x.workers_per_run},
          {"proxies", x.proxies},
          {"proxyRotation", x.proxy_rotation},
          {"proxyMaxFailures", x.proxy_max_failures},
          {"proxyBenchMs", x.proxy_bench_ms},
          {"changeIpPattern", x.change_ip_pattern}};
}

template <> site decode<site>(const json& j, const std::string& path) {
  object_at(j, path);
  site s;
  read(j, "headers", s.headers, path);
  read(j, "contentType", s.content_type, path);
  read(j, "domains", s.domains, path);
  read(j, "userAgent", s.user_agent, path);
  read(j, "accept", s.accept, path);
  read(j, "encodingName", s.encoding_name, path);
  read(j, "sleepTime", s.sleep_time, path);
  read(j, "cycleRetryTimes", s.cycle_retry_times, path);
  read(j, "cookies", s.cookies, path);
  read(j, "maxConcurrencyPerHost", s.max_concurrency_per_host, path);
  if (s.max_concurrency_per_host < 0)
    fail(path + ".maxConcurrencyPerHost", "must be >= 0 (0 = not set)");
  read(j, "delayMs", s.delay_ms, path);
  if (s.delay_ms < -1)
    fail(path + ".delayMs", "must be >= 0, or -1 for not set");
  auto one_of = [&](const char* key, std::string& out, std::initializer_list<const char*> allowed) {
    read(j, key, out, path);
    if (out.empty() || std::any_of(allowed.begin(), allowed.end(), [&](auto a) { return out == a; }))
      return;
    std::string list;
    for (auto a : allowed)
      list += std::string("\"") + a + "\", ";
    fail(path + "." + key, "must be " + list + "or empty");
  };
  one_of("robotsTxt", s.robots_txt, {"obey", "ignore"});
  one_of("politenessKey", s.politeness_key, {"host", "domain", "ip"});
  one_of("adaptiveThrottle", s.adaptive_throttle, {"on", "off"});
  if (auto it = j.find("render"); it != j.end() && !it->is_null()) {
    auto rpath = path + ".render";
    object_at(*it, rpath);
    render_settings r;
    read(*it, "wait", r.wait, rpath);
    if (r.wait != "load" && r.wait != "networkidle" && r.wait != "selector")
      fail(rpath + ".wait", "must be \"load\", \"networkidle\" or \"selector\"");
    read(*it, "selector", r.selector, rpath);
    if (r.wait == "selector" && r.selector.empty())
      fail(rpath + ".selector", "is required with wait \"selector\"");
    read(*it, "timeoutMs", r.timeout_ms, rpath);
    if (r.timeout_ms < 100 || r.timeout_ms > 600000)
      fail(rpath + ".timeoutMs", "must be between 100 and 600000");
    read(*it, "viewportWidth", r.viewport_width, rpath);
    read(*it, "viewportHeight", r.viewport_height, rpath);
    if (r.viewport_width < 100 || r.viewport_width > 10000 || r.viewport_height < 100 ||
        r.viewport_height > 10000)
      fail(rpath + ".viewportWidth", "viewport must be 100..10000 pixels each way");
    read(*it, "blockImages", r.block_images, rpath);
    read(*it, "screenshot", r.screenshot, rpath);
    s.render = r;
  }
  read(j, "maxBodyBytes", s.max_body_bytes, path);
  if (s.max_body_bytes < 0)
    fail(path + ".maxBodyBytes", "must be >= 0 (0 = not set)");
  read(j, "allowedContentTypes", s.allowed_content_types, path);
  read(j, "brokerRedirects", s.broker_redirects, path);
  auto limit = [&](const char* key, auto& out) {
    read(j, key, out, path);
    if (out < -1)
      fail(path + "." + key, "must be >= 0 (0 = no limit), or -1 for the default");
  };
  limit("maxUrlLength", s.max_url_length);
  limit("maxDepth", s.max_depth);
  limit("maxPages", s.max_pages);
  limit("maxPagesPerHost", s.max_pages_per_host);
  limit("maxRepeatedSegments", s.max_repeated_segments);
  read(j, "verifyTls", s.verify_tls, path);
  read(j, "allowPrivateAddresses", s.allow_private_addresses, path);
  read(j, "sortQuery", s.sort_query, path);
  read(j, "stripSessionIds", s.strip_session_ids, path);
  read(j, "stripTracking", s.strip_tracking, path);
  read(j, "workersPerRun", s.workers_per_run, path);
  if (s.workers_per_run < 0 || s.workers_per_run > 1000)
    fail(path + ".workersPerRun", "must be 0 (every worker of the class) to 1000");
  read(j, "proxies", s.proxies, path);
  for (std::size_t i = 0; i < s.proxies.size(); ++i) {
    try {
      core::parse_proxy_url(s.proxies[i]);
    } catch (const core::input_error& e) {
      fail(path + ".proxies[" + std::to_string(i) + "]", e.what());
    }
  }
  read(j, "proxyRotation", s.proxy_rotation, path);
  if (!s.proxy_rotation.empty() && !core::valid_proxy_rotation(s.proxy_rotation))
    fail(path + ".proxyRotation", "must be \"round_robin\", \"random\" or \"per_host\"");
  read(j, "proxyMaxFailures", s.proxy_max_failures, path);
  if (s.proxy_max_failures < 1 || s.proxy_max_failures > 1000)
    fail(path + ".proxyMaxFailures", "must be 1 to 1000");
  read(j, "changeIpPattern", s.change_ip_pattern, path);
  if (auto why = core::pattern_problem(s.change_ip_pattern); !why.empty())
    fail(path + ".changeIpPattern", why);
  read(j, "proxyBenchMs", s.proxy_bench_ms, path);
  if (s.proxy_bench_ms < 0 || s.proxy_bench_ms > 86400000)
    fail(path + ".proxyBenchMs", "must be 0 to 86400000");
  for (auto& t : s.allowed_content_types)
    if (!core::valid_media_range(t))
      fail(path + ".allowedContentTypes",
           "'" + t + "' is not a media type (type/subtype, type/* or */*)");
  return s;
}

json to_json(const block& x) {
  return {{"blockId", x.block_id},       {"identity", x.identity},
          {"command", x.command},        {"threadNum", x.thread_num},
          {"delayMs", x.delay_ms},
          {"changeIpPattern", x.change_ip_pattern}, {"site", to_json(x.site_settings)},
          {"cookies", x.cookies},        {"requests", to_json(x.requests)}};
}

template <> block decode<block>(const json& j, const std::string& path) {
  object_at(j, path);
  block b;
  read(j, "blockId", b.block_id, path, true);
  read(j, "identity", b.identity, path, true);
  read(j, "command", b.command, path);
  if (b.command < 0 || b.command > 4)
    fail(path + ".command", "must be 0-4");
  read(j, "threadNum", b.thread_num, path);
  if (b.thread_num < 1)
    fail(path + ".threadNum", "must be >= 1");
  read(j, "delayMs", b.delay_ms, path);
  if (b.delay_ms < 0)
    fail(path + ".delayMs", "must be >= 0");
  read(j, "changeIpPattern", b.change_ip_pattern, path);
  read_object(j, "site", b.site_settings, path);
  read(j, "cookies", b.cookies, path);
  read_array(j, "requests", b.requests, path);
  return b;
}

json to_json(const result& x) {
  json j = {{"resultId", x.result_id},       {"requestHash", x.request_hash},
            {"url", x.url},                  {"statusCode", x.status_code},
            {"responseTime", x.response_time}, {"headers", x.headers},
            {"content", x.content},          {"error", x.error},
            {"depth", x.depth}};
  if (!x.content_encoding.empty())
    j["contentEncoding"] = x.content_encoding;
  if (x.deferred)
    j["deferred"] = true;
  if (x.retry_after_ms >= 0)
    j["retryAfterMs"] = x.retry_after_ms;
  if (!x.final_url.empty())
    j["finalUrl"] = x.final_url;
  if (!x.screenshot.empty())
    j["screenshot"] = x.screenshot;
  if (!x.error_kind.empty())
    j["errorKind"] = x.error_kind;
  if (x.size >= 0)
    j["size"] = x.size;
  if (!x.redirects.empty())
    j["redirects"] = to_json(x.redirects);
  if (!x.redirect_to.empty())
    j["redirectTo"] = x.redirect_to;
  if (!x.redirected_from.empty())
    j["redirectedFrom"] = x.redirected_from;
  if (!x.payload.empty())
    j["payload"] = x.payload;
  if (!x.proxy.empty())
    j["proxy"] = x.proxy;
  if (!x.proxy_errors.empty())
    j["proxyErrors"] = x.proxy_errors;
  if (!x.encoding.empty()) {
    j["encoding"] = x.encoding;
    j["encodingSource"] = x.encoding_source;
  }
  return j;
}

template <> result decode<result>(const json& j, const std::string& path) {
  object_at(j, path);
  result r;
  read(j, "resultId", r.result_id, path);
  read(j, "requestHash", r.request_hash, path);
  read(j, "url", r.url, path, true);
  read(j, "statusCode", r.status_code, path);
  read(j, "responseTime", r.response_time, path);
  read(j, "headers", r.headers, path);
  read(j, "content", r.content, path);
  read(j, "contentEncoding", r.content_encoding, path);
  if (!r.content_encoding.empty() && r.content_encoding != "base64")
    fail(path + ".contentEncoding", "must be empty or \"base64\"");
  read(j, "error", r.error, path);
  read(j, "depth", r.depth, path);
  read(j, "deferred", r.deferred, path);
  read(j, "retryAfterMs", r.retry_after_ms, path);
  if (r.retry_after_ms < -1)
    fail(path + ".retryAfterMs", "must be >= 0, or -1 for none");
  read(j, "finalUrl", r.final_url, path);
  read(j, "screenshot", r.screenshot, path);
  read(j, "errorKind", r.error_kind, path);
  if (!r.error_kind.empty() && !error_kinds::known(r.error_kind))
    fail(path + ".errorKind", "unknown kind '" + r.error_kind + "'");
  read(j, "size", r.size, path);
  read(j, "redirects", r.redirects, path);
  read(j, "redirectTo", r.redirect_to, path);
  read(j, "redirectedFrom", r.redirected_from, path);
  read(j, "payload", r.payload, path);
  read(j, "proxy", r.proxy, path);
  read(j, "proxyErrors", r.proxy_errors, path);
  read(j, "encoding", r.encoding, path);
  read(j, "encodingSource", r.encoding_source, path);
  return r;
}

json to_json(const block_response& x) {
  return {{"blockId", x.block_id},
          {"identity", x.identity},
          {"results", to_json(x.results)},
          {"exception", x.exception}};
}

template <> block_response decode<block_response>(const json& j, const std::string& path) {
  object_at(j, path);
  block_response b;
  read(j, "blockId", b.block_id, path, true);
  read(j, "identity", b.identity, path, true);
  read_array(j, "results", b.results, path);
  read(j, "exception", b.exception, path);
  return b;
}

json to_json(const heartbeat& x) {
  return {{"processCount", x.process_count},
          {"cpu", x.cpu},
          {"freeMemory", x.free_memory},
          {"freeSlots", x.free_slots}};
}

template <> heartbeat decode<heartbeat>(const json& j, const std::string& path) {
  object_at(j, path);
  heartbeat h;
  read(j, "processCount", h.process_count, path);
  read(j, "cpu", h.cpu, path);
  read(j, "freeMemory", h.free_memory, path);
  read(j, "freeSlots", h.free_slots, path);
  if (h.process_count < 0 || h.free_memory < 0 || h.free_slots < 0)
    fail(path, "counts must not be negative");
  if (h.cpu < 0 || h.cpu > 100)
    fail(path + ".cpu", "must be 0-100");
  return h;
}

json to_json(const run_application& x) {
  return {{"jobId", x.job_id},           {"identity", x.identity},
          {"package", x.package},        {"application", x.application},
          {"arguments", x.arguments},    {"packageSha256", x.package_sha256}};
}

template <> run_application decode<run_application>(const json& j, const std::string& path) {
  object_at(j, path);
  run_application r;
  read(j, "jobId", r.job_id, path, true);
  read(j, "identity", r.identity, path, true);
  read(j, "package", r.package, path, true);
  read(j, "application", r.application, path, true);
  read(j, "arguments", r.arguments, path);
  read(j, "packageSha256", r.package_sha256, path);
  return r;
}

json to_json(const application_exited& x) {
  return {{"identity", x.identity}, {"exitCode", x.exit_code}, {"reason", x.reason}};
}

template <>
application_exited decode<application_exited>(const json& j, const std::string& path) {
  object_at(j, path);
  application_exited a;
  read(j, "identity", a.identity, path, true);
  read(j, "exitCode", a.exit_code, path, true);
  read(j, "reason", a.reason, path);
  return a;
}

json to_json(const application_started& x) {
  return {{"identity", x.identity}, {"pid", x.pid}};
}

template <>
application_started decode<application_started>(const json& j, const std::string& path) {
  object_at(j, path);
  application_started a;
  read(j, "identity", a.identity, path, true);
  read(j, "pid", a.pid, path);
  return a;
}

json to_json(const application_log& x) {
  return {{"identity", x.identity}, {"stream", x.stream}, {"text", x.text}};
}

template <> application_log decode<application_log>(const json& j, const std::string& path) {
  object_at(j, path);
  application_log a;
  read(j, "identity", a.identity, path, true);
  read(j, "stream", a.stream, path, true);
  read(j, "text", a.text, path);
  if (a.stream != "stdout" && a.stream != "stderr")
    fail(path + ".stream", "must be \"stdout\" or \"stderr\"");
  return a;
}

json to_json(const worker_run& x) {
  return {{"jobId", x.job_id}, {"identity", x.identity}, {"arguments", x.arguments}};
}

template <> worker_run decode<worker_run>(const json& j, const std::string& path) {
  object_at(j, path);
  worker_run w;
  read(j, "jobId", w.job_id, path, true);
  read(j, "identity", w.identity, path, true);
  read(j, "arguments", w.arguments, path);
  return w;
}

namespace {
constexpr char b64_alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                      (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                      static_cast<unsigned char>(bytes[i + 2]);
    out += b64_alphabet[(v >> 18) & 63];
    out += b64_alphabet[(v >> 12) & 63];
    out += b64_alphabet[(v >> 6) & 63];
    out += b64_alphabet[v & 63];
  }
  auto rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2)
      v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += b64_alphabet[(v >> 18) & 63];
    out += b64_alphabet[(v >> 12) & 63];
    out += rest == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i)
      t[static_cast<unsigned char>(b64_alphabet[i])] = i;
    return t;
  }();
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t pad = 0;
  for (char ch : text) {
    if (ch == '=') {
      ++pad;
      continue;
    }
    if (pad > 0)
      throw core::input_error("base64: data after padding");
    int v = table[static_cast<unsigned char>(ch)];
    if (v < 0)
      throw core::input_error("base64: invalid character");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  if (pad > 2)
    throw core::input_error("base64: too much padding");
  return out;
}

namespace {
// Bytes the body takes as a JSON string (valid UTF-8, quotes excluded): escapes add one
// byte for \" \\ \n \r \t \b \f and five for other control characters.
std::size_t json_text_bytes(std::string_view s) {
  std::size_t n = s.size();
  for (unsigned char c : s)
    if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
      n += 1;
    else if (c < 0x20)
      n += 5;
  return n;
}
} // namespace

bool error_kinds::known(std::string_view kind) {
  for (auto k : all)
    if (kind == k)
      return true;
  return false;
}

void set_result_body(result& r, std::string body) {
  // Large bodies whose escapes would make the JSON text longer than base64 travel as
  // base64, so that a result never takes more than result_wire_bytes (protocol/limits.hpp).
  // Small bodies skip the count: the overhead margin covers them.
  constexpr std::size_t count_above = 128 << 10;
  bool text = is_valid_utf8(body);
  if (text && body.size() > count_above &&
      json_text_bytes(body) > static_cast<std::size_t>(base64_bytes(
                                static_cast<std::int64_t>(body.size()))))
    text = false;
  if (text) {
    r.content = std::move(body);
    r.content_encoding.clear();
  } else {
    r.content = base64_encode(body);
    r.content_encoding = "base64";
  }
}

std::string result_body(const result& r) {
  return r.content_encoding == "base64" ? base64_decode(r.content) : r.content;
}

} // namespace spiderhub::protocol
