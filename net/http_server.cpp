// HTTP + WebSocket server on Boost.Beast (style of Beast's advanced_server_flex
// example): one listener, one session object per connection whose handlers all
// run on the connection's strand, readable do_x -> on_x lifecycles, every
// handler starts with its `ec` guard.
//
//   listener ──accept──► http_session<Stream> ──upgrade──► ws_session<Stream>
//                         (TLS handshake, read,              (accept, read loop,
//                          dispatch, write, linger)           write queue, close)
//
// Stream is beast::tcp_stream (plain) or beast::ssl_stream<beast::tcp_stream> (TLS).
// Sessions are owned by their pending handlers plus the server's registry;
// handles given to user code (ws_connection, http_responder) only hold weak
// references so they never keep sockets alive past the server.
#include "net/http_server.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
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
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <unordered_map>

namespace spiderhub::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = beast::error_code;

// Boost-free helpers (percent_decode, parse_query, json_escape, make_json_error,
// http_request accessors) live in net/http_text.cpp.

namespace {

// ───────────────────────────── limits, in one place ─────────────────────────────

constexpr char k_server_name[] = "spiderhub";
constexpr auto k_linger = std::chrono::milliseconds(3000);       // drain time after a response that ends the connection
constexpr auto k_force_wait = std::chrono::milliseconds(1000);   // stop(): wait after cutting sockets
constexpr auto k_accept_retry = std::chrono::milliseconds(50);   // after accept errors such as EMFILE
constexpr std::size_t k_max_rejecting = 256;                     // 503 answers in flight beyond max_connections
constexpr std::size_t k_drain_chunk = 16 * 1024;
constexpr std::size_t k_keep_read_buffer = 256 * 1024;             // WS read buffer capacity kept between messages

using request_parser = http::request_parser<http::string_body>;
using beast_request = http::request<http::string_body>;
using beast_response = http::response<http::string_body>;
using plain_stream = beast::tcp_stream;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
template <class S>
inline constexpr bool is_tls_v = std::is_same_v<S, tls_stream>;

void apply_limits(request_parser& p, const server_options& o) {
  const auto max_header = std::min<std::size_t>(o.max_header_bytes, std::numeric_limits<std::uint32_t>::max());
  p.header_limit(static_cast<std::uint32_t>(max_header));
  p.body_limit(static_cast<std::uint64_t>(o.max_body_bytes));
}

template <class S>
void apply_limits(websocket::stream<S>& ws, const server_options& o) {
  websocket::stream_base::timeout t{};
  t.handshake_timeout = o.handshake_timeout.count() > 0 ? websocket::stream_base::duration(o.handshake_timeout)
                                                        : websocket::stream_base::none();
  t.idle_timeout =
      o.idle_timeout.count() > 0 ? websocket::stream_base::duration(o.idle_timeout) : websocket::stream_base::none();
  t.keep_alive_pings = o.idle_timeout.count() > 0;
  ws.set_option(t);
  ws.read_message_max(o.max_message_bytes);
  ws.auto_fragment(false);
}

void set_expiry(beast::tcp_stream& s, std::chrono::milliseconds d) {
  if (d.count() > 0)
    s.expires_after(d);
  else
    s.expires_never();
}

std::string to_std(beast::string_view v) { return std::string(v.data(), v.size()); }

std::string lower(std::string_view v) {
  std::string s(v);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool header_safe(std::string_view v) {
  return std::none_of(v.begin(), v.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

http_request to_request(beast_request& req, const std::string& remote_ip) {
  http_request r;
  r.method = to_std(req.method_string());
  r.target = to_std(req.target());
  std::string_view t = r.target;
  // absolute-form "http://host/path?q" -> origin-form
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (t.size() >= scheme.size() && lower(t.substr(0, scheme.size())) == scheme) {
      const std::size_t slash = t.find('/', scheme.size());
      t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
      break;
    }
  }
  const std::size_t hash = t.find('#');
  if (hash != std::string_view::npos) t = t.substr(0, hash);
  const std::size_t q = t.find('?');
  r.path = percent_decode(t.substr(0, q), false);
  if (q != std::string_view::npos) r.query = parse_query(t.substr(q + 1));
  for (const auto& f : req) {
    auto [it, inserted] = r.headers.emplace(lower(to_std(f.name_string())), to_std(f.value()));
    if (!inserted) it->second += ", " + to_std(f.value());
  }
  r.body = std::move(req.body());
  r.remote_ip = remote_ip;
  return r;
}

beast_response to_beast(http_response r, unsigned version, bool keep_alive, bool head) {
  beast_response res;
  res.version(version);
  const int status = (r.status >= 200 && r.status <= 599) ? r.status : 500;
  res.result(static_cast<unsigned>(status));
  res.set(http::field::server, k_server_name);
  const bool no_body = status == 204 || status == 304;
  if (!no_body && !r.content_type.empty() && header_safe(r.content_type))
    res.set(http::field::content_type, r.content_type);
  for (auto& [name, value] : r.headers) {
    if (name.empty() || !header_safe(name) || !header_safe(value)) continue;
    const std::string n = lower(name);
    if (n == "content-length" || n == "transfer-encoding" || n == "connection") continue;  // framing is ours
    res.insert(name, value);
  }
  res.keep_alive(keep_alive);
  if (no_body) return res;  // no body, no Content-Length
  if (head) {
    res.content_length(r.body.size());  // HEAD: advertise the length, send no body
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

// ───────────────────────────── shared server state ─────────────────────────────

class session_base {
 public:
  virtual ~session_base() = default;
  virtual void shutdown() = 0;     // graceful stop; any thread (posts to the strand)
  virtual void force_close() = 0;  // cut the socket; any thread (posts to the strand)
  virtual void finish_now() = 0;   // io threads are joined: finish synchronously
};

struct server_state {
  server_state(server_options o, server_callbacks c) : opts(std::move(o)), cbs(std::move(c)) {}

  const server_options opts;
  const server_callbacks cbs;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> rejecting{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> next_id{1};

  void add(std::uint64_t id, std::shared_ptr<session_base> s) {
    std::shared_ptr<session_base> old;  // destroyed outside the lock
    std::lock_guard<std::mutex> lk(mu_);
    auto& slot = sessions_[id];
    old = std::move(slot);
    slot = std::move(s);
  }
  void remove(std::uint64_t id, const session_base* s) {
    std::shared_ptr<session_base> old;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = sessions_.find(id);
      if (it != sessions_.end() && it->second.get() == s) {
        old = std::move(it->second);
        sessions_.erase(it);
      }
      if (sessions_.empty()) cv_.notify_all();
    }
  }
  std::vector<std::shared_ptr<session_base>> snapshot() {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<std::shared_ptr<session_base>> v;
    v.reserve(sessions_.size());
    for (auto& [id, s] : sessions_) v.push_back(s);
    return v;
  }
  bool wait_empty_for(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, d, [&] { return sessions_.empty(); });
  }
  void clear() {
    std::unordered_map<std::uint64_t, std::shared_ptr<session_base>> old;
    std::lock_guard<std::mutex> lk(mu_);
    old.swap(sessions_);
  }
  void log(const std::string& m) const {
    if (!cbs.on_log) return;
    try {
      cbs.on_log(m);
    } catch (...) {
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::uint64_t, std::shared_ptr<session_base>> sessions_;
};

// RAII share of a counter (admitted connections or 503 answers in flight).
class counted {
 public:
  counted() = default;
  counted(std::shared_ptr<server_state> st, std::atomic<std::size_t> server_state::*ctr)
      : st_(std::move(st)), ctr_(ctr) {}
  counted(counted&& o) noexcept : st_(std::move(o.st_)), ctr_(o.ctr_) {}
  counted& operator=(counted&& o) noexcept {
    if (this != &o) {
      reset();
      st_ = std::move(o.st_);
      ctr_ = o.ctr_;
    }
    return *this;
  }
  counted(const counted&) = delete;
  counted& operator=(const counted&) = delete;
  ~counted() { reset(); }
  void reset() {
    if (st_) {
      ((*st_).*ctr_).fetch_sub(1);
      st_.reset();
    }
  }

 private:
  std::shared_ptr<server_state> st_;
  std::atomic<std::size_t> server_state::*ctr_ = nullptr;
};

// ───────────────────────────── WebSocket session ─────────────────────────────

class ws_session_base : public session_base {
 public:
  virtual void send_any(std::string frame) = 0;
  virtual void close_any(std::string reason) = 0;
  virtual std::size_t queued() const = 0;
};

// What user code holds: a weak reference, so a forgotten ws_ptr never keeps a socket alive.
class ws_handle final : public ws_connection {
 public:
  ws_handle(std::uint64_t id, http_request req, std::weak_ptr<ws_session_base> s)
      : id_(id), req_(std::move(req)), s_(std::move(s)) {}
  void send_text(std::string frame) override {
    if (auto s = s_.lock()) s->send_any(std::move(frame));
  }
  void close(std::string reason) override {
    if (auto s = s_.lock()) s->close_any(std::move(reason));
  }
  std::uint64_t id() const override { return id_; }
  const http_request& upgrade_request() const override { return req_; }
  std::size_t queued_bytes() const override {
    auto s = s_.lock();
    return s ? s->queued() : 0;
  }

 private:
  const std::uint64_t id_;
  const http_request req_;
  const std::weak_ptr<ws_session_base> s_;
};

template <class S>
class ws_session final : public ws_session_base, public std::enable_shared_from_this<ws_session<S>> {
  using ws_stream = websocket::stream<S>;

 public:
  ws_session(std::shared_ptr<server_state> st, S&& stream, counted slot, std::uint64_t id, http_request req)
      : st_(std::move(st)),
        ws_(std::move(stream)),
        exec_(ws_.get_executor()),
        slot_(std::move(slot)),
        id_(id),
        req_(std::move(req)) {}

  // Called on the connection's strand (from the HTTP session that read the upgrade request).
  void run(beast_request req) {
    auto self = this->shared_from_this();
    st_->add(id_, self);
    apply_limits(ws_, st_->opts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, k_server_name); }));
    beast::get_lowest_layer(ws_).expires_never();  // the websocket stream runs its own timers
    ws_.async_accept(req, beast::bind_front_handler(&ws_session::on_accept, self));
  }

  // ws_session_base — any thread
  void send_any(std::string frame) override {
    const std::size_t n = frame.size();
    if (queued_bytes_.fetch_add(n) + n > st_->opts.max_write_queue_bytes) {
      // Over the limit: drop the payload right here (memory stays bounded) and cut the slow peer.
      queued_bytes_.fetch_sub(n);
      asio::post(exec_, [self = this->shared_from_this()] { self->finish(self->overflow_reason()); });
      return;
    }
    asio::post(exec_, [self = this->shared_from_this(), f = std::move(frame)]() mutable { self->on_send(std::move(f)); });
  }
  void close_any(std::string reason) override {
    asio::post(exec_, [self = this->shared_from_this(), r = std::move(reason)]() mutable {
      self->request_close(std::move(r), websocket::close_code::normal);
    });
  }
  std::size_t queued() const override { return queued_bytes_.load(); }

  // session_base
  void shutdown() override {
    asio::post(exec_, [self = this->shared_from_this()] {
      self->request_close("server stopped", websocket::close_code::going_away);
    });
  }
  void force_close() override {
    asio::post(exec_, [self = this->shared_from_this()] { self->finish("server stopped"); });
  }
  void finish_now() override { finish("server stopped"); }

 private:
  void on_accept(error_code ec) {
    if (finished_) return;
    if (ec) return finish("websocket handshake failed: " + ec.message());
    opened_ = true;
    auto handle = std::make_shared<ws_handle>(id_, std::move(req_), this->weak_from_this());
    try {
      handlers_ = st_->cbs.on_ws_open(handle);
    } catch (const std::exception& e) {
      st_->log(std::string("on_ws_open threw: ") + e.what());
      return finish(std::string("on_ws_open failed: ") + e.what());
    }
    do_read();
  }

  void do_read() { ws_.async_read(buffer_, beast::bind_front_handler(&ws_session::on_read, this->shared_from_this())); }

  void on_read(error_code ec, std::size_t) {
    if (finished_) return;
    if (ec) {
      if (close_requested_) return finish(local_reason());  // whatever the teardown reported
      return finish(describe(ec));
    }
    std::string msg = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > k_keep_read_buffer) buffer_.shrink_to_fit();  // one big message must not pin memory
    if (handlers_.on_message) {
      try {
        handlers_.on_message(std::move(msg));
      } catch (const std::exception& e) {
        st_->log(std::string("ws on_message threw: ") + e.what());
        request_close("internal error", websocket::close_code::internal_error);
      }
    }
    if (!finished_) do_read();
  }

  void on_send(std::string frame) {
    const std::size_t n = frame.size();
    if (finished_ || close_requested_) {
      queued_bytes_.fetch_sub(n);
      return;
    }
    queue_.push_back(std::move(frame));
    if (!writing_) do_write();
  }

  void do_write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()),
                    beast::bind_front_handler(&ws_session::on_write, this->shared_from_this()));
  }

  void on_write(error_code ec, std::size_t) {
    writing_ = false;
    queued_bytes_.fetch_sub(queue_.front().size());
    queue_.pop_front();
    if (finished_) return;
    if (ec) return finish(describe(ec));
    if (!queue_.empty()) return do_write();
    if (close_requested_ && !close_sent_) do_close();
  }

  // Flush queued writes, then the close handshake.
  void request_close(std::string reason, websocket::close_code code) {
    if (finished_ || close_requested_) return;
    if (!opened_) return finish(std::move(reason));
    close_requested_ = true;
    close_reason_ = std::move(reason);
    close_code_ = code;
    if (!writing_ && queue_.empty()) do_close();
  }

  void do_close() {
    close_sent_ = true;
    websocket::close_reason cr(close_code_);
    std::size_t n = std::min<std::size_t>(close_reason_.size(), cr.reason.max_size());
    while (n > 0 && n < close_reason_.size() && (static_cast<unsigned char>(close_reason_[n]) & 0xC0) == 0x80)
      --n;  // do not cut a UTF-8 sequence
    cr.reason.assign(static_cast<const char*>(close_reason_.data()), n);  // const char*: avoid the (T, pos) overload
    ws_.async_close(cr, beast::bind_front_handler(&ws_session::on_close, this->shared_from_this()));
  }

  void on_close(error_code) {
    if (finished_) return;
    finish(local_reason());
  }

  std::string overflow_reason() const {
    return "write queue overflow: peer too slow (more than " + std::to_string(st_->opts.max_write_queue_bytes) +
           " bytes queued)";
  }

  std::string local_reason() const { return close_reason_.empty() ? std::string("closed") : close_reason_; }

  std::string describe(error_code ec) const {
    if (ec == websocket::error::message_too_big)
      return "message too large (limit " + std::to_string(st_->opts.max_message_bytes) + " bytes)";
    // A received close frame wins over a teardown error (Beast 1.74's teardown may report ENOTCONN/ECONNRESET).
    if (ec == websocket::error::closed || ws_.reason().code != websocket::close_code::none) {
      const auto& r = ws_.reason();
      std::string s = "closed by peer";
      if (r.code != websocket::close_code::none) {
        s += " (code " + std::to_string(r.code);
        if (!r.reason.empty()) s += ": " + std::string(r.reason.data(), r.reason.size());
        s += ")";
      }
      return s;
    }
    if (ec == beast::error::timeout) return opened_ ? "idle timeout" : "handshake timeout";
    if (ec == websocket::condition::protocol_violation) return "protocol error: " + ec.message();
    if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
        ec == ssl::error::stream_truncated)
      return "connection lost: " + ec.message();
    return "connection error: " + ec.message();
  }

  // The one exit: closes the socket, reports on_closed once, releases the slot.
  void finish(std::string reason) {
    if (finished_) return;
    finished_ = true;
    beast::get_lowest_layer(ws_).close();
    const std::size_t keep = writing_ ? 1 : 0;  // a pending write still references the front frame
    while (queue_.size() > keep) {
      queued_bytes_.fetch_sub(queue_.back().size());
      queue_.pop_back();
    }
    slot_.reset();
    ws_handlers h = std::move(handlers_);
    handlers_ = ws_handlers{};  // break user-made cycles
    if (opened_ && h.on_closed) {
      try {
        h.on_closed(std::move(reason));
      } catch (const std::exception& e) {
        st_->log(std::string("ws on_closed threw: ") + e.what());
      } catch (...) {
      }
    }
    st_->remove(id_, this);
  }

  std::shared_ptr<server_state> st_;
  ws_stream ws_;
  typename ws_stream::executor_type exec_;
  counted slot_;
  const std::uint64_t id_;
  http_request req_;
  beast::flat_buffer buffer_;
  ws_handlers handlers_;
  std::deque<std::string> queue_;
  std::atomic<std::size_t> queued_bytes_{0};
  std::string close_reason_;
  websocket::close_code close_code_ = websocket::close_code::normal;
  bool opened_ = false;
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool finished_ = false;
};

