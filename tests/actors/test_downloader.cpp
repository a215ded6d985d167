// Downloader tests against a real HTTP/1.1 server on 127.0.0.1 (plain POSIX sockets,
// one thread per connection, keep-alive), so connection reuse, cookies, redirects,
// compression and timeouts go through libcurl exactly as in production.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/agent/downloader.hpp"
#include "protocol/json_codec.hpp"

using namespace std::chrono_literals;
using spiderhub::actors::downloader;
using spiderhub::actors::downloader_options;
namespace protocol = spiderhub::protocol;

namespace {

// gzip of "gzip says hello " x 64 (1024 bytes), made with Python's gzip.compress(mtime=0).
const unsigned char gzip_body[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4b, 0xaf, 0xca, 0x2c, 0x50,
    0x28, 0x4e, 0xac, 0x2c, 0x56, 0xc8, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x48, 0x1f, 0xe5, 0x8f,
    0xf2, 0x47, 0xf9, 0x23, 0x86, 0x0f, 0x00, 0x68, 0xaa, 0x03, 0xb6, 0x00, 0x04, 0x00, 0x00};

std::string gzip_plain() {
  std::string s;
  for (int i = 0; i < 64; ++i)
    s += "gzip says hello ";
  return s;
}

// Not UTF-8: lone continuation bytes, an overlong start, a NUL and 0xff/0xfe.
const std::string binary_body("\xff\xfe\x00\x80text\xc3\x28\xe2\x82\x01\x00\xf8zz", 17);

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------------------------------

class test_server {
public:
  struct request {
    std::string method, path, query;
    std::map<std::string, std::string> headers; // lower-case names
    std::string body;
    std::string param(const std::string& name) const {
      std::istringstream in(query);
      std::string kv;
      while (std::getline(in, kv, '&')) {
        auto eq = kv.find('=');
        if (kv.substr(0, eq) == name)
          return eq == std::string::npos ? "" : kv.substr(eq + 1);
      }
      return {};
    }
    std::string header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? "" : it->second;
    }
  };
  struct response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool close_delimited = false; // no Content-Length: body ends when the connection does
  };

  test_server() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0; // the kernel picks a free port
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 128) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~test_server() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (int fd : clients_)
        ::shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads)
      t.join();
  }

  std::string url(const std::string& path_and_query) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path_and_query;
  }
  int max_concurrent() const { return max_active_.load(); }
  int connections() const { return connections_.load(); }
  int hits(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = hits_.find(key);
    return it == hits_.end() ? 0 : it->second;
  }

