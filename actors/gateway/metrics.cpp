#include "actors/gateway/metrics.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "core/auth.hpp"
#include "core/crawl_limits.hpp"
#include "protocol/types.hpp"
#include "net/http_server.hpp"

namespace spiderhub::actors {
namespace {

using json = nlohmann::json;
using namespace spiderhub::protocol;

const char* const sources[] = {"gateway",   "api",      "jobs",      "dispatch", "storage",
                               "scheduler", "sessions", "inspector", "live"};

std::string number(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned())
    return v.dump();
  if (v.is_number())
    return std::to_string(v.get<double>());
  if (v.is_boolean())
    return v.get<bool>() ? "1" : "0";
  return "0";
}

std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

struct writer {
  std::string out;
  void family(const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const std::string& labels, const std::string& value) {
    out += name;
    if (!labels.empty())
      out += "{" + labels + "}";
    out += " " + value + "\n";
  }
  // One series, no labels, when `from[key]` exists.
  void single(const char* name, const char* type, const char* help, const json& from,
              const char* key) {
    if (!from.is_object() || !from.contains(key))
      return;
    family(name, type, help);
    sample(name, "", number(from[key]));
  }
};

const json& part(const json& stats, const char* name) {
  static const json empty = json::object();
  auto it = stats.find(name);
  return it == stats.end() ? empty : *it;
}

} // namespace

