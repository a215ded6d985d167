#include "actors/agent/downloader.hpp"

#include <curl/curl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "actors/agent/download_policy.hpp"
#include "actors/agent/proxy_pool.hpp"
#include "core/proxy.hpp"
#include "core/text_pattern.hpp"
#include "actors/agent/renderer.hpp"
#include "core/encoding.hpp"
#include "core/media_type.hpp"
#include "core/politeness.hpp"
#include "core/text.hpp"
#include "core/url.hpp"
#include "protocol/json_codec.hpp"

extern char** environ;

namespace spiderhub::actors {

namespace {

using steady = std::chrono::steady_clock;
using time_point = steady::time_point;
using std::chrono::milliseconds;

constexpr std::size_t max_header_bytes = 8 * 1024; // response headers kept per result
constexpr std::size_t max_header_count = 64;
constexpr milliseconds max_backoff{30000};
constexpr milliseconds max_poll_wait{1000};     // loop wakes at least this often
constexpr milliseconds housekeeping_every{1000};
constexpr int max_thread_num = 256;             // per block, guards against absurd leases

// ---------------------------------------------------------------------------------------
// small string helpers

using core::iequals;

/// True when `line` starts with `prefix` (lower case), ignoring case.
bool istarts_with(std::string_view line, std::string_view prefix) {
  return line.size() >= prefix.size() && iequals(line.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

/// Non-negative decimal integer, or -1.
std::int64_t parse_count(std::string_view s) {
  s = trim(s);
  if (s.empty() || s.size() > 18)
    return -1;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

/// Whether a body of this Content-Type is text whose encoding is worth sniffing: HTML, XML,
/// text/*, or no type at all (sniffed like browsers do).
bool is_text_type(std::string_view content_type) {
  auto type = core::media_type_of(content_type);
  if (type.empty())
    return true;
  return type.compare(0, 5, "text/") == 0 || type.find("html") != std::string::npos ||
         type.find("xml") != std::string::npos;
}

/// Host part of an absolute URL ("" when there is none).
std::string_view url_host(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos)
    return {};
  url.remove_prefix(scheme + 3);
  url = url.substr(0, url.find_first_of("/?#"));
  if (auto at = url.rfind('@'); at != std::string_view::npos)
    url.remove_prefix(at + 1);
  if (!url.empty() && url.front() == '[')
    return url.substr(0, url.find(']') + 1);
  return url.substr(0, url.find(':'));
}

/// Value of the first header `name` (lower case) in raw header lines, if present.
std::optional<std::string_view> find_header(std::string_view raw, std::string_view name) {
  std::size_t pos = 0;
  while (pos < raw.size()) {
    auto eol = raw.find('\n', pos);
    if (eol == std::string_view::npos)
      eol = raw.size();
    auto line = raw.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.size() > name.size() && line[name.size()] == ':' &&
        istarts_with(line, name))
      return trim(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

/// Header bytes are not always UTF-8 (Latin-1 filenames, say) but results become JSON
/// strings, which must be: other bytes above 0x7f turn into '?'.
std::string header_text(std::string_view s) {
  std::string out(s);
  if (!protocol::is_valid_utf8(out))
    for (auto& c : out)
      if (static_cast<unsigned char>(c) >= 0x80)
        c = '?';
  return out;
}

/// Response header lines (status line first) to the result's map: lower-case names,
/// repeated names joined with ", ", at most max_header_count names.
void parse_headers(std::string_view raw, protocol::header_map& out) {
  std::size_t pos = raw.find('\n'); // skip the status line
  while (pos != std::string_view::npos && pos < raw.size()) {
    ++pos;
    auto eol = raw.find('\n', pos);
    auto line = raw.substr(pos, eol == std::string_view::npos ? raw.size() - pos : eol - pos);
    pos = eol;
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      continue;
    auto name = header_text(trim(line.substr(0, colon)));
    for (auto& c : name)
      c = core::ascii_lower(c);
    auto value = trim(line.substr(colon + 1));
    auto it = out.find(name);
    if (it != out.end()) {
      // Repeats join with ", " (RFC 9110 5.3), but Set-Cookie values hold commas (Expires
      // dates) and cannot be joined that way: one per line instead.
      it->second.append(name == "set-cookie" ? "\n" : ", ").append(header_text(value));
    } else if (out.size() < max_header_count) {
      out.emplace(std::move(name), header_text(value));
    }
  }
}

/// "a=1; b=2" -> {{"a","1"},{"b","2"}}; pieces without a name are skipped.
void parse_cookie_pairs(std::string_view s,
                        std::vector<std::pair<std::string, std::string>>& out) {
  while (!s.empty()) {
    auto semi = s.find(';');
    auto piece = trim(s.substr(0, semi));
    s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi + 1);
    auto eq = piece.find('=');
    if (eq == std::string_view::npos)
      continue;
    auto name = trim(piece.substr(0, eq));
    if (name.empty())
      continue;
    auto value = trim(piece.substr(eq + 1));
    auto same = std::find_if(out.begin(), out.end(), [&](auto& kv) { return kv.first == name; });
    if (same != out.end())
      same->second = std::string(value); // block cookies override site cookies
    else
      out.emplace_back(std::string(name), std::string(value));
  }
}

std::int64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------------------
// change-IP pattern

// ---------------------------------------------------------------------------------------
// loop-thread state

/// Cookie jar of one run identity: a share handle holding the cookies, used by every
/// transfer of that identity so cookies persist across its requests and blocks.
struct identity_jar {
  CURLSH* share = nullptr;
  std::unordered_set<std::string> seeded; // host + '\n' + seed cookies already added
  int blocks = 0;                         // active blocks using the jar
  time_point idle_since;
  std::unique_ptr<proxy_pool> proxies;    // the run's proxies on this node (Site.proxies)

  identity_jar() {
    share = curl_share_init();
    if (share)
      curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
  }
  ~identity_jar() {
    if (share)
      curl_share_cleanup(share);
  }
  identity_jar(const identity_jar&) = delete;
  identity_jar& operator=(const identity_jar&) = delete;
};

/// A request to (re)start: index into the block's requests plus its retry state.
struct work_item {
  std::uint32_t index = 0;
  std::uint16_t attempt = 0; // 0 on the first attempt
  bool ip_retried = false;   // already repeated once after a change-IP match
  time_point due{};
  std::vector<std::string> proxy_errors;  // proxies of its attempts that failed there
};

struct block_state {
  protocol::block b;
  identity_jar* jar = nullptr;
  core::text_pattern matcher;
  std::vector<std::pair<std::string, std::string>> seed_cookies; // site + block cookies
  std::string seed_key;            // the seed cookies as text, part of identity_jar::seeded
  milliseconds sleep{0};           // site.sleep_time
  std::int64_t max_body = 0;       // bytes: the node's limit or the run's, the smaller
  milliseconds delay{0};           // block.delay_ms: between two request starts of the block
  time_point next_start{};         // no request of the block starts before this
  bool halted = false;             // paused (by the broker or a 429/503): start nothing more
  std::size_t next = 0;            // next request never started
  int in_flight = 0;
  std::vector<time_point> slot_ready; // per download slot; time_point::max() while busy
  std::unordered_set<std::uint64_t> renders; // tokens of its renders in flight
  std::vector<work_item> retries;     // waiting for their due time
  std::vector<work_item> ip_waiting;  // waiting for the change-IP command to end
  std::vector<protocol::result> batch;
  std::size_t batch_bytes = 0;
  time_point batch_since{};
  curl_slist* headers_plain = nullptr; // request headers of the site, for requests
  curl_slist* headers_body = nullptr;  // without headers of their own (GET / with body)

  block_state() = default;
  block_state(const block_state&) = delete;
  block_state& operator=(const block_state&) = delete;
  ~block_state() {
    curl_slist_free_all(headers_plain);
    curl_slist_free_all(headers_body);
  }

  bool finished() const {
    return next >= b.requests.size() && in_flight == 0 && retries.empty() &&
           ip_waiting.empty();
  }
};

/// One pooled easy handle and the buffers of the transfer it runs.
struct transfer {
  CURL* easy = nullptr;
  CURLSH* share = nullptr;       // share handle currently attached to `easy`
  block_state* blk = nullptr;    // null while idle in the pool
  work_item item;
  int slot = 0;
  bool head = false;             // HEAD request: no body expected
  bool too_big = false;          // body exceeded max_body
  std::int64_t max_body = 0;
  // Content-type policy of the block (empty: all); a final response of another type is
  // aborted once its headers are in (skipped_type), before any of its body.
  const std::vector<std::string>* allowed_types = nullptr;
  bool skipped_type = false;
  bool refused_address = false;  // the resolved address is one no download may reach
  bool refused_internal = false;  // ... because it is loopback or private (not link-local)
  bool allow_internal = false;    // the node or the run allows loopback/private addresses
  int proxy_index = -1;           // the pool proxy this transfer goes through (-1: none)
  std::string proxy_name;         // the proxy it goes through, redacted ("" = none)
  long hop_status = 0;           // status of the response whose headers are coming in
  std::int64_t announced = -1;   // its Content-Length (-1: none)
  std::int64_t received = 0;     // body bytes that arrived (kept or not)
  std::string content_type;      // its Content-Type
  std::string location;          // its Location
  std::string current_url;       // the URL the response is for (moves with each redirect)
  std::vector<protocol::redirect_hop> hops;  // redirects followed so far
  curl_slist* own_headers = nullptr; // when the request has headers of its own
  std::string body;
  std::string raw_headers; // header lines of the latest response, capped
  char errbuf[CURL_ERROR_SIZE];

  transfer() { errbuf[0] = 0; }
  /// Forgets what the previous response of this transfer (or handle) said.
  void begin_response(long status) {
    raw_headers.clear();
    body.clear();
    content_type.clear();
    location.clear();
    announced = -1;
    received = 0;
    hop_status = status;
  }
  ~transfer() {
    if (easy)
      curl_easy_cleanup(easy);
    curl_slist_free_all(own_headers);
  }
  transfer(const transfer&) = delete;
  transfer& operator=(const transfer&) = delete;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  const std::size_t len = size * n;
  t->received += static_cast<std::int64_t>(len);
  if (static_cast<std::int64_t>(t->body.size() + len) > t->max_body) {
    t->too_big = true;
    return len == 0 ? 1 : 0; // anything but len aborts with CURLE_WRITE_ERROR
  }
  t->body.append(data, len);
  return len;
}

/// Every socket a transfer opens: refused for addresses no download may reach (SSRF
/// guard), checked on the address curl resolved, so a name pointing there is caught too.
curl_socket_t on_open_socket(void* user, curlsocktype, struct curl_sockaddr* a) {
  auto* t = static_cast<transfer*>(user);
  if (blocked_address(&a->addr, t->allow_internal)) {
    t->refused_address = true;
    t->refused_internal = classify_address(&a->addr) == address_kind::internal;
    return CURL_SOCKET_BAD;
  }
  return ::socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<transfer*>(user);
  const std::size_t len = size * n;
  std::string_view line(data, len);
  if (line.size() >= 5 && line.compare(0, 5, "HTTP/") == 0) {
    // A new response (after a redirect or a 1xx): only the final one is reported.
    auto sp = line.find(' ');
    t->begin_response(sp == std::string_view::npos ? 0 : parse_count(line.substr(sp + 1, 4)));
  } else if (!t->head && istarts_with(line, "content-length:")) {
    // Reserve once instead of growing the body by doubling; gzip bodies grow further.
    auto n_bytes = parse_count(line.substr(15));
    t->announced = n_bytes;
    if (n_bytes > 0 && n_bytes <= t->max_body)
      t->body.reserve(static_cast<std::size_t>(n_bytes));
  } else if (istarts_with(line, "content-type:")) {
    t->content_type.assign(line.substr(13));
  } else if (istarts_with(line, "location:")) {
    t->location.assign(trim(line.substr(9)));
  } else if (line == "\r\n" || line == "\n") {
    if (t->hop_status >= 300 && t->hop_status < 400 && !t->location.empty()) {
      // A redirect curl follows next: recorded as data (the SDKs resolve links against
      // where the page ended). A Location that resolves to nothing is left to curl.
      auto to = core::resolve_url(t->current_url, t->location);
      if (!to.empty()) {
        t->hops.push_back({static_cast<std::int32_t>(t->hop_status), to});
        t->current_url = std::move(to);
      }
    } else if (t->allowed_types && !t->allowed_types->empty() && t->hop_status >= 200 &&
               (t->hop_status < 300 || t->hop_status >= 400) &&
               !core::media_allowed(*t->allowed_types, t->content_type)) {
      // Headers of a final response whose type the run does not want: stop before its
      // body (redirect hops are not judged; their target is).
      t->skipped_type = true;
      return 0;
    }
  }
  if (t->raw_headers.size() + len <= max_header_bytes)
    t->raw_headers.append(line);
  return len;
}

/// Header list of a request: User-Agent, Accept, Content-Type (requests with a body),
/// the site's headers, then the request's own; later names replace earlier ones.
curl_slist* build_headers(const downloader_options& opts, const protocol::site& site,
                          const protocol::header_map* own, bool with_body) {
  std::vector<std::pair<std::string_view, std::string_view>> list;
  list.reserve(4 + site.headers.size() + (own ? own->size() : 0));
  auto put = [&](std::string_view name, std::string_view value) {
    for (auto& kv : list)
      if (iequals(kv.first, name)) {
        kv.second = value;
        return;
      }
    list.emplace_back(name, value);
  };
  put("User-Agent", site.user_agent.empty() ? opts.user_agent : site.user_agent);
  if (!site.accept.empty())
    put("Accept", site.accept);
  if (with_body) {
    if (!site.content_type.empty())
      put("Content-Type", site.content_type);
    put("Expect", ""); // no "100-continue" round trip before large bodies
  }
  for (auto& [k, v] : site.headers)
    put(k, v);
  if (own)
    for (auto& [k, v] : *own)
      put(k, v);

  curl_slist* out = nullptr;
  std::string line;
  for (auto& [name, value] : list) {
    if (name.empty())
      continue;
    line.assign(name);
    if (value.empty())
      // "Name:" tells curl to drop its own header; "Name;" sends it empty. Expect is
      // meant to be dropped.
      line.append(iequals(name, "Expect") ? ":" : ";");
    else
      line.append(": ").append(value);
    if (auto* grown = curl_slist_append(out, line.c_str()))
      out = grown;
  }
  return out;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

} // namespace

// ---------------------------------------------------------------------------------------

struct downloader::impl {
  downloader_options opts;
  results_fn on_results;
  block_done_fn on_block_done;
  CURLM* multi = nullptr;
  std::thread thread;

  // Shared with the callers' threads, under mu.
  mutable std::mutex mu;
  std::deque<protocol::block> queue;        // submitted, not yet active
  std::unordered_set<std::string> ids;      // ids of active and queued blocks
  std::vector<std::string> cancels;         // identities the loop has yet to drop
  std::vector<std::string> pauses;          // block ids the loop has yet to halt
  int active = 0;                           // blocks taken from queue by the loop
  bool started = false;
  bool stopping = false;

  std::atomic<std::uint64_t> n_pages{0}, n_bytes{0}, n_errors{0}, n_retries{0};
  std::atomic<int> n_in_flight{0};
  std::atomic<std::int64_t> buffered{0};  // result bodies handed out and not confirmed

  /// Results whose bodies took `bytes` left the node's care; a pump held back may go on.
  void unbuffer(std::size_t bytes) {
    if (bytes == 0)
      return;
    auto before = buffered.fetch_sub(static_cast<std::int64_t>(bytes), std::memory_order_relaxed);
    if (before >= opts.max_buffered_bytes &&
        before - static_cast<std::int64_t>(bytes) < opts.max_buffered_bytes)
      wake();
  }

  // change-IP command: runs on ip_thread; the loop owns ip_running.
  std::thread ip_thread;
  std::atomic<bool> ip_finished{false};
  std::mutex ip_mu;   // guards ip_pid against the reap (so stop() never kills a reused pid)
  pid_t ip_pid = 0;
  bool ip_stop = false; // set by stop(): spawn nothing more
  bool ip_running = false;
  // A change is wanted: nothing new starts; it runs once the transfers in flight are done
  // and download.change_ip_min_interval_ms passed since the last one ended.
  bool ip_pending = false;
  time_point ip_last_end{};

  // Rendered pages come back on the renderer's thread: queued here for the loop.
  struct render_completion {
    std::string block_id;
    std::uint64_t token = 0;
    work_item item;
    int slot = 0;
    render_result result;
  };
  std::mutex render_mu;
  std::deque<render_completion> render_done;
  std::uint64_t render_seq = 0;  // loop thread
  std::unique_ptr<renderer> rend;  // made with the first render block; after render_done

  // Loop thread only.
  std::vector<std::unique_ptr<block_state>> blocks;
  std::unordered_map<std::string, std::unique_ptr<identity_jar>> jars;
  std::vector<std::unique_ptr<transfer>> transfers; // every easy handle made
  std::vector<transfer*> idle;                      // the free ones
  time_point next_housekeeping{};

  impl(downloader_options o, results_fn r, block_done_fn d)
      : opts(std::move(o)), on_results(std::move(r)), on_block_done(std::move(d)) {
    global_init();
    opts.max_blocks = std::max(1, opts.max_blocks);
    opts.retry_download = std::max(0, opts.retry_download);
    opts.results_batch = std::max<std::size_t>(1, opts.results_batch);
    opts.max_body_bytes = std::max<std::int64_t>(0, opts.max_body_bytes);
    multi = curl_multi_init();
    if (!multi)
      throw std::runtime_error("downloader: curl_multi_init failed");
  }

  ~impl() {
    rend.reset();  // its last callbacks wake the loop through `multi`: before the cleanup
    idle.clear();
    transfers.clear(); // easy handles first: they detach from the shares
    jars.clear();
    curl_multi_cleanup(multi);
  }

  void wake() { curl_multi_wakeup(multi); }

  // ---- caller side -------------------------------------------------------------------

  bool identity_cancel_pending(const std::string& identity) const {
    std::lock_guard lock(mu);
    return std::find(cancels.begin(), cancels.end(), identity) != cancels.end();
  }

  // ---- transfers ---------------------------------------------------------------------

  transfer* acquire() {
    if (!idle.empty()) {
      auto* t = idle.back();
      idle.pop_back();
      return t;
    }
    auto t = std::make_unique<transfer>();
    t->easy = curl_easy_init();
    if (!t->easy)
      return nullptr;
    CURL* e = t->easy;
    // Options that never change for this handle.
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t.get());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, static_cast<long>(opts.max_redirects));
    curl_easy_setopt(e, CURLOPT_AUTOREFERER, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(opts.timeout.count()));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(opts.connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); // every encoding curl can decode
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(opts.max_body_bytes));
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, ""); // cookie engine on, no file
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    t->max_body = opts.max_body_bytes;
    transfers.push_back(std::move(t));
    return transfers.back().get();
  }

