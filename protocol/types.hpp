#pragma once
// Wire vocabulary shared by broker, node and worker (see docs/protocol.md).
// Every type has an inspect() so CAF can carry it in messages; the JSON codec
// (protocol/json_codec.hpp) maps it to the camelCase SignalR arguments.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace spiderhub::protocol {

using header_map = std::map<std::string, std::string>;

/// One redirect a download followed: the 3xx status and the absolute URL it led to.
struct redirect_hop {
  std::int32_t status = 0;
  std::string url;
};

/// One crawl request a worker pushes; its dedup key is request_hash().
struct request {
  std::string url;
  std::string method = "GET";
  std::string referer;
  std::string origin;
  std::string content;            // request body for POST
  std::int32_t depth = 0;         // link distance from the start request
  std::int32_t cycle_tried_times = 0;
  header_map headers;
  // A request the broker made from a redirect (Site.brokerRedirects): the URL first asked
  // for and the hops so far; the node copies both into the result.
  std::string redirected_from;
  std::vector<redirect_hop> redirects;
  // Set by a pusher with its own dedup rule (the Scrapy bridge: Scrapy's request
  // fingerprint): the dedup key is made of it instead of the canonical URL.
  std::string fingerprint;
  // With a fingerprint: the pusher wants this request downloaded even when its URL was
  // (Scrapy's dont_filter). Without it, a GET/HEAD without body is also a duplicate of
  // any request of the run to the same canonical URL (a redirect's target, say).
  bool dont_filter = false;
  // This request's proxy (a proxy URL, or "direct" for none), instead of the run's pool.
  std::string proxy;
  // Opaque bytes of the pusher (the Scrapy bridge: the serialized Scrapy request), stored
  // with the request and handed back in its result, so any worker of the run can take it.
  std::string payload;
};

/// The longest fingerprint and payload a Push may carry (bytes).
inline constexpr std::size_t max_fingerprint_bytes = 256;
inline constexpr std::size_t max_payload_bytes = 262144;

/// A run whose pages need JavaScript: every page is rendered by headless Chromium on a
/// node that can render (docs/rendering.md). robots.txt is still fetched over HTTP.
struct render_settings {
  std::string wait = "networkidle";   // "load" | "networkidle" | "selector"
  std::string selector;               // CSS selector (wait == "selector")
  std::int32_t timeout_ms = 30000;
  std::int32_t viewport_width = 1280;
  std::int32_t viewport_height = 800;
  bool block_images = true;           // images, fonts and media are not fetched
  bool screenshot = false;            // a PNG of the viewport in the result (screenshot)
};

/// Per-site download settings carried by every block.
struct site {
  header_map headers;
  std::string content_type;
  std::vector<std::string> domains;
  std::string user_agent;
  std::string accept;
  std::string encoding_name;
  std::int32_t sleep_time = 0;        // ms between two requests of one download slot
  std::int32_t cycle_retry_times = 0; // retries of a failed request inside one lease
  std::string cookies;
  // Politeness overrides (docs/politeness.md); unset values take the job's, then the
  // broker's.
  std::int32_t max_concurrency_per_host = 0; // 0 = unset
  std::int32_t delay_ms = -1;                // -1 = unset
  std::string robots_txt;                    // "" | "obey" | "ignore"
  std::string politeness_key;                // "" | "host" | "domain" | "ip"
  std::string adaptive_throttle;             // "" | "on" | "off"
  std::optional<render_settings> render;     // set: pages are rendered (nodes with render)
  // Download limits of the run (job properties MaxBodyBytes, AllowedContentTypes). The
  // broker sets max_body_bytes for every run (its dispatch.max_body_bytes when the job
  // names none); a node applies the smaller of it and its own download.max_body_bytes.
  std::int64_t max_body_bytes = 0;                 // 0 = unset
  std::vector<std::string> allowed_content_types;  // media types, "type/*", "*/*"; empty = all
  // Set by brokers that take redirects: the node follows none and answers a 3xx with
  // result.redirect_to; the broker queues the target as a new request (dedup, robots.txt,
  // politeness, as Scrapy's RedirectMiddleware does). Unset: the node follows them itself.
  bool broker_redirects = false;
  // Scope and trap limits (core/crawl_limits.hpp; job properties of the same names): -1 =
  // the broker's default (URL 2083 bytes, 3 repeats of a path segment, the rest none),
  // 0 = no limit.
  std::int64_t max_url_length = -1;
  std::int32_t max_depth = -1;
  std::int64_t max_pages = -1;
  std::int64_t max_pages_per_host = -1;
  std::int32_t max_repeated_segments = -1;
  bool verify_tls = true;  // job property VerifyTls: false accepts any certificate (warned)
  // Job property AllowPrivateAddresses: nodes may connect to loopback and private
  // addresses for this run (they refuse them unless their own config allows them).
  bool allow_private_addresses = false;
  // Per-job canonicalisation (job properties SortQuery, StripSessionIds, StripTracking;
  // core::canonical_options, docs/urls.md): applied by the broker to every pushed URL.
  bool sort_query = false;
  bool strip_session_ids = false;
  bool strip_tracking = false;
  // Job property WorkersPerRun: how many connected workers of the job's class get the run
  // (1 by default; 0 = every one, also those connecting later). Each result goes to one.
  std::int32_t workers_per_run = 1;
  // Proxies of the run (job properties Proxies, ProxyRotation, ProxyMaxFailures,
  // ProxyBenchMs; core/proxy.hpp): each download goes through one of them, chosen by the
  // rotation; one failing max_failures times in a row is benched for bench_ms on that node.
  std::vector<std::string> proxies;
  std::string proxy_rotation;          // "" = round_robin | "random" | "per_host"
  std::int32_t proxy_max_failures = 3;
  std::int32_t proxy_bench_ms = 60000;
  // Job property ChangeIpPattern (the seed's BlockDto.ChangeIpPattern): a body matching it
  // makes the node run its change-IP command and download the request again. Runs with a
  // pattern are only given to nodes that have the command (download.change_ip_command).
  std::string change_ip_pattern;
};