private:
  void accept_loop() {
    while (true) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR)
          continue;
        return; // shut down
      }
      std::lock_guard lock(mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      ++connections_;
      clients_.insert(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static bool send_all(int fd, const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  void serve(int fd) {
    std::string buf;
    char chunk[8192];
    bool open = true;
    while (open) {
      std::size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      if (!open)
        break;
      request rq;
      std::istringstream head(buf.substr(0, head_end));
      std::string line, target, version;
      std::getline(head, line);
      std::istringstream(line) >> rq.method >> target >> version;
      auto q = target.find('?');
      rq.path = target.substr(0, q);
      rq.query = q == std::string::npos ? "" : target.substr(q + 1);
      while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r')
          line.pop_back();
        auto colon = line.find(':');
        if (colon == std::string::npos)
          continue;
        auto value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        rq.headers[lower(line.substr(0, colon))] = value;
      }
      buf.erase(0, head_end + 4);
      std::size_t length = 0;
      if (auto cl = rq.header("content-length"); !cl.empty())
        length = std::stoul(cl);
      while (buf.size() < length) {
        auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      if (!open)
        break;
      rq.body = buf.substr(0, length);
      buf.erase(0, length);

      response rs = handle(rq);
      std::string out = "HTTP/1.1 " + std::to_string(rs.status) + " X\r\n";
      for (auto& [k, v] : rs.headers)
        out += k + ": " + v + "\r\n";
      if (rs.close_delimited || lower(rq.header("connection")) == "close") {
        out += "Connection: close\r\n";
        open = false;
      }
      if (!rs.close_delimited)
        out += "Content-Length: " + std::to_string(rs.body.size()) + "\r\n";
      out += "\r\n";
      if (rq.method != "HEAD")
        out += rs.body;
      if (!send_all(fd, out))
        open = false;
    }
    std::lock_guard lock(mu_);
    clients_.erase(fd);
    ::close(fd);
  }

  /// Sleeps, but wakes when the server shuts down. False when shutting down.
  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  int count(const std::string& key) {
    std::lock_guard lock(mu_);
    return ++hits_[key];
  }

  response handle(const request& rq) {
    response rs;
    count(rq.path);
    auto text = [&](std::string body) {
      rs.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
      rs.body = std::move(body);
    };
    if (rq.path.rfind("/page/", 0) == 0) {
      text("page " + rq.path.substr(6));
    } else if (rq.path == "/echo") {
      rs.headers.emplace_back("X-Method", rq.method);
      rs.headers.emplace_back("X-Content-Type", rq.header("content-type"));
      rs.body = rq.body;
    } else if (rq.path == "/method") {
      text(rq.method);
    } else if (rq.path == "/headers") {
      text("ua=" + rq.header("user-agent") + "\naccept=" + rq.header("accept") +
           "\nreferer=" + rq.header("referer") + "\nx-test=" + rq.header("x-test") +
           "\naccept-encoding=" + rq.header("accept-encoding") + "\n");
    } else if (rq.path == "/redirect") {
      rs.status = 302;
      rs.headers.emplace_back("Location", "/page/redirected");
      rs.body = "moved";
    } else if (rq.path == "/redirect-loop") {
      rs.status = 302;
      rs.headers.emplace_back("Location", "/redirect-loop");
    } else if (rq.path == "/flaky") {
      // The first request of a key fails with `code` (503 by default) and Retry-After.
      auto key = "flaky:" + rq.param("key");
      if (count(key) == 1) {
        rs.status = rq.param("code").empty() ? 503 : std::stoi(rq.param("code"));
        if (auto ra = rq.param("ra"); !ra.empty()) {
          for (auto pos = ra.find("%20"); pos != std::string::npos; pos = ra.find("%20"))
            ra.replace(pos, 3, " ");  // HTTP dates travel with %20 for spaces
          rs.headers.emplace_back("Retry-After", ra);
        }
        text("busy");
      } else {
        text("ok after " + std::to_string(hits("flaky:" + rq.param("key"))));
      }
    } else if (rq.path == "/always503") {
      rs.status = 503;
      text("down");
    } else if (rq.path == "/always500") {
      rs.status = 500;
      text("broken");
    } else if (rq.path == "/setcookie") {
      rs.headers.emplace_back("Set-Cookie", "sid=" + rq.param("v") + "; Path=/");
      if (!rq.param("w").empty())
        rs.headers.emplace_back("Set-Cookie", "w=" + rq.param("w") +
                                                "; Expires=Wed, 21 Oct 2026 07:28:00 GMT");
      text("set");
    } else if (rq.path == "/cookie") {
      text(rq.header("cookie"));
    } else if (rq.path == "/gzip") {
      rs.headers.emplace_back("Content-Encoding", "gzip");
      rs.headers.emplace_back("Content-Type", "text/plain");
      rs.body.assign(reinterpret_cast<const char*>(gzip_body), sizeof gzip_body);
    } else if (rq.path == "/binary") {
      rs.headers.emplace_back("Content-Type", "application/octet-stream");
      rs.body = binary_body;
    } else if (rq.path == "/latin1-header") {
      rs.headers.emplace_back("Content-Disposition", "attachment; filename=\xe9t\xe9.txt");
      text("latin1");
    } else if (rq.path == "/gbk") {
      // "<title>中文首页</title>" in GBK, the charset in the header only.
      rs.headers.emplace_back("Content-Type", "text/html; charset=gbk");
      rs.body = "<title>\xd6\xd0\xce\xc4\xca\xd7\xd2\xb3</title>";
    } else if (rq.path == "/hop") {
      // /hop?n=2 -> 301 /hop?n=1 -> 302 /page/end (relative Locations).
      int n = std::stoi(rq.param("n"));
      rs.status = n == 2 ? 301 : 302;
      rs.headers.emplace_back("Location", n == 2 ? "hop?n=1" : "page/end");
      rs.body = "moved";
    } else if (rq.path == "/typed") {
      rs.headers.emplace_back("Content-Type", rq.param("type"));
      rs.body.assign(std::stoul(rq.param("n")), 'y');
    } else if (rq.path == "/big" || rq.path == "/big-nolen") {
      rs.body.assign(std::stoul(rq.param("n")), 'x');
      rs.close_delimited = rq.path == "/big-nolen";
    } else if (rq.path == "/slow") {
      int now = ++active_;
      int seen = max_active_.load();
      while (now > seen && !max_active_.compare_exchange_weak(seen, now)) {
      }
      sleep_for(std::chrono::milliseconds(std::stoi(rq.param("ms"))));
      --active_;
      text("slow");
    } else if (rq.path == "/captcha") {
      // First visit of a key shows a ban page; an IP change "fixes" it.
      bool first = count("captcha:" + rq.param("key")) == 1;
      text(first ? "please solve the CAPTCHA" : "welcome");
    } else if (rq.path == "/always-captcha") {
      text("please solve the CAPTCHA");
    } else {
      rs.status = 404;
      text("not found");
    }
    return rs;
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::set<int> clients_;
  std::vector<std::thread> threads_;
  std::map<std::string, int> hits_;
  std::atomic<int> active_{0}, max_active_{0}, connections_{0};
};

// ---------------------------------------------------------------------------------------

/// Records every callback of a downloader, in order.
struct collector {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<protocol::block_response> batches;
  std::vector<std::string> events; // "batch:<id>" and "done:<id>:<identity>"

  downloader::results_fn results_fn() {
    return [this](protocol::block_response r) {
      std::lock_guard lock(mu);
      events.push_back("batch:" + r.block_id);
      batches.push_back(std::move(r));
      cv.notify_all();
    };
  }
  downloader::block_done_fn done_fn() {
    return [this](const std::string& id, const std::string& identity) {
      std::lock_guard lock(mu);
      events.push_back("done:" + id + ":" + identity);
      cv.notify_all();
    };
  }
  int done_count(const std::string& id) {
    std::lock_guard lock(mu);
    return static_cast<int>(std::count_if(events.begin(), events.end(), [&](auto& e) {
      return e.rfind("done:" + id + ":", 0) == 0;
    }));
  }
  bool wait_done(const std::string& id, std::chrono::milliseconds limit = 15s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] {
      return std::any_of(events.begin(), events.end(),
                         [&](auto& e) { return e.rfind("done:" + id + ":", 0) == 0; });
    });
  }
  bool wait_batches(std::size_t n, std::chrono::milliseconds limit = 15s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return batches.size() >= n; });
  }
  std::vector<protocol::result> results(const std::string& id) {
    std::lock_guard lock(mu);
    std::vector<protocol::result> out;
    for (auto& b : batches)
      if (b.block_id == id)
        out.insert(out.end(), b.results.begin(), b.results.end());
    return out;
  }
  std::size_t batch_count() {
    std::lock_guard lock(mu);
    return batches.size();
  }
  /// The result for `url` in block `id` (fails the test when there is not exactly one).
  protocol::result result(const std::string& id, const std::string& url) {
    auto rs = results(id);
    std::vector<protocol::result> hits;
    for (auto& r : rs)
      if (r.url == url)
        hits.push_back(r);
    REQUIRE(hits.size() == 1);
    return hits.front();
  }
};