  void release(transfer* t) {
    curl_slist_free_all(t->own_headers);
    t->own_headers = nullptr;
    t->blk = nullptr;
    t->raw_headers.clear();
    t->body.clear();
    idle.push_back(t);
  }

  /// Removes a transfer from the multi handle without a result (cancel, stop).
  void abandon(transfer* t) {
    curl_multi_remove_handle(multi, t->easy);
    n_in_flight.fetch_sub(1, std::memory_order_relaxed);
    release(t);
  }

  /// Adds the seed cookies for the request's host to the identity's jar, once.
  void seed_cookies(block_state& bs, transfer* t, const std::string& url) {
    auto host = url_host(url);
    if (host.empty())
      return;
    std::string key;
    key.reserve(host.size() + 1 + bs.seed_key.size());
    key.append(host).append("\n").append(bs.seed_key);
    if (!bs.jar->seeded.insert(std::move(key)).second)
      return;
    std::string line;
    for (auto& [name, value] : bs.seed_cookies) {
      line.assign("Set-Cookie: ").append(name).append("=").append(value);
      line.append("; domain=").append(host).append("; path=/");
      curl_easy_setopt(t->easy, CURLOPT_COOKIELIST, line.c_str());
    }
  }

  /// A page of a run whose Site asks for rendering (robots.txt excepted: it is a text
  /// file the broker parses).
  bool wants_render(const block_state& bs, const protocol::request& rq) const {
    if (!bs.b.site_settings.render || opts.render_tabs <= 0)
      return false;
    static constexpr std::string_view robots = "/robots.txt";
    return !(rq.url.size() >= robots.size() &&
             rq.url.compare(rq.url.size() - robots.size(), robots.size(), robots) == 0);
  }

