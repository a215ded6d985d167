#include "actors/agent/renderer.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/text.hpp"
#include "core/url.hpp"
#include "net/ws_client.hpp"

extern char** environ;

namespace spiderhub::actors {

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds idle_quiet{500};          // networkidle: nothing in flight this long
constexpr milliseconds poll_every{100};          // wait checks and selector polls
constexpr milliseconds housekeeping_every{500};  // process, launch, hang and idle checks
constexpr milliseconds memory_every{2000};
constexpr milliseconds max_ping_every{5000};     // a browser command at least this often
constexpr int max_extract_retries = 20;          // document replaced while being read
constexpr std::size_t max_stderr_line = 4096;
constexpr std::size_t stderr_tail_lines = 6;     // kept for launch error messages

// Flags beyond the usual headless set: tabs nobody looks at must run at
// full speed (with max_tabs > 1 every tab but one is "in the background", and Chromium
// throttles background timers to 1/s); nothing is fetched from Google or written as crash
// dumps; /dev/shm of containers is often 64 MiB, too small for Chromium.
const char* const extra_flags[] = {
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--hide-scrollbars",
};

/// o[key] when `o` is an object that has it, else an empty object (never a copy).
const json& field(const json& o, const char* key) {
  static const json empty = json::object();
  if (!o.is_object())
    return empty;
  auto it = o.find(key);
  return it != o.end() ? *it : empty;
}

std::string str(const json& o, const char* key) {
  if (!o.is_object())
    return {};
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// "host:port" of an http(s) URL (port always written); "" for data:, blob:, about: ...
std::string host_port(const std::string& url) {
  auto o = core::parse_url_origin(url);
  return o ? o->host + ":" + std::to_string(o->port) : std::string();
}

bool hex4(std::string_view s, std::size_t i, unsigned& v) {
  if (i + 4 > s.size())
    return false;
  v = 0;
  for (std::size_t k = i; k < i + 4; ++k) {
    char c = s[k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return false;
    v = v * 16 + static_cast<unsigned>(d);
  }
  return true;
}

/// Chromium escapes a lone UTF-16 surrogate of a JS string (valid in the DOM) as \udXXX,
/// which nlohmann::json refuses: such escapes become \ufffd so the message still parses.
std::string fix_lone_surrogates(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    unsigned v = 0;
    if (s[i + 1] != 'u' || !hex4(s, i + 2, v) || v < 0xD800 || v > 0xDFFF) {
      out.append(s.substr(i, 2));  // any other escape, kept as is
      ++i;
      continue;
    }
    unsigned low = 0;
    if (v <= 0xDBFF && i + 11 < s.size() && s.substr(i + 6, 2) == "\\u" &&
        hex4(s, i + 8, low) && low >= 0xDC00 && low <= 0xDFFF) {
      out.append(s.substr(i, 12));  // a proper pair
      i += 11;
      continue;
    }
    out += "\\ufffd";
    i += 5;
  }
  return out;
}

/// The "headers" object of a CDP response as (lower-case name, value) pairs; repeated
/// headers (Set-Cookie) come joined by newlines and become one pair each.
std::vector<std::pair<std::string, std::string>> header_list(const json& holder) {
  std::vector<std::pair<std::string, std::string>> out;
  auto h = holder.find("headers");
  if (h == holder.end() || !h->is_object())
    return out;
  for (auto& [name, value] : h->items()) {
    std::string lower = name;
    for (auto& c : lower)
      c = core::ascii_lower(c);
    auto v = value.is_string() ? value.get<std::string>() : value.dump();
    for (std::size_t pos = 0; pos <= v.size();) {
      auto nl = v.find('\n', pos);
      if (nl == std::string::npos)
        nl = v.size();
      out.emplace_back(lower, v.substr(pos, nl - pos));
      pos = nl + 1;
    }
  }
  return out;
}

/// Starts argv[0] in a process group of its own, stdout and stderr on `out_fd`, stdin
/// from /dev/null, no other descriptor of ours, default signal dispositions and mask (the
/// node blocks SIGTERM and ignores SIGPIPE). Returns its pid, or -1 with `error` set.
/// fork + exec rather than posix_spawn for PR_SET_PDEATHSIG: Chromium gets SIGKILL when
/// the thread that started it ends, so a node that dies leaves no browser behind (its
/// helpers exit with it).
pid_t spawn_group(const std::vector<char*>& argv, const std::vector<char*>& envp, int out_fd,
                  std::string& error) {
  int status[2];  // the child's errno if exec fails; closed by a successful exec
  if (::pipe2(status, O_CLOEXEC) != 0) {
    error = std::strerror(errno);
    return -1;
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) {
    error = std::string("/dev/null: ") + std::strerror(errno);
    ::close(status[0]);
    ::close(status[1]);
    return -1;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: async-signal-safe calls only.
    auto fail = [&](int e) {
      ssize_t ignored = ::write(status[1], &e, sizeof e);
      (void)ignored;
      ::_exit(127);
    };
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      fail(errno);
    if (::getppid() != parent)
      ::_exit(127);  // the node died before the line above
    ::setpgid(0, 0);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT})
      ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0)
      fail(errno);
    const unsigned keep = static_cast<unsigned>(status[1]);
    if ((keep > 3 && ::syscall(SYS_close_range, 3U, keep - 1, 0U) != 0) ||
        ::syscall(SYS_close_range, keep + 1, ~0U, 0U) != 0) {
      for (int fd = 3; fd < 65536; ++fd)
        if (fd != status[1])
          ::close(fd);
    }
    ::execve(argv[0], argv.data(), envp.data());
    fail(errno);
  }
  const int fork_errno = errno;
  ::close(status[1]);
  ::close(devnull);
  if (pid < 0) {
    ::close(status[0]);
    error = std::string("fork: ") + std::strerror(fork_errno);
    return -1;
  }
  int child_errno = 0;
  ssize_t n;
  while ((n = ::read(status[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {
  }
  ::close(status[0]);
  if (n > 0) {
    int ignored = 0;
    while (::waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
    }
    error = std::strerror(child_errno);
    return -1;
  }
  return pid;
}

/// Profiles of renderers whose process is gone (killed with SIGKILL, say): removed, so
/// they do not pile up in the temp directory.
void remove_stale_profiles(const fs::path& tmp) {
  std::error_code ec;
  for (fs::directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind("spiderhub-chromium-", 0) != 0)
      continue;
    std::ifstream owner(it->path() / "spiderhub-owner");
    long pid = 0;
    if (!(owner >> pid) || pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)
      continue;  // no owner file (being made), or its owner is alive
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (!rm)
      spdlog::info("renderer: removed the stale profile {}", it->path().string());
  }
}

std::string describe_exit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED)
    return "exited with status " + std::to_string(info.si_status);
  if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
    return std::string("killed by signal ") + std::to_string(info.si_status) + " (" +
           ::strsignal(info.si_status) + ")";
  return "ended";
}