protocol::block make_block(const std::string& id, const std::string& identity,
                           const std::vector<std::string>& urls, int threads = 4) {
  protocol::block b;
  b.block_id = id;
  b.identity = identity;
  b.thread_num = threads;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    protocol::request rq;
    rq.url = urls[i];
    rq.depth = static_cast<std::int32_t>(i % 3);
    b.requests.push_back(rq);
  }
  return b;
}

downloader_options fast_options() {
  downloader_options o;
  o.allow_private_addresses = true;  // the test servers are on loopback
  o.timeout = 5000ms;
  o.connect_timeout = 2000ms;
  o.retry_backoff = 20ms;
  return o;
}

/// A loopback port nobody listens on (bound, then closed).
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

// ---------------------------------------------------------------------------------------

TEST_CASE("downloader: a block of N URLs gives N results with status, body and fields") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();

  std::vector<std::string> urls;
  for (int i = 0; i < 30; ++i)
    urls.push_back(server.url("/page/" + std::to_string(i)));
  urls.push_back(server.url("/missing"));
  auto b = make_block("b1", "run1", urls, 2);
  REQUIRE(dl.submit(b));
  REQUIRE(c.wait_done("b1"));

  auto rs = c.results("b1");
  REQUIRE(rs.size() == urls.size());
  for (std::size_t i = 0; i < 30; ++i) {
    auto r = c.result("b1", urls[i]);
    CHECK(r.status_code == 200);
    CHECK(r.content == "page " + std::to_string(i));
    CHECK(r.content_encoding.empty());
    CHECK(r.error.empty());
    CHECK(r.depth == b.requests[i].depth);
    CHECK(r.request_hash == protocol::request_hash(b.requests[i]));
    CHECK(r.headers.count("content-type") == 1);
    CHECK(r.headers["content-length"] == std::to_string(r.content.size()));
    CHECK(r.response_time >= 0);
  }
  auto missing = c.result("b1", urls.back());
  CHECK(missing.status_code == 404); // a page, not a download error
  CHECK(missing.error.empty());
  CHECK(missing.content == "not found");

  // Connections are reused: 31 requests over 2 slots need about 2 connections.
  CHECK(server.connections() <= 4);
  auto st = dl.get_stats();
  CHECK(st.pages == urls.size());
  CHECK(st.errors == 0);
  CHECK(st.active_blocks == 0);
  CHECK(st.in_flight == 0);
  CHECK(dl.free_slots() == 4);
}

TEST_CASE("downloader: thread_num bounds the concurrent requests of a block") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 12; ++i)
    urls.push_back(server.url("/slow?ms=150&i=" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("b", "run", urls, 3)));
  REQUIRE(c.wait_done("b"));
  CHECK(c.results("b").size() == 12);
  CHECK(server.max_concurrent() <= 3);
  CHECK(server.max_concurrent() >= 2);
}

TEST_CASE("downloader: site.sleep_time spaces the requests of a slot") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto b = make_block("b", "run",
                      {server.url("/page/1"), server.url("/page/2"), server.url("/page/3")}, 1);
  b.site_settings.sleep_time = 200; // ms
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dl.submit(b));
  REQUIRE(c.wait_done("b"));
  CHECK(seconds_since(t0) >= 0.39);
  CHECK(c.results("b").size() == 3);
}

TEST_CASE("downloader: 5xx is retried on the node; 429/503 go back to the broker at once") {
  test_server server;
  collector c;
  auto o = fast_options();
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();

  SUBCASE("500 is retried here") {
    auto url = server.url("/flaky?key=a&code=500");
    REQUIRE(dl.submit(make_block("b", "run", {url})));
    REQUIRE(c.wait_done("b"));
    auto r = c.result("b", url);
    CHECK(r.status_code == 200);
    CHECK(r.content == "ok after 2");
    CHECK_FALSE(r.deferred);
    CHECK(dl.get_stats().retries == 1);
  }
  SUBCASE("429 with Retry-After: deferred, the block starts nothing more") {
    // One slot: the 429 comes back before the other two requests start.
    auto busy = server.url("/flaky?key=b&ra=7&code=429");
    auto p1 = server.url("/page/1"), p2 = server.url("/page/2");
    REQUIRE(dl.submit(make_block("b", "run", {busy, p1, p2}, 1)));
    REQUIRE(c.wait_done("b"));
    auto r = c.result("b", busy);
    CHECK(r.deferred);
    CHECK(r.status_code == 429);
    CHECK(r.retry_after_ms == 7000);
    for (auto& u : {p1, p2}) {
      auto rest = c.result("b", u);
      CHECK(rest.deferred);
      CHECK(rest.status_code == 0);
      CHECK(rest.error.find("429") != std::string::npos);
    }
    CHECK(server.hits("flaky:b") == 1);  // never retried by the node
    CHECK(server.hits("/page/1") == 0);
    CHECK(dl.get_stats().retries == 0);
  }
  SUBCASE("503 with an HTTP-date Retry-After") {
    auto url = server.url("/flaky?key=c&code=503&ra=Wed,%2021%20Oct%202099%2007:28:00%20GMT");
    REQUIRE(dl.submit(make_block("b", "run", {url})));
    REQUIRE(c.wait_done("b"));
    auto r = c.result("b", url);
    CHECK(r.deferred);
    CHECK(r.status_code == 503);
    CHECK(r.retry_after_ms == 86400000);  // capped at a day
  }
}

TEST_CASE("downloader: a block's delay spaces its request starts over all its slots") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 4; ++i)
    urls.push_back(server.url("/page/d" + std::to_string(i)));
  auto b = make_block("b", "run", urls, 4);
  b.delay_ms = 150;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dl.submit(b));
  REQUIRE(c.wait_done("b"));
  CHECK(seconds_since(t0) >= 0.44);  // starts at 0, 150, 300, 450 ms
  CHECK(c.results("b").size() == 4);
}