// ───────────────────────────── HTTP session ─────────────────────────────

class http_session_base : public session_base {
 public:
  virtual void post_reply(std::uint64_t seq, http_response r) = 0;
};

class responder_impl final : public http_responder {
 public:
  responder_impl(std::weak_ptr<http_session_base> s, std::uint64_t seq) : s_(std::move(s)), seq_(seq) {}
  ~responder_impl() override {
    if (done_.exchange(true)) return;
    if (auto s = s_.lock())
      s->post_reply(seq_, make_json_error(500, "no_response", "the request handler produced no response"));
  }
  void reply(http_response r) override {
    if (done_.exchange(true)) return;
    if (auto s = s_.lock()) s->post_reply(seq_, std::move(r));
  }

 private:
  std::weak_ptr<http_session_base> s_;
  const std::uint64_t seq_;
  std::atomic<bool> done_{false};
};

template <class S>
class http_session final : public http_session_base, public std::enable_shared_from_this<http_session<S>> {
  enum class phase { handshake, reading, handling, writing, closing, done };

 public:
  http_session(std::shared_ptr<server_state> st, S&& stream, counted slot, std::uint64_t id, std::string remote_ip,
               bool admitted)
      : st_(std::move(st)),
        stream_(std::move(stream)),
        exec_(stream_.get_executor()),
        slot_(std::move(slot)),
        id_(id),
        remote_ip_(std::move(remote_ip)),
        admitted_(admitted) {}

