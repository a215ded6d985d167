// Transport tests: real sockets on 127.0.0.1, port 0, every wait bounded.
#include <doctest/doctest.h>

#include "net/http_server.hpp"
#include "net/ws_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace spiderhub::net;
using namespace std::chrono_literals;

namespace {

// ─────────────── small sync helpers ───────────────

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class events {
 public:
  void push(std::string s) {
    std::lock_guard<std::mutex> lk(mu_);
    items_.push_back(std::move(s));
    cv_.notify_all();
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lk(mu_);
    return items_.size();
  }
  bool wait_size(std::size_t n, std::chrono::milliseconds timeout = 5000ms) const {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return items_.size() >= n; });
  }
  std::vector<std::string> all() const {
    std::lock_guard<std::mutex> lk(mu_);
    return items_;
  }
  std::string at(std::size_t i) const {
    std::lock_guard<std::mutex> lk(mu_);
    return i < items_.size() ? items_[i] : std::string("<none>");
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> items_;
};

// Replies to responders from a separate thread (like an actor would).
class reply_worker {
 public:
  reply_worker() : t_([this] { run(); }) {}
  ~reply_worker() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    t_.join();
  }
  void post(std::function<void()> f) {
    std::lock_guard<std::mutex> lk(mu_);
    q_.push_back(std::move(f));
    cv_.notify_all();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread t_;
};

// ─────────────── raw socket client ───────────────