TEST_CASE("downloader: a paused block hands back what it did not start") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 20; ++i)
    urls.push_back(server.url("/page/p" + std::to_string(i)));
  auto b = make_block("b", "run", urls, 1);
  b.delay_ms = 100;  // slow enough that most requests are still to start
  REQUIRE(dl.submit(b));
  std::this_thread::sleep_for(250ms);
  dl.pause_block("b");
  REQUIRE(c.wait_done("b", 5s));
  auto rs = c.results("b");
  CHECK(rs.size() == 20);
  auto deferred = std::count_if(rs.begin(), rs.end(), [](auto& r) { return r.deferred; });
  CHECK(deferred >= 10);
  CHECK(deferred < 20);
  for (auto& r : rs)
    if (r.deferred) {
      CHECK(r.status_code == 0);
      CHECK(r.error == "paused by the broker");
    } else {
      CHECK(r.status_code == 200);
    }
  dl.pause_block("no-such-block");  // ignored
}

TEST_CASE("downloader: final failures carry status and error text") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.retry_download = 2;
  o.retry_backoff = 10ms;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto down = server.url("/always500");
  auto refused = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x";
  REQUIRE(dl.submit(make_block("b", "run", {down, refused})));
  REQUIRE(c.wait_done("b"));

  auto r = c.result("b", down);
  CHECK(r.status_code == 500);
  CHECK(r.error == "HTTP 500 after 2 retries");
  CHECK(r.content == "broken");
  CHECK(server.hits("/always500") == 3);

  CHECK(r.error_kind == "http_5xx");
  auto n = c.result("b", refused);
  CHECK(n.status_code == 0);
  CHECK(n.error_kind == "connect");
  CHECK(n.error.find("connect") != std::string::npos);
  CHECK(n.content.empty());
  CHECK(n.headers.empty());

  auto st = dl.get_stats();
  CHECK(st.errors == 2);
  CHECK(st.retries == 4);
}

TEST_CASE("downloader: cookies persist within an identity, not across identities") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto set_a = server.url("/setcookie?v=alpha");
  auto show = server.url("/cookie");

  auto set_two = server.url("/setcookie?v=alpha&w=x");
  REQUIRE(dl.submit(make_block("a1", "A", {set_a, set_two}, 1)));
  REQUIRE(c.wait_done("a1"));
  CHECK(c.result("a1", set_a).headers["set-cookie"] == "sid=alpha; Path=/");
  // Two Set-Cookie headers: one per line (their Expires dates hold commas).
  CHECK(c.result("a1", set_two).headers["set-cookie"] ==
        "sid=alpha; Path=/\nw=x; Expires=Wed, 21 Oct 2026 07:28:00 GMT");

  // B alone first: it runs on the pooled handle A just used, and must not see A's cookie.
  REQUIRE(dl.submit(make_block("b1", "B", {show}, 1)));
  REQUIRE(c.wait_done("b1"));
  CHECK(c.result("b1", show).content.empty());
  // A later block of A on several handles at once: every one sends A's cookie.
  std::vector<std::string> shows;
  for (int i = 0; i < 4; ++i)
    shows.push_back(server.url("/cookie?" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("a2", "A", shows, 4)));
  REQUIRE(c.wait_done("a2"));
  for (auto& u : shows)
    CHECK(c.result("a2", u).content == "sid=alpha");

  SUBCASE("seeded from block and site cookies") {
    auto b = make_block("c1", "C", {show}, 1);
    b.site_settings.cookies = "x=1; y=site";
    b.cookies = "y=2; z=3";
    REQUIRE(dl.submit(b));
    REQUIRE(c.wait_done("c1"));
    auto got = c.result("c1", show).content;
    CHECK(got.find("x=1") != std::string::npos);
    CHECK(got.find("y=2") != std::string::npos); // the block's value wins
    CHECK(got.find("y=site") == std::string::npos);
    CHECK(got.find("z=3") != std::string::npos);
  }
  SUBCASE("cancel_identity forgets the jar") {
    dl.cancel_identity("A");
    REQUIRE(dl.submit(make_block("a3", "A", {show}, 1)));
    REQUIRE(c.wait_done("a3"));
    CHECK(c.result("a3", show).content.empty());
  }
}

TEST_CASE("downloader: redirects are followed and reported under the requested URL") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_redirects = 3;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto url = server.url("/redirect");
  auto loop = server.url("/redirect-loop");
  REQUIRE(dl.submit(make_block("b", "run", {url, loop})));
  REQUIRE(c.wait_done("b"));
  auto r = c.result("b", url);
  CHECK(r.status_code == 200);
  CHECK(r.content == "page redirected");
  CHECK(r.headers.count("location") == 0); // headers of the final response only
  // The redirect is reported as data: where the page ended and every hop.
  CHECK(r.final_url == server.url("/page/redirected"));
  REQUIRE(r.redirects.size() == 1);
  CHECK(r.redirects[0].status == 302);
  CHECK(r.redirects[0].url == server.url("/page/redirected"));
  auto l = c.result("b", loop);
  CHECK(!l.error.empty());
  CHECK(l.error_kind == "redirect_loop");
  CHECK(server.hits("/redirect-loop") == 4); // the first request plus 3 redirects
}

