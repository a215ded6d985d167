// WebSocket client on Boost.Beast (style of Beast's websocket_client_async[_ssl]
// examples): one connection object per connect() attempt with a readable
// resolve -> connect -> (TLS handshake) -> WS handshake -> read loop lifecycle,
// one ordered write queue, every handler starting with its guard. Everything
// runs on the client's single io thread, so no strand is needed.
#include "net/ws_client.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

namespace spiderhub::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = beast::error_code;

namespace {

constexpr char k_user_agent[] = "spiderhub-ws-client";
constexpr auto k_destroy_wait = std::chrono::milliseconds(1000);  // ~ws_client: time for a polite close
constexpr std::size_t k_keep_read_buffer = 256 * 1024;            // read buffer capacity kept between messages
constexpr std::size_t k_write_buffer_bytes = 64 * 1024;          // masked frames are written in pieces this big

using plain_ws = websocket::stream<beast::tcp_stream>;
using tls_ws = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

struct parsed_url {
  bool tls = false;
  std::string host;         // without brackets
  std::string port;         // numeric string
  std::string host_header;  // as written in the URL (host[:port])
  std::string target;       // path + query, at least "/"
};

std::optional<parsed_url> parse_url(const std::string& url, std::string& err) {
  parsed_url u;
  const std::size_t sep = url.find("://");
  if (sep == std::string::npos) {
    err = "missing scheme in '" + url + "'";
    return std::nullopt;
  }
  std::string scheme = url.substr(0, sep);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "ws" || scheme == "http") {
    u.tls = false;
  } else if (scheme == "wss" || scheme == "https") {
    u.tls = true;
  } else {
    err = "unsupported scheme '" + scheme + "'";
    return std::nullopt;
  }
  const std::string rest = url.substr(sep + 3);
  const std::size_t path_at = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, path_at);
  std::string target = path_at == std::string::npos ? std::string("/") : rest.substr(path_at);
  if (const std::size_t hash = target.find('#'); hash != std::string::npos) target.resize(hash);
  if (target.empty() || target[0] != '/') target = "/" + target;
  if (const std::size_t at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (authority.empty()) {
    err = "missing host in '" + url + "'";
    return std::nullopt;
  }
  std::string port;
  if (authority[0] == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string::npos) {
      err = "unterminated IPv6 address in '" + url + "'";
      return std::nullopt;
    }
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        err = "garbage after IPv6 address in '" + url + "'";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) {
    err = "missing host in '" + url + "'";
    return std::nullopt;
  }
  if (port.empty()) port = u.tls ? "443" : "80";
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(port) == 0 || std::stoul(port) > 65535) {
    err = "invalid port '" + port + "'";
    return std::nullopt;
  }
  u.port = port;
  u.host_header = authority;
  u.target = target;
  return u;
}