  void start_render(block_state& bs, const work_item& item, int slot) {
    const auto& rq = bs.b.requests[item.index];
    const auto& rs = *bs.b.site_settings.render;
    if (!rend) {
      renderer_options ro;
      ro.chromium = opts.chromium;
      ro.max_tabs = opts.render_tabs;
      ro.user_agent = bs.b.site_settings.user_agent.empty() ? opts.user_agent
                                                             : bs.b.site_settings.user_agent;
      rend = std::make_unique<renderer>(ro);
    }
    render_options o;
    o.wait = rs.wait;
    o.selector = rs.selector;
    o.timeout = milliseconds(rs.timeout_ms);
    o.viewport_width = rs.viewport_width;
    o.viewport_height = rs.viewport_height;
    o.block_images = o.block_fonts = o.block_media = rs.block_images;
    o.screenshot = rs.screenshot;
    auto token = ++render_seq;
    bs.renders.insert(token);
    bs.slot_ready[static_cast<std::size_t>(slot)] = time_point::max();
    ++bs.in_flight;
    n_in_flight.fetch_add(1, std::memory_order_relaxed);
    // One browser context per run identity: its cookies stay within the run, as the
    // curl cookie jar of the identity does.
    rend->render(rq.url, bs.b.identity, o,
                 [this, id = bs.b.block_id, token, item, slot](render_result res) {
                   {
                     std::lock_guard lock(render_mu);
                     render_done.push_back({id, token, item, slot, std::move(res)});
                   }
                   wake();
                 });
  }