TEST_CASE("downloader: methods, request body and request headers") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto b = make_block("b", "run", {}, 2);
  b.site_settings.content_type = "application/x-www-form-urlencoded; charset=utf-8";
  b.site_settings.user_agent = "ua-test/1";
  b.site_settings.accept = "text/html";
  b.site_settings.headers["X-Test"] = "site";
  auto add = [&](std::string method, std::string path, std::string content = {}) {
    protocol::request rq;
    rq.method = std::move(method);
    rq.url = server.url(path);
    rq.content = std::move(content);
    b.requests.push_back(rq);
    return &b.requests.back();
  };
  add("POST", "/echo?1", "a=1&b=%20two");
  add("PUT", "/echo?2", "put body");
  add("DELETE", "/method?3");
  add("HEAD", "/page/head");
  add("GET", "/headers?plain");
  add("POST", "/echo?empty");
  auto* own = add("GET", "/headers?own");
  own->headers["x-test"] = "request";
  own->referer = "http://ref.example/page";
  REQUIRE(dl.submit(b));
  REQUIRE(c.wait_done("b"));
  REQUIRE(c.results("b").size() == b.requests.size());

  auto post = c.result("b", server.url("/echo?1"));
  CHECK(post.content == "a=1&b=%20two");
  CHECK(post.headers["x-method"] == "POST");
  CHECK(post.headers["x-content-type"] == "application/x-www-form-urlencoded; charset=utf-8");
  auto put = c.result("b", server.url("/echo?2"));
  CHECK(put.content == "put body");
  CHECK(put.headers["x-method"] == "PUT");
  CHECK(c.result("b", server.url("/method?3")).content == "DELETE");
  auto head = c.result("b", server.url("/page/head"));
  CHECK(head.status_code == 200);
  CHECK(head.content.empty());
  CHECK(head.error.empty());
  auto empty_post = c.result("b", server.url("/echo?empty"));
  CHECK(empty_post.headers["x-method"] == "POST");
  CHECK(empty_post.content.empty());

  auto plain = c.result("b", server.url("/headers?plain")).content;
  CHECK(plain.find("ua=ua-test/1\n") != std::string::npos);
  CHECK(plain.find("accept=text/html\n") != std::string::npos);
  CHECK(plain.find("x-test=site\n") != std::string::npos);
  CHECK(plain.find("referer=\n") != std::string::npos);
  CHECK(plain.find("gzip") != std::string::npos); // accept-encoding offered
  auto mine = c.result("b", server.url("/headers?own")).content;
  CHECK(mine.find("x-test=request\n") != std::string::npos);
  CHECK(mine.find("referer=http://ref.example/page\n") != std::string::npos);
}

TEST_CASE("downloader: default user agent") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto url = server.url("/headers");
  REQUIRE(dl.submit(make_block("b", "run", {url})));
  REQUIRE(c.wait_done("b"));
  CHECK(c.result("b", url).content.find("ua=spiderhub/0.1\n") != std::string::npos);
}

TEST_CASE("downloader: gzip is decoded, binary bodies round-trip exactly") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto gz = server.url("/gzip");
  auto bin = server.url("/binary");
  REQUIRE(dl.submit(make_block("b", "run", {gz, bin})));
  REQUIRE(c.wait_done("b"));
  auto g = c.result("b", gz);
  CHECK(g.content == gzip_plain());
  CHECK(g.headers["content-encoding"] == "gzip");
  auto r = c.result("b", bin);
  CHECK(r.content_encoding == "base64");
  CHECK(protocol::result_body(r) == binary_body);
  CHECK(dl.get_stats().bytes == gzip_plain().size() + binary_body.size());
}

TEST_CASE("downloader: header bytes that are not UTF-8 are replaced, results stay JSON") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto url = server.url("/latin1-header");
  REQUIRE(dl.submit(make_block("b", "run", {url})));
  REQUIRE(c.wait_done("b"));
  auto r = c.result("b", url);
  CHECK(r.headers["content-disposition"] == "attachment; filename=?t?.txt");
  CHECK_NOTHROW(protocol::to_json(r).dump());
}

TEST_CASE("downloader: oversized bodies are cut off with an error") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_body_bytes = 1000;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto exact = server.url("/big?n=1000");
  auto big = server.url("/big?n=5000");
  auto nolen = server.url("/big-nolen?n=200000");
  REQUIRE(dl.submit(make_block("b", "run", {exact, big, nolen})));
  REQUIRE(c.wait_done("b"));
  CHECK(c.result("b", exact).content.size() == 1000);
  CHECK(c.result("b", exact).error.empty());
  CHECK(c.result("b", exact).error_kind.empty());
  CHECK(c.result("b", exact).size == 1000);
  for (auto& u : {big, nolen}) {
    auto r = c.result("b", u);
    CHECK(r.error_kind == "too_large");
    CHECK(r.content.empty());
    CHECK(r.status_code == 200);
  }
  // Content-Length tells the size at once; without it, what arrived before the abort.
  CHECK(c.result("b", big).size == 5000);
  CHECK(c.result("b", big).error == "body of 5000 bytes is over the limit of 1000 bytes");
  CHECK(c.result("b", nolen).size > 1000);
  CHECK(c.result("b", nolen).size < 200000);
  CHECK(server.hits("/big") == 2); // not retried
}

TEST_CASE("downloader: the run's maxBodyBytes lowers the node's limit, never raises it") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_body_bytes = 4000;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto mid = server.url("/big?n=3000");
  auto big = server.url("/big?n=5000");
  auto lowered = make_block("low", "run", {mid, big});
  lowered.site_settings.max_body_bytes = 2000;
  auto raised = make_block("high", "run2", {mid, big});
  raised.site_settings.max_body_bytes = 1 << 20;
  REQUIRE(dl.submit(lowered));
  REQUIRE(dl.submit(raised));
  REQUIRE(c.wait_done("low"));
  REQUIRE(c.wait_done("high"));
  CHECK(c.result("low", mid).error_kind == "too_large");
  CHECK(c.result("low", mid).error == "body of 3000 bytes is over the limit of 2000 bytes");
  CHECK(c.result("low", big).error_kind == "too_large");
  CHECK(c.result("high", mid).error.empty());
  CHECK(c.result("high", mid).content.size() == 3000);
  CHECK(c.result("high", big).error_kind == "too_large");  // the node's 4000 still holds
  CHECK(c.result("high", big).error == "body of 5000 bytes is over the limit of 4000 bytes");
}