bool header_safe(const std::string& v) {
  return std::none_of(v.begin(), v.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

class conn_base {
 public:
  virtual ~conn_base() = default;
  virtual void start() = 0;
  virtual void send(std::string frame) = 0;  // io thread
  virtual void close() = 0;                  // io thread
};

// The io-thread side of ws_client::impl as seen by a connection.
class client_owner {
 public:
  virtual ~client_owner() = default;
  virtual const ws_client_options& options() const = 0;
  virtual std::atomic<std::size_t>& queued_counter() = 0;
  virtual void conn_opened(const conn_base* c) = 0;
  virtual void conn_message(const conn_base* c, std::string m) = 0;
  virtual void conn_closed(const conn_base* c, std::string reason) = 0;
};

template <class WS>
class client_conn final : public conn_base, public std::enable_shared_from_this<client_conn<WS>> {
  static constexpr bool tls = std::is_same_v<WS, tls_ws>;

 public:
  template <class... Args>
  client_conn(client_owner& owner, parsed_url url, asio::io_context& ioc, Args&&... ws_args)
      : owner_(owner), url_(std::move(url)), resolver_(ioc), timer_(ioc), ws_(ioc, std::forward<Args>(ws_args)...) {}

  void start() override {
    auto self = this->shared_from_this();
    const auto& o = owner_.options();
    if (o.connect_timeout.count() > 0) {
      timer_.expires_after(o.connect_timeout);
      timer_.async_wait(beast::bind_front_handler(&client_conn::on_timer, self));
    }
    resolver_.async_resolve(url_.host, url_.port, beast::bind_front_handler(&client_conn::on_resolve, self));
  }

  void send(std::string frame) override {
    if (!opened_ || finished_ || close_requested_) {
      owner_.queued_counter().fetch_sub(frame.size());
      return;
    }
    queue_.push_back(std::move(frame));
    if (!writing_) do_write();
  }

  void close() override {
    if (finished_) return;
    if (!opened_) return fail("connect aborted by close()");
    if (close_requested_) return;
    close_requested_ = true;
    if (!writing_ && queue_.empty()) do_close();
  }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(ws_); }
  const conn_base* self_base() const { return this; }
  std::string where() const { return url_.host_header; }

  void on_timer(error_code ec) {
    if (ec || finished_ || opened_) return;
    timed_out_ = true;  // abort whichever step is pending; its handler reports the timeout
    resolver_.cancel();
    lowest().close();
  }

  void on_resolve(error_code ec, tcp::resolver::results_type results) {
    if (finished_) return;
    if (timed_out_) return fail("connect timeout");
    if (ec) return fail("resolve " + url_.host + " failed: " + ec.message());
    lowest().async_connect(results, beast::bind_front_handler(&client_conn::on_connect, this->shared_from_this()));
  }

  void on_connect(error_code ec, const tcp::endpoint&) {
    if (finished_) return;
    if (timed_out_) return fail("connect timeout");
    if (ec) return fail("connect to " + where() + " failed: " + ec.message());
    error_code ig;
    lowest().socket().set_option(tcp::no_delay(true), ig);
    if constexpr (tls) {
      auto& s = ws_.next_layer();
      error_code not_ip;
      asio::ip::make_address(url_.host, not_ip);
      if (not_ip && !SSL_set_tlsext_host_name(s.native_handle(), url_.host.c_str()))
        return fail("tls: cannot set SNI host name");
      if (owner_.options().tls_verify) s.set_verify_callback(ssl::host_name_verification(url_.host));
      s.async_handshake(ssl::stream_base::client,
                        beast::bind_front_handler(&client_conn::on_tls_handshake, this->shared_from_this()));
    } else {
      do_ws_handshake();
    }
  }

  void on_tls_handshake(error_code ec) {
    if (finished_) return;
    if (timed_out_) return fail("connect timeout");
    if (ec) {
      if constexpr (tls) {
        // Name why the peer's certificate was refused and where trust came from.
        auto v = SSL_get_verify_result(ws_.next_layer().native_handle());
        if (v != X509_V_OK) {
          const auto& o = owner_.options();
          return fail("tls handshake with " + where() + " failed: certificate not trusted (" +
                      X509_verify_cert_error_string(v) + "); trusted CAs: " +
                      (o.tls_ca_file.empty() ? std::string("the system store") : "'" + o.tls_ca_file + "'") +
                      " (tls.ca_file)");
        }
      }
      return fail("tls handshake with " + where() + " failed: " + ec.message());
    }
    do_ws_handshake();
  }

  void do_ws_handshake() {
    const auto& o = owner_.options();
    lowest().expires_never();  // the websocket stream runs its own timers
    websocket::stream_base::timeout t{};
    t.handshake_timeout = o.connect_timeout.count() > 0 ? websocket::stream_base::duration(o.connect_timeout)
                                                        : websocket::stream_base::none();
    t.idle_timeout =
        o.idle_timeout.count() > 0 ? websocket::stream_base::duration(o.idle_timeout) : websocket::stream_base::none();
    t.keep_alive_pings = o.idle_timeout.count() > 0;
    ws_.set_option(t);
    ws_.read_message_max(o.max_message_bytes);
    ws_.auto_fragment(false);
    // A client masks what it sends: Beast masks a message through this buffer and writes
    // it one buffer at a time (4 KiB by default: a node's 400 KB result batch was ~100
    // sendto calls, each running loopback's TCP receive path in the sender).
    ws_.write_buffer_bytes(k_write_buffer_bytes);
    ws_.set_option(websocket::stream_base::decorator([headers = o.headers](websocket::request_type& req) {
      req.set(http::field::user_agent, k_user_agent);
      for (const auto& [k, v] : headers)
        if (!k.empty() && header_safe(k) && header_safe(v)) req.set(k, v);
    }));
    ws_.async_handshake(res_, url_.host_header, url_.target,
                        beast::bind_front_handler(&client_conn::on_handshake, this->shared_from_this()));
  }

  void on_handshake(error_code ec) {
    if (finished_) return;
    if (timed_out_) return fail("connect timeout");
    if (ec == websocket::error::upgrade_declined)
      return fail("upgrade refused: HTTP " + std::to_string(res_.result_int()) + ": " + res_.body());
    if (ec) return fail("websocket handshake with " + where() + " failed: " + ec.message());
    timer_.cancel();
    res_ = {};
    opened_ = true;
    owner_.conn_opened(self_base());
    if (!finished_) do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&client_conn::on_read, this->shared_from_this()));
  }

  void on_read(error_code ec, std::size_t) {
    if (finished_) return;
    if (ec) {
      if (close_requested_) return fail("closed by client");  // whatever the teardown reported
      return fail(describe(ec));
    }
    std::string msg = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > k_keep_read_buffer) buffer_.shrink_to_fit();  // one big message must not pin memory
    owner_.conn_message(self_base(), std::move(msg));
    if (!finished_) do_read();
  }

  void do_write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()),
                    beast::bind_front_handler(&client_conn::on_write, this->shared_from_this()));
  }

  void on_write(error_code ec, std::size_t) {
    writing_ = false;
    owner_.queued_counter().fetch_sub(queue_.front().size());
    queue_.pop_front();
    if (finished_) return;
    if (ec) return fail(describe(ec));
    if (!queue_.empty()) return do_write();
    if (close_requested_ && !close_sent_) do_close();
  }

  void do_close() {
    close_sent_ = true;
    ws_.async_close(websocket::close_code::normal,
                    beast::bind_front_handler(&client_conn::on_close, this->shared_from_this()));
  }

  void on_close(error_code) {
    if (finished_) return;
    fail("closed by client");
  }

  std::string describe(error_code ec) const {
    if (ec == websocket::error::message_too_big)
      return "message too large (limit " + std::to_string(owner_.options().max_message_bytes) + " bytes)";
    // A received close frame wins over a teardown error (Beast 1.74's teardown may report ENOTCONN/ECONNRESET).
    if (ec == websocket::error::closed || ws_.reason().code != websocket::close_code::none) {
      const auto& r = ws_.reason();
      std::string s = "closed by server";
      if (r.code != websocket::close_code::none) {
        s += " (code " + std::to_string(r.code);
        if (!r.reason.empty()) s += ": " + std::string(r.reason.data(), r.reason.size());
        s += ")";
      }
      return s;
    }
    if (ec == beast::error::timeout) return "idle timeout";
    if (ec == websocket::condition::protocol_violation) return "protocol error: " + ec.message();
    return "connection lost: " + ec.message();
  }

  // The one exit: reports on_closed exactly once.
  void fail(std::string reason) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    resolver_.cancel();
    lowest().close();
    const std::size_t keep = writing_ ? 1 : 0;  // a pending write still references the front frame
    while (queue_.size() > keep) {
      owner_.queued_counter().fetch_sub(queue_.back().size());
      queue_.pop_back();
    }
    owner_.conn_closed(self_base(), std::move(reason));
  }

  client_owner& owner_;
  const parsed_url url_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  WS ws_;
  beast::flat_buffer buffer_;
  websocket::response_type res_;
  std::deque<std::string> queue_;
  bool timed_out_ = false;
  bool opened_ = false;
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool finished_ = false;
};

}  // namespace