  void start() {
    auto self = this->shared_from_this();
    st_->add(id_, self);
    asio::dispatch(exec_, [self] {
      if constexpr (is_tls_v<S>)
        self->do_tls_handshake();
      else
        self->do_read();
    });
  }

  // http_session_base — any thread
  void post_reply(std::uint64_t seq, http_response r) override {
    asio::post(exec_, [self = this->shared_from_this(), seq, r = std::move(r)]() mutable {
      self->on_reply(seq, std::move(r));
    });
  }

  // session_base
  void shutdown() override {
    asio::post(exec_, [self = this->shared_from_this()] {
      self->stop_requested_ = true;  // a request being handled still gets its answer, then the connection closes
      if (self->phase_ == phase::handshake || self->phase_ == phase::reading || self->phase_ == phase::closing)
        self->finish();
    });
  }
  void force_close() override {
    asio::post(exec_, [self = this->shared_from_this()] { self->finish(); });
  }
  void finish_now() override { finish(); }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void do_tls_handshake() {
    phase_ = phase::handshake;
    set_expiry(lowest(), st_->opts.handshake_timeout);
    if constexpr (is_tls_v<S>)
      stream_.async_handshake(ssl::stream_base::server,
                              beast::bind_front_handler(&http_session::on_tls_handshake, this->shared_from_this()));
  }