TEST_CASE("downloader: allowed content types stop other responses after their headers") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto html = server.url("/typed?type=text/html;%20charset=gbk&n=100");
  auto upper = server.url("/typed?type=TEXT/HTML&n=100");
  auto image = server.url("/typed?type=image/PNG&n=100");
  auto pdf = server.url("/typed?type=application/pdf&n=3000000");
  auto moved = server.url("/redirect");  // 302 to a text/plain page
  auto none = server.url("/typed?type=&n=10");
  auto b = make_block("b", "run", {html, upper, image, pdf, moved, none});
  b.site_settings.allowed_content_types = {"text/html", "image/*"};
  auto all = make_block("all", "run2", {pdf});
  REQUIRE(dl.submit(b));
  REQUIRE(dl.submit(all));
  REQUIRE(c.wait_done("b"));
  REQUIRE(c.wait_done("all"));
  CHECK(c.result("b", html).error.empty());
  CHECK(c.result("b", html).content.size() == 100);
  CHECK(c.result("b", upper).error.empty());
  CHECK(c.result("b", image).error.empty());
  CHECK(c.result("b", none).error.empty());  // no type: given the benefit of the doubt
  auto r = c.result("b", pdf);
  CHECK(r.error_kind == "skipped_type");
  CHECK(r.error == "content type 'application/pdf' is not allowed for this run "
                   "(AllowedContentTypes)");
  CHECK(r.status_code == 200);
  CHECK(r.content.empty());
  CHECK(r.size == 3000000);  // as announced; not downloaded
  CHECK(r.headers.count("Content-Type") + r.headers.count("content-type") == 1);
  // The redirect hop is not judged, the page it leads to is.
  CHECK(c.result("b", moved).error_kind == "skipped_type");
  CHECK(server.hits("/page/redirected") == 1);
  CHECK(server.hits("/typed") == 6);  // none retried
  // A run without the policy downloads the same body whole.
  CHECK(c.result("all", pdf).error.empty());
  CHECK(c.result("all", pdf).size == 3000000);
  // The node counted only the bodies it kept.
  CHECK(dl.get_stats().bytes == 100 + 100 + 100 + 10 + 3000000);
}

TEST_CASE("downloader: a slow server gives a timeout error") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.timeout = 300ms;
  o.retry_download = 0;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto url = server.url("/slow?ms=3000");
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dl.submit(make_block("b", "run", {url})));
  REQUIRE(c.wait_done("b"));
  CHECK(seconds_since(t0) < 2.0);
  auto r = c.result("b", url);
  CHECK(r.status_code == 0);
  CHECK(r.error_kind == "timeout");
  CHECK(r.error.find("Timeout") != std::string::npos);
  CHECK(r.content.empty());
}

TEST_CASE("downloader: cancel_identity stops delivery and drops queued blocks") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_blocks = 1;
  o.results_batch = 1;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 30; ++i)
    urls.push_back(server.url("/slow?ms=40&i=" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("x1", "X", urls, 1)));
  REQUIRE(dl.submit(make_block("x2", "X", urls, 1)));       // queued behind x1
  REQUIRE(dl.submit(make_block("y1", "Y", {server.url("/page/y")}, 1)));
  CHECK(dl.free_slots() == 0);
  REQUIRE(c.wait_batches(2));

  dl.cancel_identity("X");
  auto at_cancel = c.batch_count();
  REQUIRE(c.wait_done("y1")); // the slot went to Y
  std::this_thread::sleep_for(300ms);
  CHECK(c.batch_count() <= at_cancel + 1); // one callback may have been under way
  CHECK(c.results("x1").size() < urls.size());
  CHECK(c.results("x2").empty());
  CHECK(c.done_count("x1") == 0);
  CHECK(c.done_count("x2") == 0);
  CHECK(c.result("y1", server.url("/page/y")).content == "page y");
  auto st = dl.get_stats();
  CHECK(st.active_blocks == 0);
  CHECK(st.queued_blocks == 0);
  CHECK(st.in_flight == 0);
  CHECK(dl.free_slots() == 1);
}

TEST_CASE("downloader: a duplicate submit is ignored") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_blocks = 1;
  downloader dl(o, c.results_fn(), c.done_fn());
  auto b = make_block("dup", "run", {server.url("/page/1"), server.url("/page/2")});
  auto other = make_block("other", "run", {server.url("/page/3")});
  REQUIRE(dl.submit(b));
  CHECK_FALSE(dl.submit(b)); // queued (not started yet)
  REQUIRE(dl.submit(other));
  CHECK(dl.get_stats().queued_blocks == 2);
  dl.start();
  CHECK_FALSE(dl.submit(b)); // active or queued
  REQUIRE(c.wait_done("dup"));
  REQUIRE(c.wait_done("other"));
  CHECK(c.results("dup").size() == 2);
  CHECK(c.done_count("dup") == 1);
  CHECK(server.hits("/page/1") == 1);
  CHECK(dl.submit(b)); // finished blocks may come again (a new lease)
  REQUIRE(c.wait_batches(3));
}

TEST_CASE("downloader: results come in batches, on_block_done once after the last") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.results_batch = 3;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 10; ++i)
    urls.push_back(server.url("/page/" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("b", "run", urls, 2)));
  REQUIRE(c.wait_done("b"));
  std::this_thread::sleep_for(100ms); // a stray late callback would show up here

  std::lock_guard lock(c.mu);
  CHECK(c.batches.size() >= 4);
  std::size_t total = 0;
  for (auto& batch : c.batches) {
    CHECK(batch.block_id == "b");
    CHECK(batch.identity == "run");
    CHECK(batch.results.size() <= 3);
    CHECK(!batch.results.empty());
    total += batch.results.size();
  }
  CHECK(total == 10);
  REQUIRE(!c.events.empty());
  CHECK(c.events.back() == "done:b:run");
  CHECK(std::count(c.events.begin(), c.events.end(), "done:b:run") == 1);
}