enum class block_command : std::int32_t { none = 0, download = 1, pause = 2, resume = 3, exit = 4 };

/// A batch of requests leased to one node.
struct block {
  std::string block_id;
  std::string identity;                 // run identity
  std::int32_t command = 1;             // block_command
  std::int32_t thread_num = 1;          // concurrent downloads for this block
  std::int32_t delay_ms = 0;            // at least this long between two request starts
  std::string change_ip_pattern;
  site site_settings;
  std::string cookies;
  std::vector<request> requests;
};

/// One downloaded response (or download error).
struct result {
  std::int64_t result_id = 0;     // assigned by the broker when stored
  std::string request_hash;
  std::string url;
  std::int32_t status_code = 0;   // 0 when the download failed before a response
  std::int64_t response_time = 0; // ms
  header_map headers;
  std::string content;            // body; base64 when content_encoding == "base64"
  std::string content_encoding;   // "" (UTF-8 text) or "base64" (arbitrary bytes)
  std::string error;              // empty on success
  std::int32_t depth = 0;         // depth of the request, so workers can limit crawls
  // Node -> broker only: not a final result. The request was not started (its block was
  // paused) or met 429/503; the broker queues it again after the host's pause.
  bool deferred = false;
  std::int64_t retry_after_ms = -1; // Retry-After of a 429/503 in ms; -1 when none
  // Rendered pages only: where the page ended (redirects, client-side navigation) when
  // that is not `url`, and a PNG of the viewport (base64) when the Site asked for it.
  std::string final_url;
  std::string screenshot;
  std::string error_kind;   // one of error_kinds below when `error` is set, else empty
  std::int64_t size = -1;   // body bytes the node saw (too_large: announced or received); -1 unknown
  // HTTP downloads that were redirected: every hop (final_url above is where they ended).
  std::vector<redirect_hop> redirects;
  // Text bodies: the WHATWG encoding sniffing decided (core/encoding.hpp) and which step
  // decided it (bom, override, http, meta, detector, default); the body stays as sent.
  std::string encoding;
  std::string encoding_source;
  std::string redirect_to;      // a 3xx handed back to the broker: where it points (absolute)
  std::string redirected_from;  // the request's redirected_from: the URL first asked for
  std::string payload;          // the request's payload, as pushed
  std::string proxy;            // the proxy the download went through, redacted (scheme://host:port)
  std::vector<std::string> proxy_errors;  // proxies (redacted) of attempts that failed at the proxy
};