  void on_tls_handshake(error_code ec) {
    if (phase_ == phase::done) return;
    if (ec) return finish();
    do_read();
  }

  void do_read() {
    if (phase_ == phase::done) return;
    if (stop_requested_) return finish();
    phase_ = phase::reading;
    version_ = 11;
    keep_alive_ = false;
    head_ = false;
    parser_.emplace();
    apply_limits(*parser_, st_->opts);
    set_expiry(lowest(), requests_ == 0 ? st_->opts.handshake_timeout : st_->opts.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&http_session::on_read_header, this->shared_from_this()));
  }

  void on_read_header(error_code ec, std::size_t) {
    if (phase_ == phase::done) return;
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    head_ = req.method() == http::verb::head;
    if (!admitted_)
      return send(make_json_error(503, "too_many_connections", "the server is at its connection limit"), true);
    if (parser_->is_done()) return on_request();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      continue_.emplace(http::status::continue_, version_);
      set_expiry(lowest(), st_->opts.idle_timeout);
      return http::async_write(stream_, *continue_,
                               beast::bind_front_handler(&http_session::on_continue_written, this->shared_from_this()));
    }
    read_body();
  }

  void on_continue_written(error_code ec, std::size_t) {
    if (phase_ == phase::done) return;
    if (ec) return finish();
    continue_.reset();
    read_body();
  }

  void read_body() {
    set_expiry(lowest(), st_->opts.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&http_session::on_read_body, this->shared_from_this()));
  }

  void on_read_body(error_code ec, std::size_t) {
    if (phase_ == phase::done) return;
    if (ec) return on_read_error(ec);
    on_request();
  }

  void on_read_error(error_code ec) {
    if (ec == http::error::end_of_stream) return close_gracefully();  // peer closed between requests
    if (ec == http::error::body_limit)
      return send(make_json_error(413, "body_too_large",
                                  "request body exceeds " + std::to_string(st_->opts.max_body_bytes) + " bytes"),
                  true);
    if (ec == http::error::header_limit)
      return send(make_json_error(431, "headers_too_large",
                                  "request headers exceed " + std::to_string(st_->opts.max_header_bytes) + " bytes"),
                  true);
    if (&ec.category() == &http::make_error_code(http::error::bad_method).category())
      return send(make_json_error(400, "bad_request", "malformed HTTP request: " + ec.message()), true);
    finish();  // timeout, reset, aborted, TLS failure: nothing sensible to answer
  }

  void on_request() {
    ++requests_;
    ++seq_;
    auto& req = parser_->get();
    if (stop_requested_ || st_->stopping)
      return send(make_json_error(503, "server_stopping", "the server is shutting down"), true);
    if (websocket::is_upgrade(req)) return handle_upgrade();
    http_request r = to_request(req, remote_ip_);
    if (!st_->cbs.on_http) return send(make_json_error(404, "not_found", "no handler for " + r.path), false);
    phase_ = phase::handling;
    auto responder = std::make_shared<responder_impl>(this->weak_from_this(), seq_);
    try {
      st_->cbs.on_http(std::move(r), std::move(responder));  // an unanswered responder answers 500 when dropped
    } catch (const std::exception& e) {
      st_->log(std::string("on_http threw: ") + e.what());
    }
  }

  void handle_upgrade() {
    auto& req = parser_->get();
    http_request r = to_request(req, remote_ip_);
    if (!st_->cbs.on_ws_open) return send(make_json_error(404, "not_found", "no websocket endpoint"), true);
    if (st_->cbs.on_upgrade) {
      std::optional<http_response> refusal;
      try {
        refusal = st_->cbs.on_upgrade(r);
      } catch (const std::exception& e) {
        st_->log(std::string("on_upgrade threw: ") + e.what());
        refusal = make_json_error(500, "internal_error", "upgrade check failed");
      }
      if (refusal) return send(std::move(*refusal), true);
    }
    // Hand the stream over; from here on this session no longer owns the connection.
    phase_ = phase::done;
    auto ws = std::make_shared<ws_session<S>>(st_, std::move(stream_), std::move(slot_), id_, std::move(r));
    ws->run(parser_->release());  // replaces this session in the registry (same id)
  }

  void on_reply(std::uint64_t seq, http_response r) {
    if (seq != seq_ || phase_ != phase::handling) return;
    send(std::move(r), false);
  }

  void send(http_response r, bool close) {
    const bool keep = !close && keep_alive_ && !stop_requested_ && !st_->stopping;
    phase_ = phase::writing;
    res_.emplace(to_beast(std::move(r), version_, keep, head_));
    set_expiry(lowest(), std::max(st_->opts.idle_timeout, st_->opts.handshake_timeout));
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&http_session::on_write, this->shared_from_this(), !keep));
  }

  void on_write(bool close, error_code ec, std::size_t) {
    if (phase_ == phase::done) return;
    if (ec) return finish();
    close = close || res_->need_eof();
    res_.reset();
    if (close) return close_gracefully();
    do_read();  // keep-alive: next request
  }

  // Lingering close: send FIN (or TLS close_notify), then drain what the peer
  // still sends for a moment so that our last response is not lost to an RST.
  void close_gracefully() {
    if (phase_ == phase::done) return;
    phase_ = phase::closing;
    lowest().expires_after(k_linger);
    if constexpr (is_tls_v<S>) {
      stream_.async_shutdown(beast::bind_front_handler(&http_session::on_tls_shutdown, this->shared_from_this()));
    } else {
      error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      if (ec) return finish();
      do_drain();
    }
  }

  void on_tls_shutdown(error_code) { finish(); }

  void do_drain() {
    stream_.async_read_some(buffer_.prepare(k_drain_chunk),
                            beast::bind_front_handler(&http_session::on_drain, this->shared_from_this()));
  }

  void on_drain(error_code ec, std::size_t) {
    if (phase_ == phase::done) return;
    if (ec) return finish();  // EOF, timeout, reset
    do_drain();
  }

  void finish() {
    if (phase_ == phase::done) return;
    phase_ = phase::done;
    lowest().close();
    slot_.reset();
    st_->remove(id_, this);
  }

  std::shared_ptr<server_state> st_;
  S stream_;
  typename S::executor_type exec_;
  counted slot_;
  const std::uint64_t id_;
  const std::string remote_ip_;
  const bool admitted_;
  beast::flat_buffer buffer_;
  std::optional<request_parser> parser_;
  std::optional<beast_response> res_;
  std::optional<http::response<http::empty_body>> continue_;
  phase phase_ = phase::handshake;
  std::uint64_t requests_ = 0;
  std::uint64_t seq_ = 0;
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool head_ = false;
  bool stop_requested_ = false;
};

}  // namespace