  void on_render_done(block_state& bs, render_completion& c, time_point now) {
    bs.renders.erase(c.token);
    --bs.in_flight;
    bs.slot_ready[static_cast<std::size_t>(c.slot)] = now + bs.sleep;
    auto& res = c.result;
    const auto& rq = bs.b.requests[c.item.index];
    const bool more_attempts = c.item.attempt < opts.retry_download;
    if (!res.error.empty()) {
      // A crashed or hung browser, a network error or a timeout: tried again (the
      // renderer restarts Chromium), so killing the browser loses no page.
      if (more_attempts) {
        auto delay = backoff(c.item.attempt);
        spdlog::info("downloader: render of {} failed ({}), retry {} in {} ms", rq.url, res.error,
                     c.item.attempt + 1, delay.count());
        retry_later(bs, c.item, delay, now);
        return;
      }
      finish_request(bs, c.item, std::move(res.error), res.status, res.elapsed_ms, nullptr,
                     nullptr);
      return;
    }
    if (throttling_status(res.status)) {
      std::int64_t retry_after = -1;
      for (auto& [k, v] : res.headers)
        if (k == "retry-after")
          if (auto ms = core::parse_retry_after(v, unix_ms_now()))
            retry_after = *ms;
      defer_request(bs, c.item, res.status, retry_after, "HTTP " + std::to_string(res.status));
      halt(bs, "the host answered HTTP " + std::to_string(res.status));
      return;
    }
    if (retryable_status(res.status) && more_attempts) {
      retry_later(bs, c.item, backoff(c.item.attempt), now);
      return;
    }
    std::string error;
    if (retryable_status(res.status))
      error = "HTTP " + std::to_string(res.status);
    protocol::header_map headers;
    for (auto& [k, v] : res.headers) {
      auto& h = headers[k];
      h = h.empty() ? v : h + ", " + v;
    }
    finish_request(bs, c.item, std::move(error), res.status, res.elapsed_ms, nullptr, &res.html,
                   &headers, &res);
  }

  void take_renders(time_point now) {
    std::deque<render_completion> done;
    {
      std::lock_guard lock(render_mu);
      done.swap(render_done);
    }
    for (auto& c : done) {
      n_in_flight.fetch_sub(1, std::memory_order_relaxed);
      for (auto& bs : blocks)
        if (bs->b.block_id == c.block_id && bs->renders.count(c.token)) {
          on_render_done(*bs, c, now);
          break;
        }  // else: its block was dropped (run exited or cancelled)
    }
  }