std::string render_metrics(const json& stats) {
  writer w;
  const auto& d = part(stats, "dispatch");
  const auto& s = part(stats, "storage");
  const auto& j = part(stats, "jobs");
  const auto& sc = part(stats, "scheduler");
  const auto& g = part(stats, "gateway");
  const auto& a = part(stats, "api");

  // Sessions and heartbeats.
  if (j.contains("nodes") || j.contains("workers")) {
    w.family("spiderhub_sessions", "gauge", "Connected hub sessions by kind.");
    w.sample("spiderhub_sessions", "kind=\"node\"", number(j.value("nodes", json(0))));
    std::uint64_t workers = 0;
    if (auto it = j.find("workers"); it != j.end() && it->is_object())
      for (auto& n : *it)
        workers += n.get<std::uint64_t>();
    w.sample("spiderhub_sessions", "kind=\"worker\"", std::to_string(workers));
  }
  w.single("spiderhub_heartbeats_total", "counter", "Node heartbeats received.", j, "heartbeats");
  w.single("spiderhub_http_connections", "gauge", "Open HTTP and WebSocket connections.", g,
           "connections");
  w.single("spiderhub_api_requests_total", "counter", "REST API requests.", a, "requests");
  w.single("spiderhub_api_errors_total", "counter", "REST API requests that failed.", a, "errors");

  // Crawl pipeline.
  w.single("spiderhub_requests_accepted_total", "counter", "Requests accepted after dedup.", d,
           "requestsAccepted");
  w.single("spiderhub_requests_duplicate_total", "counter", "Requests dropped as duplicates.", d,
           "duplicates");
  w.single("spiderhub_blocks_leased_total", "counter", "Block leases handed to nodes.", d,
           "blocksLeased");
  w.single("spiderhub_blocks_done_total", "counter", "Blocks completed.", d, "blocksDone");
  w.single("spiderhub_blocks_failed_total", "counter", "Blocks failed after max attempts.", d,
           "blocksFailed");
  w.single("spiderhub_leases_expired_total", "counter", "Leases that timed out.", d,
           "leasesExpired");
  w.single("spiderhub_results_stored_total", "counter", "Download results stored (pages).", d,
           "resultsStored");
  w.single("spiderhub_results_acked_total", "counter", "Results acked by workers.", d,
           "resultsAcked");
  w.single("spiderhub_results_released_total", "counter",
           "Results a worker held unacked when its connection closed, handed to the run's "
           "other workers (or to it again when it reconnects).", d, "resultsReleased");
  w.single("spiderhub_result_bytes_total", "counter",
           "Bytes of downloaded results received from nodes.", d, "resultBytes");
  w.single("spiderhub_requests_skipped_total", "counter",
           "Requests not downloaded because robots.txt disallows them.", d, "requestsSkipped");
  w.single("spiderhub_requests_deferred_total", "counter",
           "Requests handed back by nodes (host paused by 429/503) and queued again.", d,
           "requestsDeferred");
  w.single("spiderhub_requests_failed_undownloaded_total", "counter",
           "Requests ended as errors without a result (robots.txt unreachable, out of attempts).",
           d, "requestsFailedUndownloaded");
  w.single("spiderhub_robots_fetched_total", "counter", "robots.txt fetches leased to nodes.", d,
           "robotsFetched");
  w.single("spiderhub_requests_unspilled_total", "counter",
           "Requests read back from disk into a run's queue (its frontier beyond "
           "dispatch.frontier_memory_max waits on disk).", d, "requestsUnspilled");
  w.single("spiderhub_host_pauses_total", "counter",
           "Politeness keys paused by a 429/503 answer (Retry-After or backoff).", d,
           "hostPauses");
  if (d.contains("runs")) {
    std::uint64_t waiting = 0, leased = 0, spilled = 0;
    for (auto& r : d["runs"]) {
      waiting += r.value("pending", 0ULL);
      leased += r.value("blocksLeased", 0ULL);
      spilled += r.value("spilled", 0ULL);
    }
    w.family("spiderhub_requests_waiting", "gauge",
             "Requests of open runs not yet in a block (queued by host or waiting for robots.txt).");
    w.sample("spiderhub_requests_waiting", "", std::to_string(waiting));
    w.family("spiderhub_requests_spilled", "gauge",
             "Requests of open runs waiting on disk only (beyond dispatch.frontier_memory_max).");
    w.sample("spiderhub_requests_spilled", "", std::to_string(spilled));
    w.family("spiderhub_blocks", "gauge", "Blocks of open runs by state.");
    w.sample("spiderhub_blocks", "state=\"leased\"", std::to_string(leased));
    w.family("spiderhub_runs_active", "gauge", "Block runs in progress.");
    w.sample("spiderhub_runs_active", "", std::to_string(d["runs"].size()));
  }
  if (d.contains("topHosts") && d["topHosts"].is_array() && !d["topHosts"].empty()) {
    // Bounded cardinality: the dispatcher reports its ten busiest politeness keys.
    struct series {
      const char* name;
      const char* help;
      const char* key;
    };
    for (auto [name, help, key] :
         {series{"spiderhub_host_in_flight", "Slots of leased blocks, busiest hosts.", "inFlight"},
          series{"spiderhub_host_waiting", "Requests waiting, busiest hosts.", "pending"},
          series{"spiderhub_host_done", "Pages downloaded in open runs, busiest hosts.", "done"},
          series{"spiderhub_host_errors", "Failed downloads in open runs, busiest hosts.", "errors"},
          series{"spiderhub_host_delay_ms", "Current delay between starts, busiest hosts.", "delayMs"},
          series{"spiderhub_host_concurrency", "Current concurrency limit, busiest hosts.", "concurrency"},
          series{"spiderhub_host_paused", "1 while the host is paused, busiest hosts.", "paused"}}) {
      w.family(name, "gauge", help);
      for (auto& h : d["topHosts"])
        w.sample(name, "host=\"" + escape_label(h.value("key", "")) + "\"",
                 number(h.value(key, json(0))));
    }
  }
  if (d.contains("nodes")) {
    w.family("spiderhub_nodes_connected", "gauge", "Nodes known to the dispatcher.");
    w.sample("spiderhub_nodes_connected", "", std::to_string(d["nodes"].size()));
  }
  if (d.contains("downloadErrors")) {
    w.family("spiderhub_download_errors_total", "counter",
             "Failed downloads by kind (protocol::error_kinds).");
    for (const char* kind : protocol::error_kinds::all)
      w.sample("spiderhub_download_errors_total", std::string("kind=\"") + kind + "\"",
               number(d["downloadErrors"].value(kind, json(0))));
  }

  if (d.contains("proxies") && d["proxies"].is_object() && !d["proxies"].empty()) {
    w.family("spiderhub_proxy_requests_total", "counter",
             "Results downloaded through a proxy (scheme://host:port, no credentials).");
    for (auto& [name, c] : d["proxies"].items())
      w.sample("spiderhub_proxy_requests_total", "proxy=\"" + escape_label(name) + "\"",
               number(c.value("requests", json(0))));
    w.family("spiderhub_proxy_failures_total", "counter",
             "Download attempts that failed at a proxy (unreachable, 407, no answer); a node "
             "benches a proxy after the run's ProxyMaxFailures in a row.");
    for (auto& [name, c] : d["proxies"].items())
      w.sample("spiderhub_proxy_failures_total", "proxy=\"" + escape_label(name) + "\"",
               number(c.value("failures", json(0))));
  }

  if (d.contains("requestsCut")) {
    w.family("spiderhub_requests_cut_total", "counter",
             "New requests a run's scope and trap limits did not take, by reason.");
    for (const char* reason : core::cut_reasons)
      w.sample("spiderhub_requests_cut_total", std::string("reason=\"") + reason + "\"",
               number(d["requestsCut"].value(reason, json(0))));
  }

  // Authentication refusals (process-wide counters, see core/auth.hpp).
  if (auto it = stats.find("auth"); it != stats.end() && it->is_object()) {
    w.family("spiderhub_auth_refusals_total", "counter",
             "Refused authentications by reason (401 unauthenticated, bad_sign and "
             "replayed, 403 forbidden, 429 rate_limited).");
    for (auto [reason, key] : {std::pair{"unauthenticated", "unauthenticated"},
                               std::pair{"forbidden", "forbidden"},
                               std::pair{"bad_sign", "badSign"},
                               std::pair{"rate_limited", "rateLimited"},
                               std::pair{"replayed", "replayed"}})
      w.sample("spiderhub_auth_refusals_total", std::string("reason=\"") + reason + "\"",
               number(it->value(key, json(0))));
  }

  // Jobs, cron and applications.
  w.single("spiderhub_job_fires_total", "counter", "Job fires handled (cron and manual).", j,
           "fires");
  w.single("spiderhub_runs_started_total", "counter", "Runs started.", j, "runsStarted");
  w.single("spiderhub_runs_failed_total", "counter", "Runs that failed to start.", j,
           "runsFailed");
  w.single("spiderhub_cron_fires_total", "counter", "Cron fires sent by the scheduler.", sc,
           "fires");
  w.single("spiderhub_cron_misfires_total", "counter",
           "Cron fires missed beyond the misfire grace (broker down too long).", sc, "missed");
  w.single("spiderhub_cron_catch_ups_total", "counter", "Late cron fires made up after a restart.",
           sc, "catchUps");
  w.single("spiderhub_cron_jitter_p99_ms", "gauge", "Cron fire lateness, 99th percentile.", sc,
           "jitterP99Ms");
  w.single("spiderhub_applications_started_total", "counter",
           "Application processes placed on nodes.", j, "applicationsStarted");
  w.single("spiderhub_applications_exited_total", "counter", "Application exits reported.", j,
           "applicationsExited");
  w.single("spiderhub_applications_lost_total", "counter",
           "Application processes lost with their node.", j, "applicationsLost");

  // Storage.
  w.single("spiderhub_storage_writes_total", "counter", "Storage writes committed.", s, "writes");
  w.single("spiderhub_storage_failed_writes_total", "counter", "Storage writes that failed.", s,
           "failedWrites");
  w.single("spiderhub_storage_queued_writes", "gauge", "Writes waiting for the next commit.", s,
           "queued");
  w.single("spiderhub_storage_healthy", "gauge",
           "0 while the database cannot be written (disk full, read-only, I/O error).", s,
           "healthy");
  if (s.contains("spoolBytes")) {
    w.single("spiderhub_result_spool_bytes", "gauge",
             "Bytes of result bodies in the spool's segment files (SQLite).", s, "spoolBytes");
    w.single("spiderhub_result_spool_segments", "gauge", "Segment files of the result spool.",
             s, "spoolSegments");
  }
  if (s.contains("batchMsBuckets") && s.contains("batchMsBounds")) {
    const auto& bounds = s["batchMsBounds"];
    const auto& counts = s["batchMsBuckets"];
    w.family("spiderhub_storage_batch_seconds", "histogram",
             "Duration of one storage transaction (a batch of writes).");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i].get<std::uint64_t>();
      char le[32] = "+Inf";
      if (i < bounds.size())
        std::snprintf(le, sizeof le, "%g", bounds[i].get<double>() / 1000.0);
      w.sample("spiderhub_storage_batch_seconds_bucket", std::string("le=\"") + le + "\"",
               std::to_string(cumulative));
    }
    w.sample("spiderhub_storage_batch_seconds_sum", "",
             std::to_string(s.value("batchMsSum", 0.0) / 1000.0));
    w.sample("spiderhub_storage_batch_seconds_count", "", std::to_string(cumulative));
  }

  // Mailboxes of every actor that answered, and those that did not.
  w.family("spiderhub_actor_mailbox", "gauge", "Messages waiting in an actor's mailbox.");
  std::uint64_t missing = 0;
  for (const char* name : sources) {
    auto it = stats.find(name);
    if (it == stats.end())
      continue;
    if (it->is_null()) {
      ++missing;
      continue;
    }
    if (it->contains("mailbox"))
      w.sample("spiderhub_actor_mailbox", "actor=\"" + escape_label(name) + "\"",
               number((*it)["mailbox"]));
  }
  w.family("spiderhub_scrape_errors", "gauge", "Actors that did not answer this scrape in time.");
  w.sample("spiderhub_scrape_errors", "", std::to_string(missing));
  return w.out;
}