TEST_CASE("downloader: a partial batch is flushed after results_flush") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.results_batch = 100;
  o.results_flush = 100ms;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 3; ++i)
    urls.push_back(server.url("/slow?ms=300&i=" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("b", "run", urls, 1)));
  REQUIRE(c.wait_done("b"));
  CHECK(c.batch_count() >= 2);
  CHECK(c.results("b").size() == 3);
}

TEST_CASE("downloader: a block without requests is done at once") {
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  REQUIRE(dl.submit(make_block("empty", "run", {})));
  REQUIRE(c.wait_done("empty"));
  CHECK(c.batch_count() == 0);
}

TEST_CASE("downloader: changeIpPattern runs the command and retries once") {
  test_server server;
  collector c;
  char path_template[] = "/tmp/spiderhub_changeip_XXXXXX";
  int fd = ::mkstemp(path_template);
  REQUIRE(fd >= 0);
  ::close(fd);
  const std::string marker = path_template;
  auto o = fast_options();
  o.change_ip_command = "echo changed >> '" + marker + "'";
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto lines = [&] {
    std::ifstream in(marker);
    int n = 0;
    for (std::string l; std::getline(in, l);)
      ++n;
    return n;
  };

  SUBCASE("plain text pattern") {
    auto url = server.url("/captcha?key=1");
    auto b = make_block("b", "run", {url, server.url("/page/ok")});
    b.change_ip_pattern = "CAPTCHA|verify you are human";
    REQUIRE(dl.submit(b));
    REQUIRE(c.wait_done("b"));
    auto r = c.result("b", url);
    CHECK(r.content == "welcome");
    CHECK(r.error.empty());
    CHECK(lines() == 1);
  }
  SUBCASE("regex pattern, still matching after the change") {
    auto url = server.url("/always-captcha");
    auto b = make_block("b", "run", {url});
    b.change_ip_pattern = "solve\\s+the\\s+[A-Z]+";
    REQUIRE(dl.submit(b));
    REQUIRE(c.wait_done("b"));
    auto r = c.result("b", url);
    CHECK(r.content == "please solve the CAPTCHA");
    CHECK(r.error.find("change-IP pattern") != std::string::npos);
    CHECK(server.hits("/always-captcha") == 2);
    CHECK(lines() == 1);
  }
  SUBCASE("invalid pattern is ignored") {
    auto url = server.url("/captcha?key=2");
    auto b = make_block("b", "run", {url});
    b.change_ip_pattern = "CAPTCHA(";
    REQUIRE(dl.submit(b));
    REQUIRE(c.wait_done("b"));
    CHECK(c.result("b", url).content == "please solve the CAPTCHA");
    CHECK(c.result("b", url).error.empty());
    CHECK(lines() == 0);
  }
  dl.stop();
  std::remove(marker.c_str());
}

TEST_CASE("downloader: changeIpPattern without a command still retries once") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto url = server.url("/captcha?key=3");
  auto b = make_block("b", "run", {url});
  b.change_ip_pattern = "CAPTCHA";
  REQUIRE(dl.submit(b));
  REQUIRE(c.wait_done("b"));
  CHECK(c.result("b", url).content == "welcome");
  CHECK(server.hits("/captcha") == 2);
}

TEST_CASE("downloader: stop() drops active blocks promptly, without callbacks") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  REQUIRE(dl.submit(make_block("b", "run", {server.url("/slow?ms=3000")})));
  std::this_thread::sleep_for(200ms);
  CHECK(dl.get_stats().in_flight == 1);
  auto t0 = std::chrono::steady_clock::now();
  dl.stop();
  CHECK(seconds_since(t0) < 1.0);
  CHECK(c.batch_count() == 0);
  CHECK(c.done_count("b") == 0);
  CHECK_FALSE(dl.submit(make_block("late", "run", {})));
}

TEST_CASE("downloader: stop() ends a running change-IP command") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.change_ip_command = "sleep 30";
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto b = make_block("b", "run", {server.url("/always-captcha")});
  b.change_ip_pattern = "CAPTCHA";
  REQUIRE(dl.submit(b));
  auto t0 = std::chrono::steady_clock::now();
  while (server.hits("/always-captcha") == 0 && seconds_since(t0) < 5)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms); // the command is running now
  t0 = std::chrono::steady_clock::now();
  dl.stop();
  CHECK(seconds_since(t0) < 2.0);
  CHECK(c.done_count("b") == 0);
}

TEST_CASE("downloader: bodies the broker has not confirmed hold back new transfers") {
  test_server server;
  collector c;
  auto o = fast_options();
  o.max_buffered_bytes = 15000;  // one 20,000-byte body is over it
  o.results_batch = 1;           // every result goes out on its own
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  std::vector<std::string> urls;
  for (int i = 0; i < 6; ++i)
    urls.push_back(server.url("/big?n=20000&i=" + std::to_string(i)));
  REQUIRE(dl.submit(make_block("b", "run", urls, 1)));
  // One slot: the first body alone passes the budget, so nothing more starts.
  REQUIRE(c.wait_batches(1));
  std::this_thread::sleep_for(300ms);
  CHECK(c.batch_count() == 1);
  CHECK(dl.get_stats().buffered_bytes == 20000);
  CHECK(server.hits("/big") == 1);
  // Each confirmation lets the next transfer start.
  for (std::size_t n = 2; n <= 6; ++n) {
    dl.results_confirmed(20000);
    REQUIRE(c.wait_batches(n));
  }
  REQUIRE(c.wait_done("b"));
  CHECK(server.hits("/big") == 6);
  dl.results_confirmed(20000);
  CHECK(dl.get_stats().buffered_bytes == 0);
}