// ───────────────────────────── listener / server ─────────────────────────────

struct http_server::impl {
  impl(server_options opts, server_callbacks cbs)
      : st(std::make_shared<server_state>(std::move(opts), std::move(cbs))),
        ioc(std::max(1, st->opts.io_threads)),
        acceptor(asio::make_strand(ioc)),
        accept_retry(acceptor.get_executor()) {}

  std::shared_ptr<server_state> st;
  std::unique_ptr<ssl::context> tls_ctx;  // outlives ioc (declared before it)
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;
  std::vector<std::thread> threads;
  std::mutex lifecycle_mu;
  int run_state = 0;  // 0 new, 1 running, 2 stopped
  std::atomic<std::uint16_t> bound_port{0};

  void setup_tls() {
    const auto& o = st->opts;
    if (o.tls_cert_file.empty() && o.tls_key_file.empty()) return;
    if (o.tls_cert_file.empty() || o.tls_key_file.empty())
      throw std::runtime_error("http_server: tls_cert_file and tls_key_file must both be set");
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    error_code ec;
    ctx->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec)
      throw std::runtime_error("http_server: cannot load TLS certificate '" + o.tls_cert_file + "': " + ec.message());
    ctx->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    if (ec)
      throw std::runtime_error("http_server: cannot load TLS private key '" + o.tls_key_file + "': " + ec.message());
    tls_ctx = std::move(ctx);
  }

  std::uint16_t start() {
    std::lock_guard<std::mutex> lk(lifecycle_mu);
    if (run_state != 0) throw std::runtime_error("http_server: start() may only be called once");
    setup_tls();
    const auto& o = st->opts;
    const std::string where = o.address + ":" + std::to_string(o.port);
    error_code ec;
    const auto addr = asio::ip::make_address(o.address, ec);
    if (ec) throw std::runtime_error("http_server: invalid listen address '" + o.address + "': " + ec.message());
    const tcp::endpoint ep(addr, o.port);
    auto fail = [&](const char* what) {
      error_code ig;
      acceptor.close(ig);
      throw std::runtime_error(std::string("http_server: cannot ") + what + " " + where + ": " + ec.message());
    };
    acceptor.open(ep.protocol(), ec);
    if (ec) fail("open socket for");
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) fail("set SO_REUSEADDR on");
    acceptor.bind(ep, ec);
    if (ec) fail("bind");
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) fail("listen on");
    bound_port = acceptor.local_endpoint(ec).port();
    work.emplace(ioc.get_executor());
    asio::dispatch(acceptor.get_executor(), [this] { do_accept(); });
    const int n = std::max(1, o.io_threads);
    for (int i = 0; i < n; ++i) threads.emplace_back([this] { run_thread(); });
    run_state = 1;
    return bound_port;
  }

  void run_thread() {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        st->log(std::string("http_server io thread: unhandled exception: ") + e.what());
      } catch (...) {
        st->log("http_server io thread: unhandled exception");
      }
    }
  }

  void do_accept() {
    acceptor.async_accept(asio::make_strand(ioc),
                          [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
  }

  void on_accept(error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    error_code ig;
    if (st->stopping) {
      socket.close(ig);
      return;
    }
    if (ec) {  // e.g. EMFILE: back off briefly instead of spinning
      st->log("http_server: accept failed: " + ec.message());
      accept_retry.expires_after(k_accept_retry);
      accept_retry.async_wait([this](error_code e) {
        if (!e && !st->stopping && acceptor.is_open()) do_accept();
      });
      return;
    }
    socket.set_option(tcp::no_delay(true), ig);
    std::string ip;
    const auto ep = socket.remote_endpoint(ig);
    if (!ig) ip = ep.address().to_string();

    counted slot;
    bool admitted = true;
    if (st->connections.fetch_add(1) < st->opts.max_connections) {
      slot = counted(st, &server_state::connections);
    } else {
      st->connections.fetch_sub(1);
      admitted = false;
      if (st->rejecting.fetch_add(1) >= k_max_rejecting) {  // too many even for polite 503s
        st->rejecting.fetch_sub(1);
        socket.close(ig);
        return do_accept();
      }
      slot = counted(st, &server_state::rejecting);
    }
    const std::uint64_t id = st->next_id.fetch_add(1);
    if (tls_ctx)
      std::make_shared<http_session<tls_stream>>(st, tls_stream(std::move(socket), *tls_ctx), std::move(slot), id,
                                                 std::move(ip), admitted)
          ->start();
    else
      std::make_shared<http_session<plain_stream>>(st, plain_stream(std::move(socket)), std::move(slot), id,
                                                   std::move(ip), admitted)
          ->start();
    do_accept();
  }

  void stop() {
    std::lock_guard<std::mutex> lk(lifecycle_mu);
    for (const auto& t : threads)
      if (t.get_id() == std::this_thread::get_id())
        throw std::logic_error("http_server::stop() must not be called from a server callback (io thread)");
    const int prev = run_state;
    run_state = 2;
    if (prev != 1) return;
    st->stopping = true;
    asio::post(acceptor.get_executor(), [this] {
      error_code ig;
      acceptor.close(ig);
      accept_retry.cancel();
    });
    for (auto& s : st->snapshot()) s->shutdown();
    if (!st->wait_empty_for(st->opts.stop_grace)) {
      for (auto& s : st->snapshot()) s->force_close();
      st->wait_empty_for(k_force_wait);
    }
    work.reset();
    ioc.stop();
    for (auto& t : threads)
      if (t.joinable()) t.join();
    threads.clear();
    error_code ig;
    acceptor.close(ig);
    for (auto& s : st->snapshot()) s->finish_now();  // io threads are gone: report the rest here
    st->clear();
  }
};

http_server::http_server(server_options opts, server_callbacks cbs)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(cbs))) {}

http_server::~http_server() {
  try {
    impl_->stop();
  } catch (...) {
  }
}

std::uint16_t http_server::start() { return impl_->start(); }
void http_server::stop() { impl_->stop(); }
std::uint16_t http_server::port() const { return impl_->bound_port.load(); }
std::size_t http_server::connection_count() const { return impl_->st->connections.load(); }
bool http_server::tls() const { return !impl_->st->opts.tls_cert_file.empty() && !impl_->st->opts.tls_key_file.empty(); }

}  // namespace spiderhub::net