/// Memory of the processes of group `pgid`, in KiB: the sum of their proportional set
/// sizes (a shared page counts once in all, split among its users), the resident sets
/// where smaps_rollup is missing (Linux < 4.14).
long group_pss_kb(pid_t pgid) {
  long total = 0;
  std::error_code ec;
  static const long page_kb = ::sysconf(_SC_PAGESIZE) / 1024;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream stat(it->path() / "stat");
    std::string line;
    if (!std::getline(stat, line))
      continue;
    auto close = line.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos)
      continue;
    char state = 0;
    int ppid = 0, pgrp = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d %d", &state, &ppid, &pgrp) != 3 ||
        pgrp != pgid)
      continue;
    std::ifstream rollup(it->path() / "smaps_rollup");
    std::string key;
    long kb = -1;
    while (rollup >> key)
      if (key == "Pss:") {
        rollup >> kb;
        break;
      }
    if (kb >= 0) {
      total += kb;
      continue;
    }
    std::ifstream statm(it->path() / "statm");
    long size = 0, resident = 0;
    if (statm >> size >> resident)
      total += resident * page_kb;
  }
  return total;
}

struct context;

// One render, from render() to its `done` and the closing of its tab.
struct job {
  enum class phase { queued, tab, navigate, wait, extract, screenshot, closing };

  explicit job(asio::io_context& io) : timeout(io), tick(io) {}

  std::uint64_t id = 0;
  std::string url, context_key;
  render_options opts;
  std::function<void(render_result)> done;
  steady::time_point submitted;
  asio::steady_timer timeout, tick;
  phase ph = phase::queued;
  bool finished = false;  // done called
  bool released = false;  // tab slot given back
  std::shared_ptr<context> ctx;
  bool creating_target = false;  // Target.createTarget out: its reply closes a finished tab
  std::string target_id, session_id;
  int setup_pending = 0;
  // Navigation and waiting.
  std::string nav_loader;                     // loaderId of Page.navigate
  std::unordered_set<std::string> seen_loaders;  // of main-frame commits before its reply
  bool committed = false;                     // the navigation's document is in the frame
  std::string current_loader;                 // of the document in the main frame
  bool load_fired = false;                    // load event of that document
  std::unordered_set<std::string> inflight;   // network requestIds
  steady::time_point idle_since;
  bool polling = false;                       // a selector evaluation is out
  int extract_retries = 0;
  // Main-frame document responses by loaderId, and the last one.
  struct doc_response {
    int status = 0;
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers, raw_headers;
  };
  std::unordered_set<std::string> doc_requests;  // main-frame document requestIds
  std::unordered_map<std::string, doc_response> responses;
  std::string last_response_loader;
  // Requests by host:port; blocked ones are taken out again.
  std::map<std::string, int> by_host;
  std::unordered_map<std::string, std::string> request_host;  // requestId -> host:port
  std::unordered_set<std::string> blocked;
  render_result result;
};

// A browser context (cookie jar, storage) of one context key.
struct context {
  std::string key;
  std::string id;  // browserContextId, "" while being created
  bool creating = false;
  bool retired = false;  // close_context()d: disposed when its last render ends
  int users = 0;         // renders holding a tab in it
  steady::time_point last_used;
  std::vector<std::shared_ptr<job>> waiting;  // for the id
};

struct stderr_reader {
  explicit stderr_reader(asio::io_context& io, int fd) : pipe(io, fd) {}
  asio::posix::stream_descriptor pipe;
  std::array<char, 4096> buf{};
  std::string line;
};

struct browser {
  enum class state { launching, connecting, ready };
  std::uint64_t gen = 0;
  state st = state::launching;
  pid_t pid = 0;
  std::string dir;
  bool owns_dir = false;
  steady::time_point started;
  std::shared_ptr<stderr_reader> err;
  std::deque<std::string> tail;  // last stderr lines
  std::unique_ptr<net::ws_client> ws;
  steady::time_point last_ping;
};

} // namespace

struct renderer::impl {
  using reply_fn = std::function<void(json& result, const std::string& error)>;  // result: may be moved from
  struct command {
    std::string method;
    bool browser_level = false;
    steady::time_point sent;
    reply_fn reply;
  };

  explicit impl(renderer_options o) : opts(std::move(o)) {
    if (opts.max_tabs < 1)
      opts.max_tabs = 1;
  }

  renderer_options opts;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  asio::steady_timer housekeeping{io};
  std::thread thread;