  void start_transfer(block_state& bs, const work_item& item, int slot) {
    const auto& rq = bs.b.requests[item.index];
    if (wants_render(bs, rq)) {
      start_render(bs, item, slot);
      return;
    }
    transfer* t = acquire();
    if (!t) {
      finish_request(bs, item, "curl_easy_init failed", 0, 0, nullptr, nullptr);
      return;
    }
    t->blk = &bs;
    t->item = item;
    t->slot = slot;
    t->too_big = false;
    t->skipped_type = false;
    t->refused_address = false;
    t->refused_internal = false;
    t->allow_internal = opts.allow_private_addresses || bs.b.site_settings.allow_private_addresses;
    t->begin_response(0);
    t->current_url = rq.url;
    t->hops.clear();
    t->errbuf[0] = 0;
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, rq.url.c_str());
    choose_proxy(bs, *t, rq);
    t->allowed_types = &bs.b.site_settings.allowed_content_types;
    // VerifyTls false (the job's choice, warned at the broker): any certificate is taken.
    const long verify = bs.b.site_settings.verify_tls ? 1L : 0L;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    // Brokers that take redirects get every 3xx back as data (result.redirect_to).
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, bs.b.site_settings.broker_redirects ? 0L : 1L);
    if (t->max_body != bs.max_body) {
      t->max_body = bs.max_body;
      curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(bs.max_body));
    }

    if (t->share != bs.jar->share) {
      curl_easy_setopt(e, CURLOPT_SHARE, bs.jar->share);
      t->share = bs.jar->share;
    }
    if (!bs.seed_cookies.empty())
      seed_cookies(bs, t, rq.url);

    const std::string& m = rq.method;
    const bool is_get = m.empty() || iequals(m, "GET");
    const bool is_head = iequals(m, "HEAD");
    const bool is_post = iequals(m, "POST");
    const bool with_body = is_post || (!is_get && !is_head && !rq.content.empty());
    t->head = is_head;
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, nullptr);
    if (with_body) {
      curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(rq.content.size()));
      // Not copied: the block (and so the request) outlives the transfer.
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq.content.data());
    } else {
      // Forget a body a previous request of this handle sent, then back to GET.
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(-1));
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      if (is_head)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    }
    if (!is_get && !is_head && !is_post)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m.c_str());

    curl_slist* headers;
    if (rq.headers.empty()) {
      headers = with_body ? bs.headers_body : bs.headers_plain;
    } else {
      t->own_headers = build_headers(opts, bs.b.site_settings, &rq.headers, with_body);
      headers = t->own_headers;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_REFERER, rq.referer.empty() ? nullptr : rq.referer.c_str());

    if (auto rc = curl_multi_add_handle(multi, e); rc != CURLM_OK) {
      spdlog::warn("downloader: cannot add {}: {}", rq.url, curl_multi_strerror(rc));
      release(t);
      finish_request(bs, item, curl_multi_strerror(rc), 0, 0, nullptr, nullptr);
      return;
    }
    bs.slot_ready[static_cast<std::size_t>(slot)] = time_point::max();
    ++bs.in_flight;
    n_in_flight.fetch_add(1, std::memory_order_relaxed);
  }

  /// Schedules another attempt of `item` after `delay`.
  void retry_later(block_state& bs, work_item item, milliseconds delay, time_point now) {
    ++item.attempt;
    item.due = now + delay;
    bs.retries.push_back(item);
    n_retries.fetch_add(1, std::memory_order_relaxed);
  }

  milliseconds backoff(int attempt) const {
    // retry_backoff * 2^attempt, capped at 30 s (the shift is bounded to avoid overflow).
    auto d = opts.retry_backoff * (std::int64_t{1} << std::min(attempt, 20));
    return std::min<milliseconds>(d, max_backoff);
  }

  /// A result that is not final: the broker queues the request again.
  void defer_request(block_state& bs, const work_item& item, long status,
                     std::int64_t retry_after_ms, const std::string& why) {
    const auto& rq = bs.b.requests[item.index];
    protocol::result r;
    r.request_hash = protocol::request_hash(rq);
    r.url = rq.url;
    r.status_code = static_cast<std::int32_t>(status);
    r.depth = rq.depth;
    r.deferred = true;
    r.retry_after_ms = retry_after_ms;
    r.error = why;
    if (bs.batch.empty())
      bs.batch_since = steady::now();
    bs.batch.push_back(std::move(r));
  }

  /// Starts nothing more in the block: what was not started (or waits for a retry) goes
  /// back to the broker as deferred results; transfers under way finish normally.
  void halt(block_state& bs, const std::string& why) {
    if (bs.halted)
      return;
    bs.halted = true;
    std::size_t n = 0;
    for (; bs.next < bs.b.requests.size(); ++bs.next, ++n)
      defer_request(bs, work_item{static_cast<std::uint32_t>(bs.next), 0, false, {}, {}}, 0, -1,
                    why);
    for (auto* list : {&bs.retries, &bs.ip_waiting}) {
      for (auto& item : *list) {
        defer_request(bs, item, 0, -1, why);
        ++n;
      }
      list->clear();
    }
    spdlog::info("downloader: block {} halted ({}): {} requests handed back", bs.b.block_id,
                 why, n);
    flush(bs);
  }

  /// Sets the transfer's proxy: the request's own ("direct": none), else one of the run's
  /// pool, else none (libcurl's defaults, the node's environment).
  void choose_proxy(block_state& bs, transfer& t, const protocol::request& rq) {
    t.proxy_index = -1;
    t.proxy_name.clear();
    const char* url = nullptr;
    if (rq.proxy == "direct") {
      url = "";  // "" turns every proxy off, the environment's too
    } else if (!rq.proxy.empty()) {
      url = rq.proxy.c_str();
      t.proxy_name = core::redacted_proxy(rq.proxy);
    } else if (bs.jar->proxies) {
      t.proxy_index = bs.jar->proxies->pick(core::url_host(rq.url), steady::now());
      if (t.proxy_index >= 0) {
        url = bs.jar->proxies->url(t.proxy_index).c_str();
        t.proxy_name = bs.jar->proxies->name(t.proxy_index);
      }
    }
    curl_easy_setopt(t.easy, CURLOPT_PROXY, url);
  }

  /// A finished transfer: retry it, park it for the change-IP command, or make a result.
  void on_transfer_done(transfer* t, CURLcode rc, time_point now) {
    auto& bs = *t->blk;
    curl_multi_remove_handle(multi, t->easy);
    n_in_flight.fetch_sub(1, std::memory_order_relaxed);
    --bs.in_flight;
    bs.slot_ready[static_cast<std::size_t>(t->slot)] = now + bs.sleep;

    const auto& rq = bs.b.requests[t->item.index];
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!t->proxy_name.empty() && proxy_failure(rc, status) &&
        t->item.proxy_errors.size() < 16)
      t->item.proxy_errors.push_back(t->proxy_name);
    if (t->proxy_index >= 0 && bs.jar->proxies) {
      auto& pool = *bs.jar->proxies;
      if (!proxy_failure(rc, status))
        pool.succeeded(t->proxy_index);
      else if (pool.failed(t->proxy_index, now))
        spdlog::warn("downloader: proxy {} of run {} failed {} times in a row ({}): benched "
                     "for {} ms", t->proxy_name, bs.b.identity,
                     bs.b.site_settings.proxy_max_failures,
                     rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP 407",
                     bs.b.site_settings.proxy_bench_ms);
    }
    curl_off_t total_us = 0;
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    const auto elapsed_ms = static_cast<std::int64_t>(total_us / 1000);
    const bool more_attempts = t->item.attempt < opts.retry_download;

    std::string error;
    const char* kind = "";   // set for failures the status does not tell
    std::int64_t seen = -1;  // body size known although the body is not kept
    if (rc == CURLE_OK && throttling_status(status)) {
      std::int64_t retry_after = -1;
      if (auto ra = find_header(t->raw_headers, "retry-after"))
        if (auto ms = core::parse_retry_after(*ra, unix_ms_now()))
          retry_after = *ms;
      spdlog::info("downloader: {} -> HTTP {} (Retry-After {} ms): handed back to the broker",
                   rq.url, status, retry_after);
      defer_request(bs, t->item, status, retry_after, "HTTP " + std::to_string(status));
      release(t);
      halt(bs, "the host answered HTTP " + std::to_string(status));
      return;
    }
    if (rc == CURLE_OK && status >= 300 && status < 400 && bs.b.site_settings.broker_redirects &&
        !t->hops.empty()) {
      // Handed back: the broker queues the target as a request of its own. Its body is
      // no page.
      t->body.clear();
      finish_request(bs, t->item, {}, status, elapsed_ms, t, &t->body);
      release(t);
      return;
    }
    if (rc == CURLE_OK) {
      if (retryable_status(status) && more_attempts) {
        auto delay = backoff(t->item.attempt);
        spdlog::debug("downloader: {} -> HTTP {}, retry {} in {} ms", rq.url, status,
                      t->item.attempt + 1, delay.count());
        retry_later(bs, t->item, delay, now);
        release(t);
        return;
      }
      if (!bs.matcher.empty() && bs.matcher.matches(t->body)) {
        if (!t->item.ip_retried) {
          spdlog::info("downloader: {} matches the change-IP pattern of block {}", rq.url,
                       bs.b.block_id);
          work_item again = t->item;
          again.ip_retried = true;
          bs.ip_waiting.push_back(again);
          n_retries.fetch_add(1, std::memory_order_relaxed);
          release(t);
          request_ip_change();
          return;
        }
        error = "body still matches the change-IP pattern after an IP change";
      } else if (retryable_status(status)) {
        error = "HTTP " + std::to_string(status);
        if (t->item.attempt > 0)
          error += " after " + std::to_string(t->item.attempt) + " retries";
      }
    } else if (t->refused_address) {
      kind = "blocked_address";
      error = "refused to connect: the address of " + core::url_host(rq.url) +
              (t->refused_internal
                 ? " is loopback or private (allowed by the node's "
                   "download.allow_private_addresses or the job's AllowPrivateAddresses)"
                 : " is link-local or a metadata service");
      t->body.clear();
    } else if (t->skipped_type) {
      kind = "skipped_type";
      error = "content type '" + core::media_type_of(t->content_type) +
              "' is not allowed for this run (AllowedContentTypes)";
      seen = t->announced;
      t->body.clear();
    } else if (t->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
      // Refused, not cut: a cut page would parse as a different page (docs/decisions.md).
      kind = "too_large";
      seen = std::max(t->announced, t->received);
      error = too_large_error(seen, t->max_body);
      t->body.clear();
    } else {
      if (retryable(rc) && more_attempts) {
        auto delay = backoff(t->item.attempt);
        spdlog::debug("downloader: {} -> {}, retry {} in {} ms", rq.url,
                      curl_easy_strerror(rc), t->item.attempt + 1, delay.count());
        retry_later(bs, t->item, delay, now);
        release(t);
        return;
      }
      kind = error_kind_of(rc);
      error = curl_easy_strerror(rc);
      if (t->errbuf[0])
        error.append(": ").append(t->errbuf);
      t->body.clear(); // a partial body is no page
    }
    finish_request(bs, t->item, std::move(error), status, elapsed_ms, t, &t->body, nullptr,
                   nullptr, kind, seen);
    release(t);
  }

  /// Makes the result of a request and adds it to the block's batch.
  void finish_request(block_state& bs, const work_item& item, std::string error, long status,
                      std::int64_t elapsed_ms, transfer* t, std::string* body,
                      protocol::header_map* headers = nullptr, render_result* rendered = nullptr,
                      const char* kind = "", std::int64_t seen = -1) {
    const auto& rq = bs.b.requests[item.index];
    protocol::result r;
    r.request_hash = protocol::request_hash(rq);
    r.url = rq.url;
    r.status_code = static_cast<std::int32_t>(status);
    r.response_time = elapsed_ms;
    r.depth = rq.depth;
    if (t && status != 0)
      parse_headers(t->raw_headers, r.headers);
    else if (headers)
      r.headers = std::move(*headers);
    if (rendered) {
      if (rendered->final_url != rq.url)
        r.final_url = std::move(rendered->final_url);
      r.screenshot = std::move(rendered->screenshot_png_base64);
    }
    // Redirects: those the broker made this request from (rq.redirects), then those
    // followed here; a 3xx handed back names its target instead of a final URL.
    const bool handed_back = t && bs.b.site_settings.broker_redirects && status >= 300 &&
                             status < 400 && !t->hops.empty();
    if (handed_back) {
      r.redirect_to = std::move(t->hops.back().url);
      t->hops.clear();
    }
    if (!rq.redirects.empty() || (t && !t->hops.empty())) {
      r.redirects = rq.redirects;
      if (t) {
        r.redirects.insert(r.redirects.end(), t->hops.begin(), t->hops.end());
        t->hops.clear();
      }
      if (!handed_back && r.final_url.empty())
        r.final_url = r.redirects.back().url;
    }
    r.redirected_from = rq.redirected_from;
    r.payload = rq.payload;
    if (t)
      r.proxy = t->proxy_name;
    r.proxy_errors = item.proxy_errors;
    if (t && body && !body->empty() && error.empty() && is_text_type(t->content_type)) {
      auto e = core::sniff_encoding(*body, t->content_type, bs.b.site_settings.encoding_name);
      r.encoding = std::move(e.name);
      r.encoding_source = std::move(e.source);
    }
    const std::size_t body_size = body ? body->size() : 0;
    if (body && !body->empty())
      protocol::set_result_body(r, std::move(*body));
    if (error.empty()) {
      n_pages.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("downloader: {} {} -> {} in {} ms, {} bytes", rq.method, rq.url, status,
                    elapsed_ms, body_size);
    } else {
      n_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("downloader: {} {} failed: {}", rq.method, rq.url, error);
    }
    n_bytes.fetch_add(body_size, std::memory_order_relaxed);
    r.error = std::move(error);
    r.error_kind = *kind ? kind : error_kind_of_status(status);
    if (r.error_kind.empty() && !r.error.empty())
      r.error_kind = "network";
    r.size = body ? static_cast<std::int64_t>(body_size) : -1;
    if (seen >= 0)
      r.size = seen;

    if (bs.batch.empty()) {
      bs.batch_since = steady::now();
      bs.batch.reserve(std::min(opts.results_batch, bs.b.requests.size()));
    }
    bs.batch_bytes += r.content.size();
    buffered.fetch_add(static_cast<std::int64_t>(r.content.size()), std::memory_order_relaxed);
    bs.batch.push_back(std::move(r));
    if (bs.batch.size() >= opts.results_batch || bs.batch_bytes >= opts.results_batch_bytes)
      flush(bs);
  }

  void flush(block_state& bs) {
    if (bs.batch.empty())
      return;
    protocol::block_response resp;
    resp.block_id = bs.b.block_id;
    resp.identity = bs.b.identity;
    resp.results = std::move(bs.batch);
    bs.batch = {};
    const auto bytes = std::exchange(bs.batch_bytes, 0);
    if (identity_cancel_pending(resp.identity)) {
      unbuffer(bytes);
      return;
    }
    try {
      on_results(std::move(resp));
    } catch (const std::exception& e) {
      spdlog::error("downloader: on_results threw: {}", e.what());
    } catch (...) {
      spdlog::error("downloader: on_results threw");
    }
  }

  // ---- change IP ---------------------------------------------------------------------

  void request_ip_change() {
    if (ip_running || ip_pending)
      return; // the coming or running command covers this request too
    if (opts.change_ip_command.empty()) {
      release_ip_waiting();
      return;
    }
    ip_pending = true;
    spdlog::info("downloader: IP change wanted: starting nothing new, {} transfers in flight "
                 "finish first", n_in_flight.load(std::memory_order_relaxed));
  }

  /// Runs the wanted change once nothing is in flight and the minimum interval passed;
  /// else lowers `next_due` to when it may.
  void maybe_start_ip_change(time_point now, time_point& next_due) {
    if (!ip_pending || n_in_flight.load(std::memory_order_relaxed) > 0)
      return;
    auto allowed = ip_last_end + opts.change_ip_min_interval;
    if (now < allowed) {
      next_due = std::min(next_due, allowed);
      return;
    }
    if (ip_thread.joinable())
      ip_thread.join();
    ip_pending = false;
    ip_running = true;
    ip_finished = false;
    spdlog::info("downloader: changing IP: {}", opts.change_ip_command);
    ip_thread = std::thread([this] { run_ip_command(); });
  }

  void run_ip_command() {
    std::string cmd = opts.change_ip_command;
    char sh[] = "sh";
    char dash_c[] = "-c";
    char* argv[] = {sh, dash_c, cmd.data(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); // not our sockets
#endif
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP); // stop() kills the group
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid = 0;
    int err;
    {
      std::lock_guard lock(ip_mu);
      err = ip_stop ? ECANCELED : posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
      if (err == 0)
        ip_pid = pid;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) {
      spdlog::warn("downloader: cannot run the change-IP command: {}", std::strerror(err));
    } else {
      // Wait without reaping, so the pid stays ours while stop() may still kill it.
      siginfo_t info{};
      while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 &&
             errno == EINTR) {
      }
      {
        std::lock_guard lock(ip_mu);
        ip_pid = 0;
      }
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        spdlog::info("downloader: change-IP command done");
      else
        spdlog::warn("downloader: change-IP command failed (wait status {})", status);
    }
    ip_finished = true;
    wake();
  }

  void release_ip_waiting() {
    const auto now = steady::now();
    for (auto& bs : blocks) {
      for (auto& item : bs->ip_waiting) {
        item.due = now;
        bs->retries.push_back(item);
      }
      bs->ip_waiting.clear();
    }
  }

  /// Kills a running change-IP command (its process group) and prevents new ones.
  void kill_ip_command() {
    std::lock_guard lock(ip_mu);
    ip_stop = true;
    if (ip_pid > 0)
      ::kill(-ip_pid, SIGTERM);
  }

  // ---- blocks ------------------------------------------------------------------------

  identity_jar* jar_for(const std::string& identity) {
    auto& slot = jars[identity];
    if (!slot)
      slot = std::make_unique<identity_jar>();
    return slot.get();
  }

  void drop_jar(const std::string& identity) {
    auto it = jars.find(identity);
    if (it == jars.end())
      return;
    // curl_share_cleanup refuses while an easy handle is still attached.
    for (auto& t : transfers)
      if (t->share == it->second->share) {
        curl_easy_setopt(t->easy, CURLOPT_SHARE, nullptr);
        t->share = nullptr;
      }
    jars.erase(it);
  }

  void activate(protocol::block b) {
    auto bs = std::make_unique<block_state>();
    bs->b = std::move(b);
    const auto& site = bs->b.site_settings;
    const int slots = std::clamp(bs->b.thread_num, 1, max_thread_num);
    bs->slot_ready.assign(static_cast<std::size_t>(slots), time_point{});
    bs->sleep = milliseconds(std::max(0, site.sleep_time));
    bs->max_body = block_max_body(opts.max_body_bytes, site.max_body_bytes);
    bs->delay = milliseconds(std::max(0, bs->b.delay_ms));
    if (auto why = bs->matcher.compile(bs->b.change_ip_pattern); !why.empty())
      spdlog::warn("downloader: block {}: change-IP pattern '{}' ignored: {}", bs->b.block_id,
                   bs->b.change_ip_pattern, why);
    parse_cookie_pairs(site.cookies, bs->seed_cookies);
    parse_cookie_pairs(bs->b.cookies, bs->seed_cookies);
    for (auto& [k, v] : bs->seed_cookies)
      bs->seed_key.append(k).append("=").append(v).append(";");
    bs->headers_plain = build_headers(opts, site, nullptr, false);
    bs->headers_body = build_headers(opts, site, nullptr, true);
    bs->jar = jar_for(bs->b.identity);
    ++bs->jar->blocks;
    const std::chrono::milliseconds bench(site.proxy_bench_ms);
    if (site.proxies.empty()) {
      bs->jar->proxies.reset();
    } else if (!bs->jar->proxies ||
               !bs->jar->proxies->same_settings(site.proxies, site.proxy_rotation,
                                                site.proxy_max_failures, bench)) {
      bs->jar->proxies = std::make_unique<proxy_pool>(site.proxies, site.proxy_rotation,
                                                      site.proxy_max_failures, bench);
    }
    spdlog::debug("downloader: block {} of {}: {} requests, {} slots", bs->b.block_id,
                  bs->b.identity, bs->b.requests.size(), slots);
    blocks.push_back(std::move(bs));
  }

  /// Removes a block from the active set (its transfers must be gone).
  void retire(std::size_t i) {
    auto& bs = *blocks[i];
    if (--bs.jar->blocks == 0)
      bs.jar->idle_since = steady::now();
    {
      std::lock_guard lock(mu);
      ids.erase(bs.b.block_id);
      --active;
    }
    blocks.erase(blocks.begin() + static_cast<std::ptrdiff_t>(i));
  }

  void drop_block(std::size_t i) {
    auto* bs = blocks[i].get();
    for (auto& t : transfers)
      if (t->blk == bs)
        abandon(t.get());
    unbuffer(bs->batch_bytes);  // its unsent results go with it
    spdlog::debug("downloader: block {} of {} dropped", bs->b.block_id, bs->b.identity);
    retire(i);
  }

  void cancel(const std::string& identity) {
    for (std::size_t i = blocks.size(); i-- > 0;)
      if (blocks[i]->b.identity == identity)
        drop_block(i);
    drop_jar(identity);
  }

  /// Starts what may start now in a block; lowers `next_due` to when more may start.
  void pump(block_state& bs, time_point now, time_point& next_due) {
    const int limit = static_cast<int>(bs.slot_ready.size());
    // Bodies waiting for the broker past the budget: nothing new starts until it confirms
    // some (results_confirmed wakes the loop).
    if (buffered.load(std::memory_order_relaxed) >= opts.max_buffered_bytes)
      return;
    while (!bs.halted && bs.in_flight < limit) {
      if (bs.delay.count() > 0 && now < bs.next_start) {
        // The broker's politeness delay: starts of this block are spaced, all slots together.
        if (bs.next < bs.b.requests.size() || !bs.retries.empty())
          next_due = std::min(next_due, bs.next_start);
        return;
      }
      int slot = -1;
      time_point soonest = time_point::max();
      for (std::size_t i = 0; i < bs.slot_ready.size(); ++i) {
        if (bs.slot_ready[i] <= now) {
          slot = static_cast<int>(i);
          break;
        }
        soonest = std::min(soonest, bs.slot_ready[i]);
      }
      std::size_t best = bs.retries.size();
      for (std::size_t i = 0; i < bs.retries.size(); ++i)
        if (best == bs.retries.size() || bs.retries[i].due < bs.retries[best].due)
          best = i;
      const bool retry_ready = best < bs.retries.size() && bs.retries[best].due <= now;
      const bool fresh = bs.next < bs.b.requests.size();
      if (!retry_ready && !fresh) {
        if (best < bs.retries.size()) {
          // Wake when the retry is due, or later if every slot still sleeps then.
          auto due = bs.retries[best].due;
          next_due = std::min(next_due, slot >= 0 ? due : std::max(due, soonest));
        }
        return;
      }
      if (slot < 0) { // work is waiting, slots sleep (site.sleep_time)
        next_due = std::min(next_due, soonest);
        return;
      }
      work_item item;
      if (retry_ready) {
        item = bs.retries[best];
        bs.retries[best] = bs.retries.back();
        bs.retries.pop_back();
      } else {
        item.index = static_cast<std::uint32_t>(bs.next++);
      }
      start_transfer(bs, item, slot);
      bs.next_start = now + bs.delay;
    }
  }

  void housekeeping(time_point now) {
    for (auto it = jars.begin(); it != jars.end();) {
      auto& jar = *it->second;
      if (jar.blocks == 0 && now - jar.idle_since >= opts.identity_idle) {
        auto identity = (it++)->first;
        drop_jar(identity);
      } else {
        ++it;
      }
    }
  }

  // ---- the loop ----------------------------------------------------------------------

  void run() {
    std::vector<std::string> my_cancels, my_pauses;
    std::vector<protocol::block> pulled;
    while (true) {
      // Cancels and new blocks in one grab: a block queued after a cancel of its
      // identity must not be dropped by that cancel.
      {
        std::lock_guard lock(mu);
        if (stopping)
          break;
        my_cancels.swap(cancels); // dropped below, before any flush of this iteration
        my_pauses.swap(pauses);
        // A paused block still queued is activated now, so it can hand its requests back.
        for (auto& id : my_pauses)
          for (auto it = queue.begin(); it != queue.end(); ++it)
            if (it->block_id == id) {
              pulled.push_back(std::move(*it));
              queue.erase(it);
              ++active;
              break;
            }
        while (active < opts.max_blocks && !queue.empty()) {
          pulled.push_back(std::move(queue.front()));
          queue.pop_front();
          ++active;
        }
      }
      for (auto& identity : my_cancels)
        cancel(identity);
      my_cancels.clear();
      for (auto& b : pulled)
        activate(std::move(b));
      pulled.clear();
      for (auto& id : my_pauses)
        for (auto& bs : blocks)
          if (bs->b.block_id == id)
            halt(*bs, "paused by the broker");
      my_pauses.clear();

      if (ip_running && ip_finished.exchange(false)) {
        ip_thread.join();
        ip_running = false;
        ip_last_end = steady::now();
        release_ip_waiting();
      }

      int running = 0;
      curl_multi_perform(multi, &running);
      auto now = steady::now();
      int queued_msgs = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &queued_msgs)) {
        if (msg->msg != CURLMSG_DONE)
          continue;
        transfer* t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
        if (t && t->blk)
          on_transfer_done(t, msg->data.result, now);
      }
      take_renders(now);

      now = steady::now();
      time_point next_due = now + max_poll_wait;
      maybe_start_ip_change(now, next_due);
      for (std::size_t i = 0; i < blocks.size();) {
        auto& bs = *blocks[i];
        if (!ip_running && !ip_pending)  // an IP change is due or running: start nothing
          pump(bs, now, next_due);
        if (bs.finished()) {
          flush(bs);
          auto id = bs.b.block_id;
          auto identity = bs.b.identity;
          retire(i);
          spdlog::debug("downloader: block {} of {} done", id, identity);
          if (!identity_cancel_pending(identity)) {
            try {
              on_block_done(id, identity);
            } catch (const std::exception& e) {
              spdlog::error("downloader: on_block_done threw: {}", e.what());
            } catch (...) {
              spdlog::error("downloader: on_block_done threw");
            }
          }
          continue;
        }
        if (!bs.batch.empty()) {
          if (now - bs.batch_since >= opts.results_flush)
            flush(bs);
          else
            next_due = std::min(next_due, bs.batch_since + opts.results_flush);
        }
        ++i;
      }
      if (now >= next_housekeeping) {
        housekeeping(now);
        next_housekeeping = now + housekeeping_every;
      }

      // Round up so a retry due in 0.3 ms does not make the loop spin.
      auto wait = std::chrono::ceil<milliseconds>(next_due - steady::now());
      int wait_ms = static_cast<int>(std::clamp(wait, milliseconds{0}, max_poll_wait).count());
      if (auto rc = curl_multi_poll(multi, nullptr, 0, wait_ms, nullptr); rc != CURLM_OK) {
        spdlog::error("downloader: curl_multi_poll: {}", curl_multi_strerror(rc));
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    // Stopped: drop everything without callbacks.
    for (std::size_t i = blocks.size(); i-- > 0;)
      drop_block(i);
  }
};

