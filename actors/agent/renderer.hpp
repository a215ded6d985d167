#pragma once
// The node's page renderer: pages that need JavaScript are loaded by a headless Chromium
// (Debian's /usr/bin/chromium) driven through the Chrome DevTools Protocol over its
// WebSocket (net::ws_client + nlohmann::json). No Node.js, no puppeteer. Framework-free
// (no CAF, no Boost in this header) so the node's downloader can own it and unit tests can
// drive it against a local server. docs/rendering.md describes it.
//
// One Chromium per renderer, started on the first render and again after a crash or a
// hang; one tab (target) per render, at most max_tabs at once, the rest wait in a FIFO
// queue; one browser context (cookie jar, storage) per context key.
//
// Threading: every public method may be called from any thread. `done` callbacks run on
// the renderer's own thread, one at a time; they must not block for long (every page
// waits) and must not destroy the renderer.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace spiderhub::actors {

/// What to wait for and what to return, per render.
struct render_options {
  std::string wait = "load";  // "load" | "networkidle" (load fired, nothing in flight for
                              // 500 ms) | "selector" (document.querySelector(selector))
  std::string selector;       // CSS selector, with wait == "selector"
  std::chrono::milliseconds timeout{30000};  // from render() to done, queue time included
  int viewport_width = 1280, viewport_height = 800;
  bool block_images = true, block_fonts = true, block_media = true;
  bool screenshot = false;  // PNG of the viewport, base64
};

struct render_result {
  int status = 0;         // of the main document's response (0 = none)
  std::string final_url;  // location.href after redirects and client-side navigation
  std::vector<std::pair<std::string, std::string>> headers;  // of the main document's
                          // response: lower-case names, one pair per value
  std::string html;       // document.documentElement.outerHTML after the wait
  std::string screenshot_png_base64;
  std::string error;      // "" on success; "timeout after 30000 ms waiting for networkidle",
                          // "browser crashed: ...", "net::ERR_CONNECTION_REFUSED", ...
  // Requests the page sent (document, redirects, sub-resources; not the ones blocked
  // here) by "host:port" (lower case, port always written), for politeness budgets.
  std::map<std::string, int> requests_by_host;
  std::int64_t elapsed_ms = 0;  // render() to done
};

struct renderer_options {
  std::string chromium = "/usr/bin/chromium";
  int max_tabs = 4;                // pages rendering at once; more wait in a FIFO queue
  std::string user_data_dir;       // "" = a fresh temp dir per browser, removed after it
  std::chrono::milliseconds launch_timeout{20000};   // start to DevTools connected
  std::chrono::milliseconds command_timeout{15000};  // a browser command unanswered this
                                                     // long: Chromium is hung, restarted
  std::chrono::milliseconds context_idle{600000};    // a context unused this long is closed
  std::string user_agent;          // "" = Chromium's own
  std::size_t max_html_bytes = 32 << 20;  // larger documents: error result
  std::vector<std::string> extra_args;    // more Chromium flags (e.g. --proxy-server=...)
};

class renderer {
public:
  explicit renderer(renderer_options o);
  /// Ends pending renders with error "renderer stopped" (their `done` runs before this
  /// returns), stops Chromium (its whole process group), joins. No callback afterwards.
  ~renderer();
  renderer(const renderer&) = delete;
  renderer& operator=(const renderer&) = delete;

  /// Renders `url` in the browser context keyed by `context` (same key: same cookies and
  /// storage; different keys are isolated). `done` runs exactly once, on the renderer's
  /// thread, at the latest about opts.timeout after this call.
  void render(std::string url, std::string context, render_options opts,
              std::function<void(render_result)> done);

  /// Forgets a context: later renders with that key get a fresh one; the browser context
  /// is disposed once its running renders end.
  void close_context(const std::string& context);

  struct stats_t {
    std::uint64_t rendered = 0;        // renders ended without error
    std::uint64_t failed = 0;          // renders ended with an error
    std::uint64_t browser_starts = 0;
    std::uint64_t browser_crashes = 0; // exits, lost connections and hangs
    int tabs_open = 0;
    int queued = 0;
    int contexts = 0;
    long chromium_pss_kb = 0;          // memory of all Chromium's processes (sum of their
                                       // PSS: shared pages counted once), every 2 s
    int chromium_pid = 0;              // 0 = not running
  };
  stats_t stats() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace spiderhub::actors