TEST_CASE("downloader: a redirect chain is reported hop by hop, relative Locations resolved") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto start = server.url("/hop?n=2");
  auto plain = server.url("/page/x");
  REQUIRE(dl.submit(make_block("b", "run", {start, plain})));
  REQUIRE(c.wait_done("b"));
  auto r = c.result("b", start);
  CHECK(r.status_code == 200);
  CHECK(r.content == "page end");
  CHECK(r.final_url == server.url("/page/end"));
  REQUIRE(r.redirects.size() == 2);
  CHECK(r.redirects[0].status == 301);
  CHECK(r.redirects[0].url == server.url("/hop?n=1"));
  CHECK(r.redirects[1].status == 302);
  CHECK(r.redirects[1].url == server.url("/page/end"));
  // Not redirected: no final URL, no hops.
  CHECK(c.result("b", plain).final_url.empty());
  CHECK(c.result("b", plain).redirects.empty());
}

TEST_CASE("downloader: text bodies carry the encoding sniffing decided, and from where") {
  test_server server;
  collector c;
  downloader dl(fast_options(), c.results_fn(), c.done_fn());
  dl.start();
  auto gbk = server.url("/gbk");
  auto text = server.url("/page/x");     // text/plain; charset=utf-8
  auto binary = server.url("/binary");   // application/octet-stream: not sniffed
  auto b = make_block("b", "run", {gbk, text, binary});
  auto overridden = make_block("o", "run2", {gbk});
  overridden.site_settings.encoding_name = "big5";  // the Site's encodingName wins
  REQUIRE(dl.submit(b));
  REQUIRE(dl.submit(overridden));
  REQUIRE(c.wait_done("b"));
  REQUIRE(c.wait_done("o"));
  auto g = c.result("b", gbk);
  CHECK(g.encoding == "GBK");
  CHECK(g.encoding_source == "http");
  CHECK(g.content_encoding == "base64");  // the bytes travel as they came
  CHECK(protocol::result_body(g) == "<title>\xd6\xd0\xce\xc4\xca\xd7\xd2\xb3</title>");
  CHECK(c.result("b", text).encoding == "UTF-8");
  CHECK(c.result("b", text).encoding_source == "http");
  CHECK(c.result("b", binary).encoding.empty());
  CHECK(c.result("o", gbk).encoding == "Big5");
  CHECK(c.result("o", gbk).encoding_source == "override");
}

TEST_CASE("downloader: link-local and metadata addresses are refused before connecting") {
  collector c;
  auto o = fast_options();
  o.retry_download = 2;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto metadata = std::string("http://169.254.169.254/latest/meta-data/");
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dl.submit(make_block("b", "run", {metadata})));
  REQUIRE(c.wait_done("b"));
  CHECK(seconds_since(t0) < 1.0);  // not retried, no connect timeout waited out
  auto r = c.result("b", metadata);
  CHECK(r.error_kind == "blocked_address");
  CHECK(r.status_code == 0);
  CHECK(dl.get_stats().retries == 0);
}

TEST_CASE("downloader: loopback is refused unless the node or the run allows it") {
  test_server srv;
  collector c;
  auto o = fast_options();
  o.allow_private_addresses = false;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  auto url = srv.url("/page/7");
  REQUIRE(dl.submit(make_block("plain", "run", {url})));
  auto allowed = make_block("allowed", "run", {url});
  allowed.site_settings.allow_private_addresses = true;  // job property AllowPrivateAddresses
  REQUIRE(dl.submit(allowed));
  REQUIRE(c.wait_done("plain"));
  REQUIRE(c.wait_done("allowed"));
  auto refused = c.result("plain", url);
  CHECK(refused.error_kind == "blocked_address");
  CHECK(refused.error.find("loopback or private") != std::string::npos);
  CHECK(refused.status_code == 0);
  CHECK(c.result("allowed", url).status_code == 200);
  CHECK(srv.hits("/page/7") == 1);  // the refused one never connected
}

TEST_CASE("downloader: TLS certificates are verified unless the run says VerifyTls false") {
  if (std::system("openssl version >/dev/null 2>&1") != 0) {
    MESSAGE("openssl CLI not found: TLS test skipped");
    return;
  }
  char dir_tmpl[] = "/tmp/spiderhub_dl_tls_XXXXXX";
  const char* dir = ::mkdtemp(dir_tmpl);
  REQUIRE(dir);
  const std::string d = dir, cert = d + "/cert.pem", key = d + "/key.pem";
  REQUIRE(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                       "-nodes -days 1 -subj /CN=localhost -keyout " + key + " -out " + cert +
                       " >/dev/null 2>&1").c_str()) == 0);
  // A self-signed HTTPS server (openssl s_server -www answers every GET with a status page).
  const int port = closed_port();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execlp("openssl", "openssl", "s_server", "-quiet", "-www", "-accept",
             std::to_string(port).c_str(), "-cert", cert.c_str(), "-key", key.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct reap {
    pid_t pid;
    std::string dir;
    ~reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      std::system(("rm -rf " + dir).c_str());
    }
  } cleanup{pid, d};
  // Wait for it to listen.
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (!up)
      std::this_thread::sleep_for(50ms);
  }
  REQUIRE(up);
  collector c;
  auto o = fast_options();
  o.retry_download = 0;
  downloader dl(o, c.results_fn(), c.done_fn());
  dl.start();
  const auto url = "https://127.0.0.1:" + std::to_string(port) + "/";
  REQUIRE(dl.submit(make_block("strict", "run1", {url}, 1)));
  REQUIRE(c.wait_done("strict"));
  auto refused = c.result("strict", url);
  CHECK(refused.error_kind == "tls");
  CHECK(refused.status_code == 0);
  auto lax = make_block("lax", "run2", {url}, 1);
  lax.site_settings.verify_tls = false;
  REQUIRE(dl.submit(lax));
  REQUIRE(c.wait_done("lax"));
  auto taken = c.result("lax", url);
  CHECK(taken.error.empty());
  CHECK(taken.status_code == 200);
}