  // Renderer thread only.
  bool stopping = false;
  bool stale_checked = false;
  std::uint64_t next_job = 0, next_gen = 0;
  std::int64_t next_command = 0;
  std::unique_ptr<browser> br;
  std::deque<std::shared_ptr<job>> queue;
  std::map<std::uint64_t, std::shared_ptr<job>> active;  // holding a tab slot
  std::unordered_map<std::string, std::shared_ptr<job>> sessions;
  std::unordered_map<std::string, std::shared_ptr<context>> contexts;
  std::unordered_map<std::int64_t, command> pending;
  steady::time_point last_memory;

  mutable std::mutex stats_mu;
  renderer::stats_t st;

  // ----------------------------------------------------------------------------- life

  void run() {
    for (;;) {
      try {
        io.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("renderer: unexpected error: {}", e.what());
      } catch (...) {
        spdlog::error("renderer: unexpected error");
      }
    }
  }

  void start_housekeeping() {
    housekeeping.expires_after(housekeeping_every);
    housekeeping.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping)
        return;
      check_browser();
      start_housekeeping();
    });
  }

  void shutdown() {
    stopping = true;
    housekeeping.cancel();
    std::vector<std::shared_ptr<job>> all(queue.begin(), queue.end());
    queue.clear();
    for (auto& [id, j] : active)
      all.push_back(j);
    for (auto& j : all)
      finish(j, "renderer stopped");
    for (auto& j : all)
      release(j);
    active.clear();
    stop_browser(true);
  }

  void publish() {
    std::lock_guard lock(stats_mu);
    st.tabs_open = static_cast<int>(active.size());
    st.queued = static_cast<int>(queue.size());
    st.contexts = static_cast<int>(contexts.size());
    st.chromium_pid = br ? br->pid : 0;
    if (!br)
      st.chromium_pss_kb = 0;
  }

  // --------------------------------------------------------------------------- public

  void submit(std::shared_ptr<job> j) {
    const auto& w = j->opts.wait;
    if (stopping)
      return finish(j, "renderer stopped");
    if (w != "load" && w != "networkidle" && w != "selector")
      return finish(j, "unknown wait '" + w + "' (load, networkidle or selector)");
    if (w == "selector" && j->opts.selector.empty())
      return finish(j, "wait 'selector' without a selector");
    j->timeout.expires_at(j->submitted + j->opts.timeout);
    j->timeout.async_wait([this, j](const boost::system::error_code& ec) {
      if (!ec && !j->finished)
        on_timeout(j);
    });
    queue.push_back(std::move(j));
    pump();
  }

  void close_context(const std::string& key) {
    auto it = contexts.find(key);
    if (it == contexts.end())
      return;
    auto c = it->second;
    contexts.erase(it);
    c->retired = true;
    if (c->users == 0 && !c->creating)
      dispose(*c);
    publish();
  }

  // ------------------------------------------------------------------------ the queue

  void pump() {
    while (!queue.empty() && static_cast<int>(active.size()) < opts.max_tabs && !stopping) {
      if (!br) {
        launch();
        break;
      }
      if (br->st != browser::state::ready)
        break;
      auto j = queue.front();
      queue.pop_front();
      start(j);
    }
    publish();
  }

  void start(const std::shared_ptr<job>& j) {
    active[j->id] = j;
    j->ph = job::phase::tab;
    auto& c = contexts[j->context_key];
    if (!c) {
      c = std::make_shared<context>();
      c->key = j->context_key;
    }
    j->ctx = c;
    ++c->users;
    c->last_used = steady::now();
    if (!c->id.empty())
      return open_tab(j);
    c->waiting.push_back(j);
    if (c->creating)
      return;
    c->creating = true;
    send("Target.createBrowserContext", {{"disposeOnDetach", false}}, {},
         [this, c](json& r, const std::string& error) {
           c->creating = false;
           auto waiting = std::move(c->waiting);
           c->waiting.clear();
           c->id = str(r, "browserContextId");
           if (c->id.empty()) {
             auto it = contexts.find(c->key);
             if (it != contexts.end() && it->second == c)
               contexts.erase(it);
             for (auto& j : waiting) {
               finish(j, "cannot create a browser context: " + (error.empty() ? "no id" : error));
               release(j);
             }
             return;
           }
           for (auto& j : waiting)
             if (!j->finished)
               open_tab(j);
           if (c->retired && c->users == 0)
             dispose(*c);
         });
  }

  void open_tab(const std::shared_ptr<job>& j) {
    j->creating_target = true;
    send("Target.createTarget", {{"url", "about:blank"}, {"browserContextId", j->ctx->id}}, {},
         [this, j](json& r, const std::string& error) {
           j->creating_target = false;
           j->target_id = str(r, "targetId");
           if (j->finished)
             return close_tab(j);
           if (j->target_id.empty())
             return fail(j, "cannot open a tab: " + (error.empty() ? "no target id" : error));
           send("Target.attachToTarget", {{"targetId", j->target_id}, {"flatten", true}}, {},
                [this, j](json& r, const std::string& error) {
                  j->session_id = str(r, "sessionId");
                  if (!j->session_id.empty() && !j->finished)
                    sessions[j->session_id] = j;
                  if (j->finished)
                    return close_tab(j);
                  if (j->session_id.empty())
                    return fail(j, "cannot attach to the tab: " + error);
                  setup_tab(j);
                });
         });
  }

  void setup_tab(const std::shared_ptr<job>& j) {
    const auto& o = j->opts;
    std::vector<std::pair<const char*, json>> cmds = {
        {"Page.enable", json::object()},
        {"Network.enable", json::object()},
        {"Emulation.setDeviceMetricsOverride",
         {{"width", o.viewport_width}, {"height", o.viewport_height}, {"deviceScaleFactor", 1},
          {"mobile", false}}},
    };
    if (!opts.user_agent.empty())
      cmds.emplace_back("Network.setUserAgentOverride", json{{"userAgent", opts.user_agent}});
    // Fetch interception by resource type rather than Network.setBlockedURLs: URL patterns
    // cannot tell an image from a page (/img?id=3), the resource type can. Only the blocked
    // types are paused, so documents, scripts and XHR never wait for a round trip.
    json patterns = json::array();
    auto block = [&](bool on, const char* type) {
      if (on)
        patterns.push_back({{"urlPattern", "*"}, {"resourceType", type}, {"requestStage", "Request"}});
    };
    block(o.block_images, "Image");
    block(o.block_fonts, "Font");
    block(o.block_media, "Media");
    if (!patterns.empty())
      cmds.emplace_back("Fetch.enable", json{{"patterns", std::move(patterns)}});
    j->setup_pending = static_cast<int>(cmds.size());
    for (auto& [method, params] : cmds) {
      std::string m = method;
      send(m, std::move(params), j->session_id, [this, j, m](json&, const std::string& error) {
        if (j->finished)
          return;
        if (!error.empty())
          return fail(j, "tab setup failed: " + m + ": " + error);
        if (--j->setup_pending == 0)
          navigate(j);
      });
    }
  }

  void navigate(const std::shared_ptr<job>& j) {
    j->ph = job::phase::navigate;
    send("Page.navigate", {{"url", j->url}}, j->session_id, [this, j](json& r, const std::string& error) {
      if (j->finished)
        return;
      if (!error.empty())
        return fail(j, error);  // e.g. "Cannot navigate to invalid URL"
      auto error_text = str(r, "errorText");
      j->nav_loader = str(r, "loaderId");
      if (error_text == "net::ERR_HTTP_RESPONSE_CODE_FAILURE" && !j->responses.empty()) {
        // An HTTP error with an empty body: Chromium shows its own error page instead;
        // the status is the answer, there is no document of the site's to return.
        return finish(j, "");
      }
      if (!error_text.empty())
        return fail(j, error_text);
      if (r.value("isDownload", false))
        return fail(j, "not rendered: the response is a download");
      if (j->seen_loaders.count(j->nav_loader))
        j->committed = true;
      j->ph = job::phase::wait;
      j->idle_since = steady::now();
      schedule_tick(j);
      check_wait(j);
    });
  }

  // ----------------------------------------------------------------------- waiting

  void schedule_tick(const std::shared_ptr<job>& j) {
    j->tick.expires_after(poll_every);
    j->tick.async_wait([this, j](const boost::system::error_code& ec) {
      if (ec || j->finished || j->ph != job::phase::wait)
        return;
      check_wait(j);
      if (!j->finished && j->ph == job::phase::wait)
        schedule_tick(j);
    });
  }

  void check_wait(const std::shared_ptr<job>& j) {
    if (j->finished || j->ph != job::phase::wait)
      return;
    const auto& w = j->opts.wait;
    if (w == "networkidle") {
      if (j->committed && j->load_fired && j->inflight.empty() &&
          steady::now() - j->idle_since >= idle_quiet)
        extract(j);
    } else if (w == "selector") {
      if (!j->committed || j->polling)
        return;
      j->polling = true;
      std::string expr = "!!document.querySelector(" +
                         json(j->opts.selector).dump(-1, ' ', false, json::error_handler_t::replace) + ")";
      send("Runtime.evaluate", {{"expression", expr}, {"returnByValue", true}}, j->session_id,
           [this, j](json& r, const std::string&) {
             j->polling = false;
             if (j->finished || j->ph != job::phase::wait)
               return;
             if (r.contains("exceptionDetails")) {
               // A document being replaced has no context for a moment; a bad selector
               // throws a SyntaxError every time.
               auto text = str(field(field(r, "exceptionDetails"), "exception"), "description");
               if (text.find("SyntaxError") != std::string::npos)
                 fail(j, "invalid selector '" + j->opts.selector + "': " + text.substr(0, text.find('\n')));
               return;
             }
             if (field(field(r, "result"), "value") == true)
               extract(j);
           });
    } else if (j->committed && j->load_fired) {  // "load"
      extract(j);
    }
  }

  // --------------------------------------------------------------------- extraction

  void extract(const std::shared_ptr<job>& j) {
    j->ph = job::phase::extract;
    j->tick.cancel();
    // The size is checked in the page, so a document over the limit never crosses the
    // WebSocket (UTF-8 bytes: what the result will hold).
    const std::string expr =
        "(() => { const d = document.documentElement; const h = d ? d.outerHTML : ''; "
        "const n = new TextEncoder().encode(h).length; "
        "return n > " + std::to_string(opts.max_html_bytes) +
        " ? {bytes: n, url: location.href} : {bytes: n, url: location.href, html: h}; })()";
    send("Runtime.evaluate", {{"expression", expr}, {"returnByValue", true}}, j->session_id,
         [this, j](json& r, const std::string& error) {
           if (j->finished)
             return;
           json value;
           if (auto res = r.find("result"); res != r.end() && res->is_object() && res->contains("value"))
             value = std::move((*res)["value"]);  // the document, not copied
           if (!error.empty() || r.contains("exceptionDetails") || !value.is_object()) {
             // The document was being replaced (client-side navigation): read it again.
             if (++j->extract_retries > max_extract_retries)
               return fail(j, "cannot read the document: " +
                                  (error.empty() ? std::string("no result") : error));
             j->tick.expires_after(poll_every);
             j->tick.async_wait([this, j](const boost::system::error_code& ec) {
               if (!ec && !j->finished)
                 extract(j);
             });
             return;
           }
           j->result.final_url = str(value, "url");
           auto bytes = value.value("bytes", 0.0);
           auto html = value.find("html");
           if (html == value.end() || !html->is_string() || html->get_ref<const std::string&>().size() > opts.max_html_bytes)
             return fail(j, "document too large: " + std::to_string(static_cast<std::int64_t>(bytes)) +
                                " bytes (limit " + std::to_string(opts.max_html_bytes) + ")");
           j->result.html = std::move(html->get_ref<std::string&>());
           if (!j->opts.screenshot)
             return finish(j, "");
           j->ph = job::phase::screenshot;
           send("Page.captureScreenshot", {{"format", "png"}}, j->session_id,
                [this, j](json& r, const std::string& error) {
                  if (j->finished)
                    return;
                  auto data = str(r, "data");
                  if (data.empty())
                    return fail(j, "screenshot failed: " + (error.empty() ? "no data" : error));
                  j->result.screenshot_png_base64 = std::move(data);
                  finish(j, "");
                });
         });
  }

  // ------------------------------------------------------------------ page events

  void on_page_event(const std::shared_ptr<job>& j, const std::string& m, const json& p) {
    if (j->finished)
      return;
    if (m == "Network.requestWillBeSent") {
      auto rid = str(p, "requestId");
      auto host = host_port(str(field(p, "request"), "url"));
      if (str(p, "type") == "Document" && str(p, "frameId") == j->target_id)
        j->doc_requests.insert(rid);
      if (!host.empty() && !j->blocked.count(rid)) {
        ++j->by_host[host];
        j->request_host[rid] = host;
      }
      j->inflight.insert(rid);  // a redirect keeps its requestId
    } else if (m == "Network.loadingFinished" || m == "Network.loadingFailed") {
      if (j->inflight.erase(str(p, "requestId")) && j->inflight.empty())
        j->idle_since = steady::now();
    } else if (m == "Network.responseReceived") {
      if (str(p, "type") != "Document" || str(p, "frameId") != j->target_id)
        return;  // the main frame's id is its target's
      const auto& resp = field(p, "response");
      auto loader = str(p, "loaderId");
      auto& d = j->responses[loader];
      d.status = resp.value("status", 0);
      d.url = str(resp, "url");
      d.headers = header_list(resp);
      j->last_response_loader = loader;
    } else if (m == "Network.responseReceivedExtraInfo") {
      // The headers as received, Set-Cookie included (responseReceived leaves it out).
      // A navigation's requestId is its loaderId; redirects repeat it, the last one wins.
      auto rid = str(p, "requestId");
      if (j->doc_requests.count(rid))
        j->responses[rid].raw_headers = header_list(p);
    } else if (m == "Page.frameNavigated") {
      const auto& f = field(p, "frame");
      if (f.contains("parentId"))
        return;
      j->current_loader = str(f, "loaderId");
      j->load_fired = false;  // a new document: wait for its own load event
      if (j->nav_loader.empty())
        j->seen_loaders.insert(j->current_loader);
      else if (j->current_loader == j->nav_loader)
        j->committed = true;
    } else if (m == "Page.loadEventFired") {
      j->load_fired = true;
      check_wait(j);
    } else if (m == "Fetch.requestPaused") {
      auto rid = str(p, "networkId");
      if (!rid.empty() && j->blocked.insert(rid).second) {
        auto it = j->request_host.find(rid);
        if (it != j->request_host.end() && --j->by_host[it->second] <= 0)
          j->by_host.erase(it->second);
      }
      send("Fetch.failRequest", {{"requestId", str(p, "requestId")}, {"errorReason", "BlockedByClient"}},
           j->session_id, {});
    } else if (m == "Page.javascriptDialogOpening") {
      // alert() and friends would stop the page's scripts until answered.
      auto type = str(p, "type");
      send("Page.handleJavaScriptDialog", {{"accept", type == "alert" || type == "beforeunload"}},
           j->session_id, {});
    } else if (m == "Inspector.targetCrashed") {
      fail(j, "page crashed (its renderer process died)");
    }
  }

  // -------------------------------------------------------------------- endings

  void on_timeout(const std::shared_ptr<job>& j) {
    std::string what;
    switch (j->ph) {
    case job::phase::queued:
      what = br && br->st != browser::state::ready ? "the browser to start" : "a free tab";
      break;
    case job::phase::tab:
      what = "a tab";
      break;
    case job::phase::navigate:
      what = "the response";
      break;
    case job::phase::wait:
      what = j->opts.wait == "selector" ? "selector " + j->opts.selector : j->opts.wait;
      break;
    case job::phase::extract:
      what = "the document";
      break;
    case job::phase::screenshot:
      what = "the screenshot";
      break;
    case job::phase::closing:
      return;
    }
    fail(j, "timeout after " + std::to_string(j->opts.timeout.count()) + " ms waiting for " + what);
  }

  /// Ends a render with an error and closes its tab.
  void fail(const std::shared_ptr<job>& j, const std::string& error) {
    finish(j, error.empty() ? "unknown error" : error);
  }

  /// Calls `done` (once) and gives the tab back.
  void finish(const std::shared_ptr<job>& j, const std::string& error) {
    if (j->finished)
      return;
    j->finished = true;
    j->timeout.cancel();
    j->tick.cancel();
    auto& r = j->result;
    r.error = error;
    if (!error.empty()) {
      r.html.clear();
      r.screenshot_png_base64.clear();
    }
    auto resp = j->responses.find(j->current_loader);
    if (resp == j->responses.end())
      resp = j->responses.find(j->last_response_loader);
    if (resp != j->responses.end()) {
      r.status = resp->second.status;
      auto& d = resp->second;
      r.headers = std::move(d.raw_headers.empty() ? d.headers : d.raw_headers);
      if (r.final_url.empty())
        r.final_url = resp->second.url;
    }
    r.requests_by_host = std::move(j->by_host);
    r.elapsed_ms = std::chrono::duration_cast<milliseconds>(steady::now() - j->submitted).count();
    {
      std::lock_guard lock(stats_mu);
      ++(error.empty() ? st.rendered : st.failed);
    }
    if (error.empty())
      spdlog::debug("renderer: {} rendered: status {}, {} bytes, {} ms", j->url, r.status, r.html.size(),
                    r.elapsed_ms);
    else
      spdlog::debug("renderer: {} failed after {} ms: {}", j->url, r.elapsed_ms, error);
    if (j->ph == job::phase::queued) {
      auto it = std::find(queue.begin(), queue.end(), j);
      if (it != queue.end())
        queue.erase(it);
    }
    auto done = std::move(j->done);
    j->done = nullptr;
    if (done) {
      try {
        done(std::move(r));
      } catch (const std::exception& e) {
        spdlog::error("renderer: a render callback threw: {}", e.what());
      } catch (...) {
        spdlog::error("renderer: a render callback threw");
      }
    }
    if (j->ph == job::phase::queued)
      return publish();
    // The tab is closed; one still being opened is closed when its id comes (the slot is
    // held until then, so max_tabs bounds the tabs Chromium really has).
    if (!j->target_id.empty())
      close_tab(j);
    else if (!j->creating_target || !br || br->st != browser::state::ready)
      release(j);
  }

  void close_tab(const std::shared_ptr<job>& j) {
    if (j->released || j->ph == job::phase::closing)
      return;
    j->ph = job::phase::closing;
    if (!j->session_id.empty())
      sessions.erase(j->session_id);
    if (j->target_id.empty() || !br || br->st != browser::state::ready)
      return release(j);
    send("Target.closeTarget", {{"targetId", j->target_id}}, {},
         [this, j](json&, const std::string&) { release(j); });
  }

  void release(const std::shared_ptr<job>& j) {
    if (j->released)
      return;
    j->released = true;
    if (!j->session_id.empty())
      sessions.erase(j->session_id);
    if (active.erase(j->id) && j->ctx) {
      auto& c = *j->ctx;
      c.last_used = steady::now();
      if (--c.users == 0 && c.retired && !c.id.empty())
        dispose(c);
    }
    j->ctx.reset();
    pump();
  }

  void dispose(context& c) {
    if (c.id.empty() || !br || br->st != browser::state::ready)
      return;
    send("Target.disposeBrowserContext", {{"browserContextId", c.id}}, {}, {});
    c.id.clear();
  }

  // ---------------------------------------------------------------------- browser

  void launch() {
    auto b = std::make_unique<browser>();
    b->gen = ++next_gen;
    b->started = steady::now();
    b->last_ping = b->started;
    if (opts.user_data_dir.empty()) {
      std::error_code ec;
      auto tmp = fs::temp_directory_path(ec);
      if (!stale_checked) {
        stale_checked = true;
        remove_stale_profiles(tmp);
      }
      auto tmpl = (tmp / "spiderhub-chromium-XXXXXX").string();
      if (ec || !::mkdtemp(tmpl.data()))
        return launch_failed("cannot create a profile directory: " + std::string(std::strerror(errno)));
      b->dir = tmpl;
      b->owns_dir = true;
      std::ofstream(fs::path(tmpl) / "spiderhub-owner") << ::getpid() << '\n';
    } else {
      b->dir = opts.user_data_dir;
    }
    std::vector<std::string> args = {opts.chromium, "--headless=new"};
    if (::geteuid() == 0)
      args.push_back("--no-sandbox");  // Chromium refuses to run as root with its sandbox
    for (const char* f :
         {"--disable-gpu", "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check",
          "--disable-extensions", "--disable-background-networking", "--mute-audio"})
      args.push_back(f);
    args.push_back("--user-data-dir=" + b->dir);
    for (const char* f : extra_flags)
      args.push_back(f);
    for (auto& f : opts.extra_args)
      args.push_back(f);
    args.push_back("about:blank");
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);

    // Chromium's crash handler keeps its database under $XDG_CONFIG_HOME (~/.config by
    // default): pointed into the profile, nothing is written outside it.
    std::vector<std::string> env_store = {"XDG_CONFIG_HOME=" + b->dir + "/xdg-config",
                                          "XDG_CACHE_HOME=" + b->dir + "/xdg-cache"};
    for (char** e = environ; e && *e; ++e)
      if (std::strncmp(*e, "XDG_CONFIG_HOME=", 16) != 0 && std::strncmp(*e, "XDG_CACHE_HOME=", 15) != 0)
        env_store.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_store)
      envp.push_back(e.data());
    envp.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return launch_failed("pipe: " + std::string(std::strerror(errno)), std::move(b));
    std::string error;
    pid_t pid = spawn_group(argv, envp, fds[1], error);
    ::close(fds[1]);
    if (pid < 0) {
      ::close(fds[0]);
      return launch_failed("cannot start " + opts.chromium + ": " + error, std::move(b));
    }
    b->pid = pid;
    b->err = std::make_shared<stderr_reader>(io, fds[0]);
    br = std::move(b);
    {
      std::lock_guard lock(stats_mu);
      ++st.browser_starts;
    }
    spdlog::info("renderer: started {} (pid {}, profile {})", opts.chromium, pid, br->dir);
    read_stderr(br->gen, br->err);
    publish();
  }

  void read_stderr(std::uint64_t gen, std::shared_ptr<stderr_reader> r) {
    r->pipe.async_read_some(asio::buffer(r->buf), [this, gen, r](const boost::system::error_code& ec,
                                                                 std::size_t n) {
      if (!br || br->gen != gen)
        return;
      for (std::size_t i = 0; i < n; ++i) {
        char c = r->buf[i];
        if (c != '\n') {
          if (r->line.size() < max_stderr_line)
            r->line += c;
          continue;
        }
        on_stderr_line(std::move(r->line));
        r->line.clear();
        if (!br || br->gen != gen)
          return;
      }
      if (ec) {
        // Every process of the group has closed its stderr: Chromium is gone.
        if (!check_browser())
          return;
        // (Its helpers may outlive it for a moment; the housekeeping sees the exit.)
        return;
      }
      read_stderr(gen, r);
    });
  }

  void on_stderr_line(std::string line) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.empty())
      return;
    spdlog::debug("renderer: chromium: {}", line);
    br->tail.push_back(line);
    if (br->tail.size() > stderr_tail_lines)
      br->tail.pop_front();
    const std::string prefix = "DevTools listening on ";
    if (br->st != browser::state::launching || line.compare(0, prefix.size(), prefix) != 0)
      return;
    connect(line.substr(prefix.size()));
  }

  void connect(const std::string& url) {
    br->st = browser::state::connecting;
    net::ws_client_options o;
    o.url = url;
    o.connect_timeout = opts.launch_timeout;
    o.idle_timeout = milliseconds(0);  // hangs are found by unanswered commands
    // HTML is checked in the page against max_html_bytes, but Chromium writes every
    // non-ASCII character as \uXXXX (and control characters likewise): 6 bytes per byte
    // at worst. A message over this closes the connection and restarts the browser.
    o.max_message_bytes = opts.max_html_bytes * 6 + (16u << 20);
    net::ws_client_handlers h;
    const auto gen = br->gen;
    h.on_open = [this, gen] {
      asio::post(io, [this, gen] {
        if (!br || br->gen != gen || stopping)
          return;
        br->st = browser::state::ready;
        spdlog::info("renderer: connected to chromium (pid {}) in {} ms", br->pid,
                     std::chrono::duration_cast<milliseconds>(steady::now() - br->started).count());
        pump();
      });
    };
    h.on_message = [this, gen](std::string text) {
      asio::post(io, [this, gen, text = std::move(text)]() mutable {
        if (br && br->gen == gen && !stopping)
          on_message(std::move(text));
      });
    };
    h.on_closed = [this, gen](std::string reason) {
      asio::post(io, [this, gen, reason = std::move(reason)] {
        if (!br || br->gen != gen || stopping)
          return;
        if (br->st == browser::state::ready) {
          // Usually Chromium died: its exit status says more than the socket.
          siginfo_t info{};
          for (int i = 0; i < 15; ++i) {
            info.si_pid = 0;
            if (::waitid(P_PID, static_cast<id_t>(br->pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
                info.si_pid != 0)
              break;
            std::this_thread::sleep_for(milliseconds(20));
          }
          browser_lost(info.si_pid != 0 ? describe_exit(info) : "DevTools connection lost: " + reason);
        } else
          launch_failed("cannot connect to DevTools: " + reason);
      });
    };
    br->ws = std::make_unique<net::ws_client>(std::move(o), std::move(h));
    br->ws->connect();
  }

  /// Whether Chromium still runs; when it has exited, handles that and returns false.
  bool check_browser() {
    if (!br)
      return false;
    siginfo_t info{};
    // WNOWAIT: the pid stays ours (a zombie) until stop_browser() has killed its group.
    int rc = ::waitid(P_PID, static_cast<id_t>(br->pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc == 0 && info.si_pid == 0) {
      housekeeping_checks();
      return br != nullptr;
    }
    std::string how = rc == 0 ? describe_exit(info) : "ended (" + std::string(std::strerror(errno)) + ")";
    if (br->st == browser::state::ready)
      browser_lost(how);
    else
      launch_failed(how);
    return false;
  }

  void housekeeping_checks() {
    const auto now = steady::now();
    if (br->st != browser::state::ready) {
      if (now - br->started > opts.launch_timeout)
        launch_failed("no DevTools connection within " + std::to_string(opts.launch_timeout.count()) + " ms");
      return;
    }
    // A browser command (Target.*) must be answered; page commands may legitimately wait
    // for a slow server or a busy page, and the render's timeout covers them.
    for (auto& [id, c] : pending) {
      if (c.browser_level && now - c.sent > opts.command_timeout) {
        browser_lost("not responding (no reply to " + c.method + " in " +
                     std::to_string(opts.command_timeout.count()) + " ms)");
        return;
      }
    }
    const auto ping_every = std::min<milliseconds>(max_ping_every, opts.command_timeout / 2);
    if (!active.empty() && now - br->last_ping >= ping_every) {
      br->last_ping = now;
      send("Browser.getVersion", json::object(), {}, {});
    }
    // Contexts nobody used for a while.
    for (auto it = contexts.begin(); it != contexts.end();) {
      auto& c = *it->second;
      if (c.users == 0 && !c.creating && now - c.last_used > opts.context_idle) {
        dispose(c);
        it = contexts.erase(it);
      } else {
        ++it;
      }
    }
    if (now - last_memory >= memory_every) {
      last_memory = now;
      auto kb = group_pss_kb(br->pid);
      std::lock_guard lock(stats_mu);
      st.chromium_pss_kb = kb;
    }
    publish();
  }

  std::string stderr_tail() const {
    std::string s;
    for (auto& l : br->tail) {
      if (l.find("dbus") != std::string::npos)
        continue;  // no system bus in a container or service: noise
      s += s.empty() ? "" : " | ";
      s += l;
    }
    return s;
  }

  void launch_failed(const std::string& why, std::unique_ptr<browser> b = nullptr) {
    if (b)
      br = std::move(b);
    std::string msg = "browser launch failed: " + why;
    if (br) {
      auto tail = stderr_tail();
      if (!tail.empty())
        msg += " (stderr: " + tail + ")";
    }
    spdlog::error("renderer: {}", msg);
    stop_browser(false);
    // The renders waiting for this browser get the reason; the next render tries again.
    auto waiting = std::move(queue);
    queue.clear();
    for (auto& j : waiting)
      finish(j, msg);
    publish();
  }

  void browser_lost(const std::string& why) {
    spdlog::warn("renderer: chromium (pid {}) {}: {} render(s) fail, restarting it", br->pid, why, active.size());
    {
      std::lock_guard lock(stats_mu);
      ++st.browser_crashes;
    }
    stop_browser(false);
    std::vector<std::shared_ptr<job>> failed;
    for (auto& [id, j] : active)
      failed.push_back(j);
    for (auto& j : failed) {
      finish(j, "browser crashed: " + why);
      release(j);
    }
    pump();  // queued renders start a fresh browser
  }

  /// Kills Chromium's process group, reaps it and forgets everything of that browser.
  void stop_browser(bool graceful) {
    pending.clear();
    sessions.clear();
    contexts.clear();
    if (!br)
      return;
    auto b = std::move(br);
    if (b->pid > 0) {
      if (graceful && !b->owns_dir) {
        // SIGTERM lets Chromium flush a caller's profile; a temp profile is removed anyway.
        ::killpg(b->pid, SIGTERM);
        auto until = steady::now() + milliseconds(2000);
        siginfo_t info{};
        while (steady::now() < until &&
               ::waitid(P_PID, static_cast<id_t>(b->pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
               info.si_pid == 0)
          std::this_thread::sleep_for(milliseconds(20));
      }
      ::killpg(b->pid, SIGKILL);
      int status = 0;
      while (::waitpid(b->pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    b->ws.reset();  // the socket is dead by now: returns at once
    if (b->err) {
      boost::system::error_code ignored;
      b->err->pipe.close(ignored);
    }
    if (b->owns_dir) {
      std::error_code ec;
      fs::remove_all(b->dir, ec);
      if (ec) {  // a helper still writing as it died
        std::this_thread::sleep_for(milliseconds(50));
        fs::remove_all(b->dir, ec);
      }
    }
    publish();
  }

  // ---------------------------------------------------------------------- protocol

  void send(const std::string& method, json params, const std::string& session, reply_fn reply) {
    if (!br || br->st != browser::state::ready || !br->ws) {
      spdlog::debug("renderer: {} not sent: no browser", method);
      return;  // the renders of a lost browser are failed by browser_lost()
    }
    const auto id = ++next_command;
    json msg = {{"id", id}, {"method", method}, {"params", std::move(params)}};
    if (!session.empty())
      msg["sessionId"] = session;
    pending[id] = command{method, session.empty(), steady::now(), std::move(reply)};
    // (replace: a URL with bytes that are not UTF-8 must not throw)
    br->ws->send_text(msg.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  void on_message(std::string text) {
    json msg = json::parse(text, nullptr, false);
    if (msg.is_discarded()) {
      msg = json::parse(fix_lone_surrogates(text), nullptr, false);
      if (msg.is_discarded()) {
        spdlog::warn("renderer: unreadable DevTools message ({} bytes)", text.size());
        return;
      }
    }
    text.clear();
    text.shrink_to_fit();
    try {
      if (auto id = msg.find("id"); id != msg.end() && id->is_number_integer()) {
        auto it = pending.find(id->get<std::int64_t>());
        if (it == pending.end())
          return;
        auto reply = std::move(it->second.reply);
        pending.erase(it);
        if (!reply)
          return;
        std::string error;
        if (auto e = msg.find("error"); e != msg.end())
          error = e->value("message", std::string("error"));
        json empty = json::object();
        auto r = msg.find("result");
        reply(r != msg.end() && r->is_object() ? *r : empty, error);
        return;
      }
      auto method = str(msg, "method");
      if (method.empty())
        return;
      static const json no_params = json::object();
      auto pit = msg.find("params");
      const json& params = pit != msg.end() ? *pit : no_params;
      auto session = str(msg, "sessionId");
      if (!session.empty()) {
        auto it = sessions.find(session);
        if (it != sessions.end()) {
          auto j = it->second;  // the handler may end the render
          on_page_event(j, method, params);
        }
        return;
      }
      if (method == "Target.detachedFromTarget") {
        auto it = sessions.find(str(params, "sessionId"));
        if (it != sessions.end()) {
          auto j = it->second;
          sessions.erase(it);
          j->session_id.clear();
          j->target_id.clear();  // gone already: nothing to close
          fail(j, "the tab was closed");
          release(j);
        }
      }
    } catch (const std::exception& e) {
      spdlog::warn("renderer: bad DevTools message: {}", e.what());
    }
  }
};

// ---------------------------------------------------------------------------------------

renderer::renderer(renderer_options o) : impl_(std::make_unique<impl>(std::move(o))) {
  impl_->start_housekeeping();
  impl_->thread = std::thread([p = impl_.get()] { p->run(); });
}

renderer::~renderer() {
  auto* p = impl_.get();
  std::promise<void> stopped;
  asio::post(p->io, [p, &stopped] {
    p->shutdown();
    stopped.set_value();
  });
  stopped.get_future().wait();
  p->guard.reset();
  p->io.stop();
  p->thread.join();
  // Handlers still queued hold jobs and their timers: run them out before the io_context goes.
  p->io.restart();
  p->io.poll();
}

void renderer::render(std::string url, std::string context, render_options opts,
                      std::function<void(render_result)> done) {
  auto* p = impl_.get();
  auto j = std::make_shared<job>(p->io);
  j->url = std::move(url);
  j->context_key = std::move(context);
  j->opts = std::move(opts);
  j->done = std::move(done);
  j->submitted = steady::now();
  asio::post(p->io, [p, j]() mutable {
    j->id = ++p->next_job;
    p->submit(std::move(j));
  });
}

void renderer::close_context(const std::string& context) {
  auto* p = impl_.get();
  asio::post(p->io, [p, context] { p->close_context(context); });
}

renderer::stats_t renderer::stats() const {
  std::lock_guard lock(impl_->stats_mu);
  return impl_->st;
}

} // namespace spiderhub::actors