class raw_conn {
 public:
  explicit raw_conn(std::uint16_t port, int rcv_timeout_ms = 5000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{rcv_timeout_ms / 1000, (rcv_timeout_ms % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    timeval stv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof stv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~raw_conn() { close(); }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send_all(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads more bytes into the buffer; false on EOF/error/timeout.
  bool fill() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  // Returns true if the peer closed (EOF or reset) within the receive timeout.
  bool wait_eof() {
    for (;;) {
      char tmp[16384];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }
  bool read_until(const std::string& marker) {
    while (buf_.find(marker) == std::string::npos)
      if (!fill()) return false;
    return true;
  }

  struct response {
    int status = 0;
    std::map<std::string, std::string> headers;
    std::string body;
  };
  // Reads one HTTP response (Content-Length framed, or until EOF).
  std::optional<response> read_response(bool head = false) {
    if (!read_until("\r\n\r\n")) return std::nullopt;
    const std::size_t end = buf_.find("\r\n\r\n");
    const std::string head_block = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    response r;
    std::size_t pos = head_block.find("\r\n");
    const std::string status_line = head_block.substr(0, pos);
    if (status_line.size() < 12) return std::nullopt;
    r.status = std::atoi(status_line.c_str() + 9);
    while (pos != std::string::npos) {
      const std::size_t next = head_block.find("\r\n", pos + 2);
      const std::string line = head_block.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string k = line.substr(0, colon);
        for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string v = line.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.erase(0, 1);
        r.headers[k] = v;
      }
      pos = next;
    }
    if (head || r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200)) return r;
    if (r.headers.count("content-length")) {
      const std::size_t len = std::stoul(r.headers["content-length"]);
      while (buf_.size() < len)
        if (!fill()) return std::nullopt;
      r.body = buf_.substr(0, len);
      buf_.erase(0, len);
    } else {
      while (fill()) {
      }
      r.body = buf_;
      buf_.clear();
    }
    return r;
  }

  // Minimal client-side WebSocket handshake; returns true on 101.
  bool ws_handshake(const std::string& path = "/ws") {
    if (!send_all("GET " + path +
                  " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
      return false;
    auto r = read_response(true);
    return r && r->status == 101;
  }

  std::string& buffer() { return buf_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

// A masked client frame header (payload follows, masked with key 0).
std::string ws_frame_header(unsigned char opcode, std::uint64_t len) {
  std::string h;
  h.push_back(static_cast<char>(0x80 | opcode));
  if (len < 126) {
    h.push_back(static_cast<char>(0x80 | len));
  } else if (len < 65536) {
    h.push_back(static_cast<char>(0x80 | 126));
    h.push_back(static_cast<char>((len >> 8) & 0xff));
    h.push_back(static_cast<char>(len & 0xff));
  } else {
    h.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) h.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  }
  h.append(4, '\0');  // mask key 0 -> payload is sent as is
  return h;
}

std::string get_request(const std::string& target, const std::string& extra = {}) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
}

// ─────────────── server fixture ───────────────

server_options test_options() {
  server_options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.io_threads = 2;
  o.handshake_timeout = 5000ms;
  o.idle_timeout = 10000ms;
  o.stop_grace = 1000ms;
  return o;
}

// Echo server: HTTP echoes method/path/body via a worker thread; WS echoes messages.
struct echo_server {
  reply_worker worker;
  events server_closed;  // on_closed reasons
  events server_opened;
  std::mutex mu;
  std::vector<ws_ptr> conns;
  std::unique_ptr<http_server> srv;
  std::uint16_t port = 0;

  explicit echo_server(server_options o = test_options(), bool echo_ws = true) {
    server_callbacks cbs;
    cbs.on_http = [this](http_request req, std::shared_ptr<http_responder> resp) {
      if (req.path == "/missing") return resp->reply(make_json_error(404, "not_found", "nope"));
      worker.post([req = std::move(req), resp = std::move(resp)] {
        http_response r;
        r.content_type = "text/plain";
        r.body = req.method + " " + req.path + " " + req.body;
        r.headers.push_back({"X-Test", "yes"});
        resp->reply(std::move(r));
        resp->reply(make_json_error(500, "twice", "must be ignored"));
      });
    };
    cbs.on_upgrade = [](const http_request& req) -> std::optional<http_response> {
      if (req.path != "/ws") return make_json_error(404, "not_found", "no ws here");
      if (req.param("token") == "bad") return make_json_error(401, "unauthorized", "bad token");
      return std::nullopt;
    };
    cbs.on_ws_open = [this, echo_ws](ws_ptr c) {
      {
        std::lock_guard<std::mutex> lk(mu);
        conns.push_back(c);
      }
      server_opened.push(std::to_string(c->id()));
      ws_handlers h;
      std::weak_ptr<ws_connection> weak = c;
      h.on_message = [weak, echo_ws](std::string m) {
        if (!echo_ws) return;
        if (auto c = weak.lock()) c->send_text(std::move(m));
      };
      h.on_closed = [this](std::string reason) { server_closed.push(std::move(reason)); };
      return h;
    };
    srv = std::make_unique<http_server>(std::move(o), std::move(cbs));
    port = srv->start();
  }
  std::string url(const std::string& path = "/ws") const {
    return "ws://127.0.0.1:" + std::to_string(port) + path;
  }
  ws_ptr conn(std::size_t i) {
    std::lock_guard<std::mutex> lk(mu);
    return i < conns.size() ? conns[i] : nullptr;
  }
};

struct client_probe {
  events msgs;
  events closed;
  std::atomic<int> opens{0};
  std::unique_ptr<ws_client> c;

  explicit client_probe(std::string url, std::function<void(ws_client_options&)> tweak = {}) {
    ws_client_options o;
    o.url = std::move(url);
    o.connect_timeout = 5000ms;
    if (tweak) tweak(o);
    ws_client_handlers h;
    h.on_open = [this] { ++opens; };
    h.on_message = [this](std::string m) { msgs.push(std::move(m)); };
    h.on_closed = [this](std::string r) { closed.push(std::move(r)); };
    c = std::make_unique<ws_client>(std::move(o), std::move(h));
    c->connect();
  }
  bool wait_open() {
    return wait_until([&] { return c->is_open() || closed.size() > 0; }) && c->is_open();
  }
};

bool have_tool(const char* cmd) { return std::system((std::string(cmd) + " >/dev/null 2>&1").c_str()) == 0; }

}  // namespace

// ═══════════════════════════════ HTTP ═══════════════════════════════

TEST_CASE("net: percent decoding and query parsing") {
  CHECK(percent_decode("/a%20b%2Fc", false) == "/a b/c");
  CHECK(percent_decode("a+b", false) == "a+b");
  CHECK(percent_decode("a+b", true) == "a b");
  CHECK(percent_decode("%", false) == "%");
  CHECK(percent_decode("%4", false) == "%4");
  CHECK(percent_decode("%zz%4g%%41", false) == "%zz%4g%A");
  CHECK(percent_decode("end%", true) == "end%");
  auto q = parse_query("x=1+2&y=%41%42&bad=%zz%4&empty&x=dup&&=v&k=a=b");
  CHECK(q["x"] == "1 2");
  CHECK(q["y"] == "AB");
  CHECK(q["bad"] == "%zz%4");
  CHECK(q.count("empty") == 1);
  CHECK(q["empty"].empty());
  CHECK(q[""] == "v");
  CHECK(q["k"] == "a=b");
  CHECK(json_escape("a\"b\\c\n\x01") == "a\\\"b\\\\c\\n\\u0001");
  // Well-formed UTF-8 passes; stray bytes become U+FFFD so the JSON stays valid.
  CHECK(json_escape("caf\xC3\xA9 \xE2\x82\xAC") == "caf\xC3\xA9 \xE2\x82\xAC");
  CHECK(json_escape("GM\x91T \xC3") == "GM\\ufffdT \\ufffd");
  CHECK(json_escape("\xED\xA0\x80") == "\\ufffd\\ufffd\\ufffd");  // a surrogate
  auto e = make_json_error(413, "body_too_large", "too \"big\"");
  CHECK(e.status == 413);
  CHECK(e.body == R"({"error":{"code":"body_too_large","message":"too \"big\""}})");
}

TEST_CASE("net: HTTP GET/POST/HEAD round trip, replied from another thread, keep-alive") {
  echo_server s;
  raw_conn c(s.port);
  REQUIRE(c.connected());

  REQUIRE(c.send_all(get_request("/hello?x=1")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "GET /hello ");
  CHECK(r->headers["x-test"] == "yes");
  CHECK(r->headers["content-type"] == "text/plain");
  CHECK(r->headers["server"] == "spiderhub");

  const std::string body = "{\"k\":\"v\"}";
  REQUIRE(c.send_all("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "POST /submit " + body);

  for (const char* m : {"PUT", "DELETE"}) {
    REQUIRE(c.send_all(std::string(m) + " /r HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nZ"));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->body == std::string(m) + " /r Z");
  }

  REQUIRE(c.send_all("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response(true);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->headers["content-length"] == "8");  // "HEAD /h "

  // Expect: 100-continue gets an interim response before the body is sent.
  REQUIRE(c.send_all("POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 100);
  REQUIRE(c.send_all("abc"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "POST /c abc");

  // HTTP/1.0 without keep-alive: response then close.
  REQUIRE(c.send_all("GET /old HTTP/1.0\r\n\r\n"));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->body == "GET /old ");
  CHECK(c.wait_eof());
  c.close();  // ends the server's lingering close early
  CHECK(wait_until([&] { return s.srv->connection_count() == 0; }));
}

TEST_CASE("net: HTTP 404 from callback, unanswered responder gives 500") {
  server_callbacks cbs;
  cbs.on_http = [](http_request req, std::shared_ptr<http_responder> resp) {
    if (req.path == "/drop") return;  // responder dropped without reply
    if (req.path == "/throw") throw std::runtime_error("boom");
    resp->reply(make_json_error(404, "not_found", "no route " + req.path));
  };
  http_server srv(test_options(), cbs);
  const auto port = srv.start();
  raw_conn c(port);
  REQUIRE(c.send_all(get_request("/nothing")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->headers["content-type"] == "application/json");
  CHECK(r->body.find("\"not_found\"") != std::string::npos);

  REQUIRE(c.send_all(get_request("/drop")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(r->body.find("no_response") != std::string::npos);

  REQUIRE(c.send_all(get_request("/throw")));
  r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 500);
}

TEST_CASE("net: HTTP body over the limit gives 413, malformed request gives 400 then close") {
  auto o = test_options();
  o.max_body_bytes = 1024;
  echo_server s(o);

  {
    raw_conn c(s.port);
    const std::string body(4096, 'x');
    REQUIRE(c.send_all("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + body));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->body.find("\"code\":\"body_too_large\"") != std::string::npos);
    CHECK(c.wait_eof());
  }
  {  // chunked body exceeding the limit mid-stream
    raw_conn c(s.port);
    std::string req = "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 4; ++i) req += "200\r\n" + std::string(512, 'y') + "\r\n";
    req += "0\r\n\r\n";
    REQUIRE(c.send_all(req));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  {  // a larger body still being sent when the 413 goes out must not lose the response
    raw_conn c(s.port);
    std::string req = "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + std::string(2000000, 'z');
    std::thread sender([&] { c.send_all(req); });
    auto r = c.read_response();
    sender.join();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  {
    raw_conn c(s.port);
    REQUIRE(c.send_all("this is not http\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find("bad_request") != std::string::npos);
    CHECK(c.wait_eof());
  }
  {
    raw_conn c(s.port);
    REQUIRE(c.send_all(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
  }
  {  // oversized header -> 431
    raw_conn c(s.port);
    REQUIRE(c.send_all("GET / HTTP/1.1\r\nX-Big: " + std::string(70000, 'h') + "\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 431);
  }
  // the server still serves normal requests
  raw_conn c(s.port);
  REQUIRE(c.send_all(get_request("/ok")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("net: HTTP path and query are percent-decoded; headers lower-cased") {
  std::mutex mu;
  std::optional<http_request> seen;
  server_callbacks cbs;
  cbs.on_http = [&](http_request req, std::shared_ptr<http_responder> resp) {
    {
      std::lock_guard<std::mutex> lk(mu);
      seen = req;
    }
    resp->reply(http_response{});
  };
  http_server srv(test_options(), cbs);
  const auto port = srv.start();
  raw_conn c(port);
  REQUIRE(c.send_all(get_request("/a%20b/c%2x?x=1+2&y=%41%42&bad=%zz%4&empty&x=dup&name=J%C3%BCrgen",
                                 "X-Custom-Header: one\r\nx-custom-header: two\r\n")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  std::lock_guard<std::mutex> lk(mu);
  REQUIRE(seen);
  CHECK(seen->method == "GET");
  CHECK(seen->target == "/a%20b/c%2x?x=1+2&y=%41%42&bad=%zz%4&empty&x=dup&name=J%C3%BCrgen");
  CHECK(seen->path == "/a b/c%2x");
  CHECK(seen->query["x"] == "1 2");
  CHECK(seen->query["y"] == "AB");
  CHECK(seen->query["bad"] == "%zz%4");
  CHECK(seen->query["empty"].empty());
  CHECK(seen->query["name"] == "J\xC3\xBCrgen");
  CHECK(seen->headers["x-custom-header"] == "one, two");
  CHECK(seen->headers["host"] == "127.0.0.1");
  CHECK(seen->remote_ip == "127.0.0.1");
}

TEST_CASE("net: bind failure throws a clear runtime_error") {
  http_server a(test_options(), {});
  const auto port = a.start();
  auto o = test_options();
  o.port = port;
  http_server b(o, {});
  std::string msg;
  try {
    b.start();
  } catch (const std::runtime_error& e) {
    msg = e.what();
  }
  CHECK(msg.find("cannot bind") != std::string::npos);
  CHECK(msg.find(std::to_string(port)) != std::string::npos);

  auto bad = test_options();
  bad.address = "not-an-address";
  http_server c(bad, {});
  CHECK_THROWS_AS(c.start(), std::runtime_error);

  auto tls = test_options();
  tls.tls_cert_file = "/nonexistent/cert.pem";
  tls.tls_key_file = "/nonexistent/key.pem";
  http_server d(tls, {});
  CHECK_THROWS_AS(d.start(), std::runtime_error);
}

TEST_CASE("net: max_connections answers 503 over the limit") {
  auto o = test_options();
  o.max_connections = 2;
  echo_server s(o);
  raw_conn a(s.port), b(s.port);
  REQUIRE(wait_until([&] { return s.srv->connection_count() == 2; }));
  {
    raw_conn c(s.port);
    REQUIRE(c.send_all(get_request("/x")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 503);
    CHECK(r->body.find("too_many_connections") != std::string::npos);
  }
  a.close();
  REQUIRE(wait_until([&] { return s.srv->connection_count() == 1; }));
  raw_conn d(s.port);
  REQUIRE(d.send_all(get_request("/x")));
  auto r = d.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
}

// ═══════════════════════════════ WebSocket ═══════════════════════════════

TEST_CASE("net: WebSocket echo, 1000 messages each way, in order") {
  echo_server s;
  client_probe p(s.url() + "?token=good");
  REQUIRE(p.wait_open());
  CHECK(p.opens == 1);
  REQUIRE(s.server_opened.wait_size(1));
  auto conn = s.conn(0);
  REQUIRE(conn);
  CHECK(conn->upgrade_request().path == "/ws");
  CHECK(conn->upgrade_request().query.at("token") == "good");

  constexpr int n = 1000;
  for (int i = 0; i < n; ++i) p.c->send_text("c" + std::to_string(i));
  REQUIRE(p.msgs.wait_size(n, 10000ms));
  // server pushes from a foreign thread too
  std::thread pusher([&] {
    for (int i = 0; i < n; ++i) conn->send_text("s" + std::to_string(i));
  });
  pusher.join();
  REQUIRE(p.msgs.wait_size(2 * n, 10000ms));
  auto got = p.msgs.all();
  for (int i = 0; i < n; ++i) {
    CHECK(got[i] == "c" + std::to_string(i));
    CHECK(got[n + i] == "s" + std::to_string(i));
  }
  CHECK(wait_until([&] { return conn->queued_bytes() == 0 && p.c->queued_bytes() == 0; }));
  CHECK(s.srv->connection_count() == 1);

  // a large (1 MiB) message round trip
  std::string big(1 << 20, 'q');
  p.c->send_text(big);
  REQUIRE(p.msgs.wait_size(2 * n + 1, 10000ms));
  CHECK(p.msgs.at(2 * n) == big);

  // server-initiated close: both sides see exactly one on_closed
  conn->close("bye");
  REQUIRE(p.closed.wait_size(1));
  REQUIRE(s.server_closed.wait_size(1));
  CHECK(s.server_closed.at(0) == "bye");
  CHECK(p.closed.at(0).find("closed by server") != std::string::npos);
  INFO(p.closed.at(0));
  CHECK(p.closed.at(0).find("bye") != std::string::npos);
  CHECK_FALSE(p.c->is_open());
  conn->send_text("after close");  // no-op
  CHECK(wait_until([&] { return s.srv->connection_count() == 0; }));

  // reconnect with the same client after on_closed
  p.c->connect();
  REQUIRE(wait_until([&] { return p.opens == 2; }));
  p.c->send_text("again");
  REQUIRE(p.msgs.wait_size(2 * n + 2));
  CHECK(p.msgs.at(2 * n + 1) == "again");
  p.c->close();
  REQUIRE(p.closed.wait_size(2));
  CHECK(p.closed.at(1) == "closed by client");
  REQUIRE(s.server_closed.wait_size(2));
  std::this_thread::sleep_for(50ms);
  CHECK(p.closed.size() == 2);
  CHECK(s.server_closed.size() == 2);
}

TEST_CASE("net: WebSocket upgrade refused with 401 reports the status to the client") {
  echo_server s;
  client_probe p(s.url() + "?token=bad");
  REQUIRE(p.closed.wait_size(1));
  CHECK(p.opens == 0);
  CHECK(p.closed.at(0).find("upgrade refused: HTTP 401") != std::string::npos);
  CHECK(p.closed.at(0).find("unauthorized") != std::string::npos);

  client_probe q(s.url("/elsewhere"));
  REQUIRE(q.closed.wait_size(1));
  CHECK(q.closed.at(0).find("HTTP 404") != std::string::npos);
  CHECK(s.server_opened.size() == 0);
  CHECK(s.server_closed.size() == 0);
}

TEST_CASE("net: oversized WebSocket message closes only that connection") {
  auto o = test_options();
  o.max_message_bytes = 1024;
  echo_server s(o);
  client_probe a(s.url()), b(s.url());
  REQUIRE(a.wait_open());
  REQUIRE(b.wait_open());
  REQUIRE(s.server_opened.wait_size(2));

  a.c->send_text(std::string(2000, 'x'));
  REQUIRE(s.server_closed.wait_size(1));
  CHECK(s.server_closed.at(0).find("message too large") != std::string::npos);
  REQUIRE(a.closed.wait_size(1));
  INFO(a.closed.at(0));
  CHECK(a.closed.at(0).find("1009") != std::string::npos);

  b.c->send_text("still alive");
  REQUIRE(b.msgs.wait_size(1));
  CHECK(b.msgs.at(0) == "still alive");
  CHECK(b.c->is_open());

  // the client side limit works the same way
  client_probe small(s.url(), [](ws_client_options& co) { co.max_message_bytes = 100; });
  REQUIRE(small.wait_open());
  small.c->send_text(std::string(500, 'y'));  // within the server limit, echoed back, too big for the client
  REQUIRE(small.closed.wait_size(1));
  CHECK(small.closed.at(0).find("message too large") != std::string::npos);
}

TEST_CASE("net: abusive raw clients do not disturb other connections") {
  auto o = test_options();
  o.max_message_bytes = 1 << 20;
  echo_server s(o);
  client_probe good(s.url());
  REQUIRE(good.wait_open());

  {  // a 100 MB frame header followed by some payload
    raw_conn c(s.port);
    REQUIRE(c.ws_handshake());
    c.send_all(ws_frame_header(0x2, 100ull << 20) + std::string(65536, '\0'));
    CHECK(c.wait_eof());
  }
  {  // garbage bytes after the handshake
    raw_conn c(s.port);
    REQUIRE(c.ws_handshake());
    std::mt19937 rng(42);
    std::string junk(4096, '\0');
    for (auto& ch : junk) ch = static_cast<char>(rng());
    c.send_all(junk);
    CHECK(c.wait_eof());
  }
  {  // a truncated frame, then the client vanishes
    raw_conn c(s.port);
    REQUIRE(c.ws_handshake());
    c.send_all(ws_frame_header(0x1, 1000) + "only a little");
  }
  {  // unmasked client frame (protocol violation)
    raw_conn c(s.port);
    REQUIRE(c.ws_handshake());
    c.send_all(std::string("\x81\x02hi", 4));
    CHECK(c.wait_eof());
  }
  {  // a valid masked text frame from a raw client is echoed
    raw_conn c(s.port);
    REQUIRE(c.ws_handshake());
    c.send_all(ws_frame_header(0x1, 5) + "hello");
    REQUIRE(c.read_until("hello"));
  }
  REQUIRE(s.server_closed.wait_size(5, 10000ms));
  const auto reasons = s.server_closed.all();
  CHECK(std::any_of(reasons.begin(), reasons.end(),
                    [](const std::string& r) { return r.find("message too large") != std::string::npos; }));

  good.c->send_text("ping?");
  REQUIRE(good.msgs.wait_size(1));
  CHECK(good.msgs.at(0) == "ping?");
  CHECK(wait_until([&] { return s.srv->connection_count() == 1; }));
}

TEST_CASE("net: a slow reader over max_write_queue_bytes is disconnected") {
  auto o = test_options();
  o.max_write_queue_bytes = 1 << 20;
  echo_server s(o, false);
  raw_conn c(s.port, 20000);
  REQUIRE(c.ws_handshake());
  REQUIRE(s.server_opened.wait_size(1));
  auto conn = s.conn(0);
  REQUIRE(conn);
  const std::string chunk(64 * 1024, 'w');
  for (int i = 0; i < 1000 && s.server_closed.size() == 0; ++i) conn->send_text(chunk);  // up to 64 MB
  REQUIRE(s.server_closed.wait_size(1, 10000ms));
  CHECK(s.server_closed.at(0).find("write queue") != std::string::npos);
  CHECK(wait_until([&] { return conn->queued_bytes() == 0; }));
  CHECK(wait_until([&] { return s.srv->connection_count() == 0; }));
}

TEST_CASE("net: server stop() with live connections calls on_closed for each and returns promptly") {
  auto s = std::make_unique<echo_server>();
  std::vector<std::unique_ptr<client_probe>> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<client_probe>(s->url()));
  for (auto& c : clients) REQUIRE(c->wait_open());
  REQUIRE(s->server_opened.wait_size(3));
  raw_conn idle_http(s->port);  // an idle keep-alive HTTP connection
  raw_conn silent_ws(s->port);  // a WebSocket peer that never answers the close handshake
  REQUIRE(silent_ws.ws_handshake());
  REQUIRE(s->server_opened.wait_size(4));

  const auto t0 = std::chrono::steady_clock::now();
  s->srv->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 3s);
  CHECK(s->server_closed.size() == 4);
  for (auto& r : s->server_closed.all()) CHECK(r == "server stopped");
  for (auto& c : clients) {
    REQUIRE(c->closed.wait_size(1));
    CHECK(c->closed.at(0).find("1001") != std::string::npos);
  }
  CHECK(s->srv->connection_count() == 0);
  s->srv->stop();  // idempotent
  CHECK(idle_http.wait_eof());
  s.reset();
  std::this_thread::sleep_for(20ms);
  for (auto& c : clients) CHECK(c->closed.size() == 1);
}

TEST_CASE("net: client reports failures through on_closed") {
  std::uint16_t closed_port = 0;
  {
    http_server tmp(test_options(), {});
    closed_port = tmp.start();
  }
  client_probe p("ws://127.0.0.1:" + std::to_string(closed_port) + "/ws");
  REQUIRE(p.closed.wait_size(1));
  CHECK(p.closed.at(0).find("connect to 127.0.0.1") != std::string::npos);
  CHECK_FALSE(p.c->is_open());
  p.c->send_text("dropped");  // not open: dropped silently
  CHECK(p.c->queued_bytes() == 0);

  client_probe bad("ftp://example");
  REQUIRE(bad.closed.wait_size(1));
  CHECK(bad.closed.at(0).find("invalid url") != std::string::npos);

  client_probe bad_port("ws://127.0.0.1:99999/");
  REQUIRE(bad_port.closed.wait_size(1));
  CHECK(bad_port.closed.at(0).find("invalid url") != std::string::npos);

  // a server that accepts TCP but never answers the handshake -> connect timeout
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  client_probe slow("ws://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/",
                    [](ws_client_options& o) { o.connect_timeout = 300ms; });
  REQUIRE(slow.closed.wait_size(1, 5000ms));
  CHECK(slow.closed.at(0).find("timeout") != std::string::npos);
  ::close(lfd);

  // close() while connecting aborts the attempt with one on_closed
  client_probe aborted("ws://127.0.0.1:" + std::to_string(closed_port) + "/", [](ws_client_options&) {});
  aborted.c->close();
  REQUIRE(aborted.closed.wait_size(1));
  std::this_thread::sleep_for(50ms);
  CHECK(aborted.closed.size() == 1);
}

TEST_CASE("net: extra client headers reach on_upgrade") {
  std::mutex mu;
  std::string auth;
  server_callbacks cbs;
  cbs.on_upgrade = [&](const http_request& req) -> std::optional<http_response> {
    std::lock_guard<std::mutex> lk(mu);
    auth = req.header("authorization");
    return std::nullopt;
  };
  cbs.on_ws_open = [](ws_ptr) { return ws_handlers{}; };
  http_server srv(test_options(), cbs);
  const auto port = srv.start();
  client_probe p("http://127.0.0.1:" + std::to_string(port) + "/any",
                 [](ws_client_options& o) { o.headers.push_back({"Authorization", "Bearer abc"}); });
  REQUIRE(p.wait_open());
  std::lock_guard<std::mutex> lk(mu);
  CHECK(auth == "Bearer abc");
}

TEST_CASE("net: timeouts: silent HTTP peer, idle WebSocket peer; pings keep a live client open") {
  auto o = test_options();
  o.handshake_timeout = 200ms;
  o.idle_timeout = 400ms;
  echo_server s(o);
  {
    raw_conn c(s.port);  // connects, sends nothing
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(c.wait_eof());
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  }
  client_probe live(s.url(), [](ws_client_options& co) { co.idle_timeout = 0ms; });  // answers pings only
  REQUIRE(live.wait_open());
  raw_conn silent(s.port, 5000);
  REQUIRE(silent.ws_handshake());  // never answers pings
  REQUIRE(s.server_closed.wait_size(1, 5000ms));
  CHECK(s.server_closed.at(0) == "idle timeout");
  std::this_thread::sleep_for(600ms);
  CHECK(live.c->is_open());
  CHECK(live.closed.size() == 0);
  live.c->send_text("still here");
  REQUIRE(live.msgs.wait_size(1));
}

TEST_CASE("net: many concurrent WebSocket clients on 4 io threads keep per-connection order") {
  auto o = test_options();
  o.io_threads = 4;
  echo_server s(o);
  constexpr int clients = 8, per_client = 300;
  std::vector<std::unique_ptr<client_probe>> ps;
  for (int i = 0; i < clients; ++i) ps.push_back(std::make_unique<client_probe>(s.url()));
  for (auto& p : ps) REQUIRE(p->wait_open());
  std::vector<std::thread> senders;
  for (int i = 0; i < clients; ++i)
    senders.emplace_back([&, i] {
      for (int k = 0; k < per_client; ++k) ps[i]->c->send_text(std::to_string(i) + ":" + std::to_string(k));
    });
  for (auto& t : senders) t.join();
  for (int i = 0; i < clients; ++i) {
    REQUIRE(ps[i]->msgs.wait_size(per_client, 10000ms));
    const auto got = ps[i]->msgs.all();
    bool ordered = true;
    for (int k = 0; k < per_client; ++k) ordered = ordered && got[k] == std::to_string(i) + ":" + std::to_string(k);
    CHECK(ordered);
  }
  CHECK(s.srv->connection_count() == clients);
}

// ═══════════════════════════════ TLS ═══════════════════════════════

TEST_CASE("net: TLS (HTTPS + WSS) with a self-signed certificate generated at test time") {
  if (!have_tool("openssl version")) {
    MESSAGE("openssl CLI not found: TLS test skipped");
    return;
  }
  char dir_tmpl[] = "/tmp/spiderhub_tls_XXXXXX";
  const char* dir = ::mkdtemp(dir_tmpl);
  REQUIRE(dir);
  const std::string d = dir;
  const std::string cert = d + "/cert.pem", key = d + "/key.pem";
  const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                          "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
                          key + " -out " + cert + " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);

  auto o = test_options();
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  echo_server s(o);
  CHECK(s.srv->tls());

  client_probe p("wss://127.0.0.1:" + std::to_string(s.port) + "/ws", [&](ws_client_options& co) {
    co.tls_ca_file = cert;
  });
  REQUIRE(p.wait_open());
  for (int i = 0; i < 100; ++i) p.c->send_text("t" + std::to_string(i));
  REQUIRE(p.msgs.wait_size(100));
  CHECK(p.msgs.at(99) == "t99");

  client_probe by_name("wss://localhost:" + std::to_string(s.port) + "/ws",
                       [&](ws_client_options& co) { co.tls_ca_file = cert; });
  REQUIRE(by_name.wait_open());

  client_probe untrusted("wss://127.0.0.1:" + std::to_string(s.port) + "/ws",
                         [&](ws_client_options& co) { co.tls_ca_file = ""; });
  REQUIRE(untrusted.closed.wait_size(1));
  CHECK(untrusted.closed.at(0).find("tls handshake") != std::string::npos);

  client_probe unverified("wss://127.0.0.1:" + std::to_string(s.port) + "/ws",
                          [&](ws_client_options& co) { co.tls_verify = false; });
  REQUIRE(unverified.wait_open());

  {  // plain HTTP against the TLS port is dropped without disturbing anything
    raw_conn c(s.port);
    c.send_all(get_request("/plain"));
    CHECK(c.wait_eof());
  }

  if (have_tool("curl --version")) {
    const std::string out_file = d + "/out.txt";
    const std::string curl = "curl -s --max-time 5 --cacert " + cert + " -X POST --data hello https://127.0.0.1:" +
                             std::to_string(s.port) + "/secure -o " + out_file;
    CHECK(std::system(curl.c_str()) == 0);
    std::ifstream in(out_file);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(body == "POST /secure hello");
  } else {
    MESSAGE("curl not found: HTTPS request part skipped");
  }

  p.c->close();
  REQUIRE(p.closed.wait_size(1));
  CHECK(p.closed.at(0) == "closed by client");
  const int rm_rc = std::system(("rm -rf " + d).c_str());
  (void)rm_rc;
}