struct ws_client::impl final : client_owner {
  impl(ws_client_options o, ws_client_handlers hs) : opts(std::move(o)), h(std::move(hs)), work(ioc.get_executor()) {}

  const ws_client_options opts;
  const ws_client_handlers h;
  std::unique_ptr<ssl::context> tls_ctx;  // outlives every stream (declared before ioc)
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<conn_base> current;  // io thread only
  std::atomic<bool> open{false};
  std::atomic<bool> quiet{false};  // set by the destructor: no more handler calls
  std::atomic<std::size_t> queued{0};
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  std::thread thread;

  // client_owner
  const ws_client_options& options() const override { return opts; }
  std::atomic<std::size_t>& queued_counter() override { return queued; }
  void conn_opened(const conn_base* c) override {
    if (current.get() != c) return;
    open = true;
    if (quiet || !h.on_open) return;
    try {
      h.on_open();
    } catch (...) {
    }
  }
  void conn_message(const conn_base* c, std::string m) override {
    if (current.get() != c || quiet || !h.on_message) return;
    try {
      h.on_message(std::move(m));
    } catch (...) {
      if (auto cur = current) cur->close();
    }
  }
  void conn_closed(const conn_base* c, std::string reason) override {
    if (current.get() == c) {
      open = false;
      current.reset();  // the connection is kept alive by its own pending handler
    }
    if (quiet || !h.on_closed) return;
    try {
      h.on_closed(std::move(reason));
    } catch (...) {
    }
  }