// ---------------------------------------------------------------------------------------

downloader::downloader(downloader_options opts, results_fn on_results,
                       block_done_fn on_block_done)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(on_results),
                                   std::move(on_block_done))) {}

downloader::~downloader() { stop(); }

void downloader::start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->started || impl_->stopping)
    return;
  impl_->started = true;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void downloader::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->queue.clear();
    impl_->ids.clear();
  }
  impl_->wake();
  impl_->kill_ip_command();
  if (impl_->thread.joinable())
    impl_->thread.join();
  if (impl_->ip_thread.joinable())
    impl_->ip_thread.join();
}

bool downloader::submit(protocol::block b) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping || !impl_->ids.insert(b.block_id).second)
      return false;
    impl_->queue.push_back(std::move(b));
  }
  impl_->wake();
  return true;
}

void downloader::cancel_identity(const std::string& identity) {
  {
    std::lock_guard lock(impl_->mu);
    auto& q = impl_->queue;
    for (auto it = q.begin(); it != q.end();) {
      if (it->identity == identity) {
        impl_->ids.erase(it->block_id);
        it = q.erase(it);
      } else {
        ++it;
      }
    }
    if (std::find(impl_->cancels.begin(), impl_->cancels.end(), identity) ==
        impl_->cancels.end())
      impl_->cancels.push_back(identity);
  }
  impl_->wake();
}

void downloader::pause_block(const std::string& block_id) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->ids.count(block_id))
      return;  // finished or never here
    impl_->pauses.push_back(block_id);
  }
  impl_->wake();
}

int downloader::free_slots() const {
  std::lock_guard lock(impl_->mu);
  return std::max(0, impl_->opts.max_blocks - impl_->active -
                         static_cast<int>(impl_->queue.size()));
}

void downloader::results_confirmed(std::size_t bytes) { impl_->unbuffer(bytes); }

downloader::stats downloader::get_stats() const {
  stats s;
  s.pages = impl_->n_pages.load(std::memory_order_relaxed);
  s.bytes = impl_->n_bytes.load(std::memory_order_relaxed);
  s.errors = impl_->n_errors.load(std::memory_order_relaxed);
  s.retries = impl_->n_retries.load(std::memory_order_relaxed);
  s.in_flight = impl_->n_in_flight.load(std::memory_order_relaxed);
  s.buffered_bytes = impl_->buffered.load(std::memory_order_relaxed);
  std::lock_guard lock(impl_->mu);
  s.active_blocks = impl_->active;
  s.queued_blocks = static_cast<int>(impl_->queue.size());
  return s;
}

} // namespace spiderhub::actors
