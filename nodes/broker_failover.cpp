#include "nodes/broker_failover.hpp"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "core/process.hpp"
#include "net/http_server.hpp"

namespace spiderhub::nodes {
namespace {

std::vector<std::string>& saved_args() {
  static std::vector<std::string> args;
  return args;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

std::string standby_body(const storage::leader_lease::holder_info& h) {
  return std::string(R"({"status":"standby","leader":")") + net::json_escape(h.live ? h.url : "") +
         R"(","leaderName":")" + net::json_escape(h.live ? h.holder : "") + "\"}";
}

} // namespace

void remember_command_line(int argc, char** argv) {
  saved_args().assign(argv, argv + argc);
}

void step_down(const std::string& why) {
  spdlog::critical("failover: stepping down ({}); starting again as a standby", why);
  spdlog::default_logger()->flush();
  // Sockets, the database connections and log files must not outlive the image: close
  // everything but stdio (not all of them are opened close-on-exec).
  if (auto* d = opendir("/proc/self/fd")) {
    std::vector<int> fds;
    while (auto* e = readdir(d)) {
      int fd = std::atoi(e->d_name);
      if (fd > 2 && fd != dirfd(d))
        fds.push_back(fd);
    }
    closedir(d);
    for (int fd : fds)
      ::close(fd);
  }
  auto& args = saved_args();
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  if (!args.empty())
    ::execv("/proc/self/exe", argv.data());
  ::_exit(75); // exec failed: a service manager restarts us
}

std::string broker_name(const core::broker_config& cfg) {
  if (!cfg.failover.name.empty())
    return cfg.failover.name;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

std::optional<std::int64_t> wait_for_leadership(const core::broker_config& cfg,
                                                net::server_options so,
                                                std::unique_ptr<storage::leader_lease>& held) {
  struct shared_t {
    std::mutex mtx;
    storage::leader_lease::holder_info leader; // as last read
  };
  auto shared = std::make_shared<shared_t>();
  std::unique_ptr<net::http_server> server;
  std::string last_leader = "?";
  auto last_error_log = std::chrono::steady_clock::now() - std::chrono::hours(1);
  auto last_announce = last_error_log;
  for (;;) {
    try {
      // The database may be unreachable (at boot, or from a leader that just stepped
      // down in a partition): stay a standby and keep trying.
      if (!held)
        held = std::make_unique<storage::leader_lease>(
          cfg.storage.postgresql, broker_name(cfg), cfg.failover.advertise_url, cfg.failover.lease);
      auto& lease = *held;
      if (auto token = lease.try_acquire()) {
        if (server) {
          server->stop();
          server.reset();
        }
        spdlog::info("failover: {} is the leader now (fencing token {})", lease.holder(), *token);
        return token;
      }
      auto h = lease.current();
      if (std::chrono::steady_clock::now() - last_announce >= std::chrono::seconds(1)) {
        lease.announce("standby");
        last_announce = std::chrono::steady_clock::now();
      }
      {
        std::lock_guard lk(shared->mtx);
        shared->leader = h;
      }
      auto who = h.live ? h.holder + " " + h.url : std::string("(lease lapsed)");
      if (who != last_leader) {
        spdlog::info("failover: standby; the leader is {} (token {})", who, h.token);
        last_leader = who;
      }
    } catch (const std::exception& e) {
      auto now = std::chrono::steady_clock::now();
      if (now - last_error_log > std::chrono::seconds(10)) {
        spdlog::error("failover: standby, the leader lease cannot be read: {}", e.what());
        last_error_log = now;
      }
    }
    if (!server) {
      so.max_body_bytes = 1 << 16;
      so.stop_grace = std::chrono::milliseconds(200);
      net::server_callbacks cbs;
      auto respond = [shared] {
        net::http_response r;
        r.status = 503;
        std::lock_guard lk(shared->mtx);
        r.body = standby_body(shared->leader);
        r.headers.push_back({"Retry-After", "1"});
        r.headers.push_back({"Access-Control-Allow-Origin", "*"});
        return r;
      };
      cbs.on_http = [respond, shared](net::http_request req,
                                      std::shared_ptr<net::http_responder> out) {
        auto r = respond();
        if (req.method == "GET" && (req.path == "/" || req.path == "/index.html")) {
          // A browser opening the dashboard here: say so, and go to the active broker.
          std::string url;
          {
            std::lock_guard lk(shared->mtx);
            url = shared->leader.live ? shared->leader.url : "";
          }
          auto esc = html_escape(url);
          r.content_type = "text/html; charset=utf-8";
          r.body = "<!doctype html><meta charset=utf-8><title>spiderhub standby</title>" +
                   (url.empty() ? std::string("<meta http-equiv=refresh content=2>")
                                : "<meta http-equiv=refresh content=\"2;url=" + esc + "\">") +
                   "<p>This spiderhub broker is a standby (another broker is active). " +
                   (url.empty() ? std::string("No broker holds the lease right now; retrying.")
                                : "The active broker is <a href=\"" + esc + "\">" + esc + "</a>.") +
                   "</p>";
        }
        out->reply(std::move(r));
      };
      cbs.on_upgrade = [respond](const net::http_request&) -> std::optional<net::http_response> {
        return respond();
      };
      server = std::make_unique<net::http_server>(so, std::move(cbs));
      try {
        auto port = server->start();
        spdlog::info("failover: standby answering 503 on {}:{} until it leads", so.address, port);
      } catch (const std::exception& e) {
        // (logged once, by the caller)
        throw std::runtime_error("failover: standby cannot listen on " + so.address + ":" +
                                 std::to_string(so.port) + ": " + e.what());
      }
    }
    if (int sig = core::wait_for_termination(cfg.failover.poll)) {
      spdlog::info("broker: signal {} received while standby, stopping", sig);
      return std::nullopt;
    }
  }
}

lease_keeper::lease_keeper(storage::leader_lease& lease, std::int64_t token,
                           std::chrono::milliseconds length)
  : lease_(lease), token_(token), every_(length / 3), length_(length) {
  thread_ = std::thread([this] { run(); });
}

lease_keeper::~lease_keeper() {
  stop_and_release();
}

void lease_keeper::stop_and_release() {
  {
    std::lock_guard lk(mtx_);
    if (stopping_)
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
  try {
    lease_.release(token_);
    spdlog::info("failover: lease released");
  } catch (const std::exception& e) {
    spdlog::warn("failover: cannot release the lease ({}): a standby takes over when it lapses",
                 e.what());
  }
}

void lease_keeper::run() {
  using clock = std::chrono::steady_clock;
  auto last_ok = clock::now();
  std::unique_lock lk(mtx_);
  while (!stopping_) {
    cv_.wait_for(lk, every_, [&] { return stopping_; });
    if (stopping_)
      break;
    lk.unlock();
    try {
      if (lease_.renew(token_) == storage::leader_lease::renewal::deposed)
        step_down("another broker holds the lease (token " + std::to_string(token_) + " is stale)");
      last_ok = clock::now();
      lease_.announce("active");
    } catch (const std::exception& e) {
      auto since = clock::now() - last_ok;
      spdlog::warn("failover: lease renewal failed: {}", e.what());
      // No renewal for a whole lease: a standby may hold it now; our writes are fenced
      // anyway, but serving clients from stale memory must stop too.
      if (since >= length_)
        step_down(
          "no lease renewal for " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(since).count()) +
          " ms");
    }
    lk.lock();
  }
}

} // namespace spiderhub::nodes