void serve_metrics(caf::actor_system& sys, std::shared_ptr<net::http_responder> r) {
  // The responder travels as a spawn argument, not a capture: CAF 0.17 dereferences a
  // null argument tuple for argument-less function actors (UBSan reports it).
  sys.spawn<caf::detached>([](caf::blocking_actor* b, std::shared_ptr<net::http_responder> r) {
    json stats = json::object();
    auto& registry = b->system().registry();
    std::vector<std::pair<std::string, caf::actor>> asked;
    for (const char* name : sources) {
      auto h = caf::actor_cast<caf::actor>(registry.get(protocol::registry_key(name)));
      if (h)
        asked.emplace_back(name, h);
    }
    // One after another, each with its own timeout.
    for (auto& [name, actor] : asked) {
      auto key = name;
      b->request(actor, std::chrono::seconds(3), stats_atom::value)
        .receive(
          [&](const std::string& text) {
            auto parsed = json::parse(text, nullptr, false);
            stats[key] = parsed.is_discarded() ? json(nullptr) : parsed;
          },
          [&](caf::error&) { stats[key] = nullptr; });
    }
    auto refused = core::refusal_counts();
    stats["auth"] = {{"unauthenticated", refused.unauthenticated},
                     {"forbidden", refused.forbidden},
                     {"badSign", refused.bad_sign},
                     {"rateLimited", refused.rate_limited},
                 {"replayed", refused.replayed}};
    net::http_response resp;
    resp.content_type = "text/plain; version=0.0.4";
    resp.body = render_metrics(stats);
    r->reply(std::move(resp));
  }, std::move(r));
}

} // namespace spiderhub::actors