/// The closed list of what went wrong with a download, shared by the SDKs, JobStatus and
/// /metrics (docs/protocol.md). `network` is every transport failure not named otherwise.
namespace error_kinds {
inline constexpr const char* all[] = {"dns",          "connect",  "tls",       "timeout",
                                      "too_large",    "skipped_type", "http_4xx", "http_5xx",
                                      "robots",       "redirect_loop", "blocked_address",
                                      "network"};
bool known(std::string_view kind);
} // namespace error_kinds

struct block_response {
  std::string block_id;
  std::string identity;
  std::vector<result> results;
  std::string exception;          // whole-block failure reason, empty if none
};

/// Node -> broker every heartbeat interval.
struct heartbeat {
  std::int32_t process_count = 0;
  std::int32_t cpu = 0;           // percent 0-100
  std::int32_t free_memory = 0;   // MB
  std::int32_t free_slots = 0;    // blocks the node can take now
};

/// Broker -> node: start an application job.
struct run_application {
  std::string job_id;
  std::string identity;
  std::string package;
  std::string application;
  std::string arguments;
  std::string package_sha256;     // hex; the node verifies the download
};

/// Node -> broker: an application process ended, or never started (exit_code -1 and a
/// reason: package download/hash/extraction failure, maxProcessCount reached, ...).
/// A process killed by a signal reports 128 + the signal number, as shells do.
struct application_exited {
  std::string identity;
  std::int32_t exit_code = 0;
  std::string reason;             // empty when the process ran and exited by itself
};

/// Node -> broker: an application process is running (sent at start and again after every
/// reconnect for each live process, so a restarted broker learns what still runs).
struct application_started {
  std::string identity;
  std::int32_t pid = 0;
};

/// Node -> broker: new output of an application (coalesced, at most one per stream and
/// second; the node's log files are the full record, the broker keeps a tail).
struct application_log {
  std::string identity;
  std::string stream;             // "stdout" | "stderr"
  std::string text;               // UTF-8 (invalid bytes replaced)
};

/// Broker -> worker: a block job fired for this worker's class.
struct worker_run {
  std::string job_id;
  std::string identity;
  std::string arguments;
};

/// Node metadata from the /node connection query.
struct node_info {
  std::string node_id;
  std::string group = "default";
  std::string ip;
  std::int32_t memory = 0;          // MB
  std::int32_t node_type = 1;       // 1 console, 2 web
  std::string os;
  std::int32_t processor_count = 0;
  std::int32_t max_process_count = 0;  // application processes the node runs at once
  std::int32_t max_blocks = 0;         // blocks it downloads at once; 0 = not announced
  std::int32_t render_tabs = 0;        // pages it renders at once (headless Chromium); 0 = none
  bool change_ip = false;              // it has a change-IP command (runs with ChangeIpPattern)
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, request& x) {
  return f(x.url, x.method, x.referer, x.origin, x.content, x.depth, x.cycle_tried_times,
           x.headers);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, site& x) {
  return f(x.headers, x.content_type, x.domains, x.user_agent, x.accept, x.encoding_name,
           x.sleep_time, x.cycle_retry_times, x.cookies, x.max_concurrency_per_host, x.delay_ms, x.robots_txt, x.politeness_key,
           x.adaptive_throttle);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, block& x) {
  return f(x.block_id, x.identity, x.command, x.thread_num, x.delay_ms, x.change_ip_pattern,
           x.site_settings, x.cookies, x.requests);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, result& x) {
  return f(x.result_id, x.request_hash, x.url, x.status_code, x.response_time, x.headers,
           x.content, x.content_encoding, x.error, x.depth, x.deferred, x.retry_after_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_response& x) {
  return f(x.block_id, x.identity, x.results, x.exception);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, heartbeat& x) {
  return f(x.process_count, x.cpu, x.free_memory, x.free_slots);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, run_application& x) {
  return f(x.job_id, x.identity, x.package, x.application, x.arguments, x.package_sha256);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, application_exited& x) {
  return f(x.identity, x.exit_code, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, application_started& x) {
  return f(x.identity, x.pid);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, application_log& x) {
  return f(x.identity, x.stream, x.text);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, worker_run& x) {
  return f(x.job_id, x.identity, x.arguments);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(x.node_id, x.group, x.ip, x.memory, x.node_type, x.os, x.processor_count,
           x.max_process_count, x.max_blocks, x.render_tabs);
}

/// First 16 hex chars of MD5(referer.origin.method.content.url): the dedup key.
std::string request_hash(const request& r);

} // namespace spiderhub::protocol