  void report_failure(std::string reason) {
    if (quiet || !h.on_closed) return;
    try {
      h.on_closed(std::move(reason));
    } catch (...) {
    }
  }

  bool ensure_tls(std::string& err) {
    if (tls_ctx) return true;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    error_code ec;
    if (opts.tls_verify) {
      ctx->set_verify_mode(ssl::verify_peer, ec);
      if (!ec) {
        if (opts.tls_ca_file.empty())
          ctx->set_default_verify_paths(ec);
        else
          ctx->load_verify_file(opts.tls_ca_file, ec);
      }
    } else {
      ctx->set_verify_mode(ssl::verify_none, ec);
    }
    if (ec) {
      err = "tls setup failed" + (opts.tls_ca_file.empty() ? std::string() : " ('" + opts.tls_ca_file + "')") + ": " +
            ec.message();
      return false;
    }
    tls_ctx = std::move(ctx);
    return true;
  }

  void do_connect() {  // io thread
    if (current || quiet) return;
    std::string err;
    auto url = parse_url(opts.url, err);
    if (!url) return report_failure("invalid url: " + err);
    if (url->tls) {
      if (!ensure_tls(err)) return report_failure(err);
      current = std::make_shared<client_conn<tls_ws>>(*this, std::move(*url), ioc, *tls_ctx);
    } else {
      current = std::make_shared<client_conn<plain_ws>>(*this, std::move(*url), ioc);
    }
    auto c = current;
    c->start();
  }

  void run_thread() {
    for (;;) {
      try {
        ioc.run();
        break;
      } catch (...) {
      }
    }
    std::lock_guard<std::mutex> lk(done_mu);
    done = true;
    done_cv.notify_all();
  }
};

ws_client::ws_client(ws_client_options opts, ws_client_handlers h)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(h))) {
  impl_->thread = std::thread([p = impl_.get()] { p->run_thread(); });
}

ws_client::~ws_client() {
  impl* p = impl_.get();
  p->quiet = true;
  asio::post(p->ioc, [p] {
    if (auto c = p->current) c->close();
  });
  p->work.reset();
  {
    std::unique_lock<std::mutex> lk(p->done_mu);
    p->done_cv.wait_for(lk, k_destroy_wait, [p] { return p->done; });
  }
  p->ioc.stop();
  if (p->thread.joinable()) p->thread.join();
  p->current.reset();
}

void ws_client::connect() {
  asio::post(impl_->ioc, [p = impl_.get()] { p->do_connect(); });
}

void ws_client::send_text(std::string frame) {
  if (!impl_->open.load()) return;  // cheap early drop; the io thread re-checks
  impl_->queued.fetch_add(frame.size());
  asio::post(impl_->ioc, [p = impl_.get(), f = std::move(frame)]() mutable {
    if (auto c = p->current)
      c->send(std::move(f));
    else
      p->queued.fetch_sub(f.size());
  });
}

void ws_client::close() {
  asio::post(impl_->ioc, [p = impl_.get()] {
    if (auto c = p->current) c->close();
  });
}

bool ws_client::is_open() const { return impl_->open.load(); }

std::size_t ws_client::queued_bytes() const { return impl_->queued.load(); }

}  // namespace spiderhub::net
