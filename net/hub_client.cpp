#include "net/hub_client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "net/ws_client.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/signalr.hpp"

namespace spiderhub::net {

namespace sr = protocol::signalr;
using clock_type = std::chrono::steady_clock;

namespace {

// A hub URL for log lines: without its query (the connection sign).
std::string without_query(const std::string& url) { return url.substr(0, url.find('?')); }

} // namespace

struct hub_client::impl : std::enable_shared_from_this<impl> {
  struct pending_call {
    raw_completion_fn done;
    clock_type::time_point deadline;
  };

  options opts;
  std::unordered_map<std::string, method_fn> methods;
  std::unordered_map<std::string, raw_method_fn> raw_methods;
  std::function<void()> connected_fn;
  std::function<void(const std::string&)> disconnected_fn;

  mutable std::mutex mtx;
  std::condition_variable cv;
  std::shared_ptr<ws_client> ws;  // replaced per connect attempt; snapshot under mtx
  bool running = false;
  bool socket_open = false;  // WebSocket is up (handshake may still be pending)
  bool hub_ready = false;    // handshake answered
  bool need_connect = true;
  std::uint64_t next_id = 1;
  std::map<std::string, pending_call> calls;
  sr::record_splitter splitter{64 << 20};
  std::thread supervisor;
  std::mt19937_64 rng{std::random_device{}()};
  std::chrono::milliseconds backoff{0};
  // Alternatives (see the header): how many, the one of the attempt under way or of the
  // connection that is up, its URL for log lines, and how many were tried this round.
  std::size_t url_count = 1;
  std::size_t current = 0;
  std::string current_display;
  std::size_t tried_in_round = 0;
  bool attempted = false;  // no attempt yet: the first one goes to opts.first_url

  explicit impl(options o) : opts(std::move(o)), splitter(opts.max_message_bytes) {
    backoff = opts.reconnect_initial;
    url_count = opts.url_at ? std::max<std::size_t>(opts.url_count, 1) : 1;
    current = opts.first_url % url_count;
  }

  std::string url_of(std::size_t index) const {
    return opts.url_at ? opts.url_at(index) : opts.url();
  }

  /// "ws://b2:55626/node (broker 2 of 3)" with several alternatives, the URL alone with one
  /// (without its query: no sign in the logs).
  std::string where_locked() const {
    if (url_count == 1)
      return current_display;
    return current_display + " (broker " + std::to_string(current + 1) + " of " +
           std::to_string(url_count) + ")";
  }

  std::shared_ptr<ws_client> socket() {
    std::lock_guard<std::mutex> lk(mtx);
    return ws;
  }

  void send_text(std::string text) {
    if (auto s = socket())
      s->send_text(std::move(text));
  }

  void close_socket() {
    if (auto s = socket())
      s->close();
  }

  void fail_all(const std::string& why) {
    std::map<std::string, pending_call> failed;
    {
      std::lock_guard<std::mutex> lk(mtx);
      failed.swap(calls);
    }
    for (auto& [id, call] : failed)
      call.done({}, why);
  }

  void on_open() {
    {
      std::lock_guard<std::mutex> lk(mtx);
      socket_open = true;
      splitter = sr::record_splitter(opts.max_message_bytes);
    }
    send_text(sr::handshake_request());
  }

  void on_closed(const std::string& reason) {
    bool was_ready;
    std::string where;
    {
      std::lock_guard<std::mutex> lk(mtx);
      was_ready = hub_ready;
      if (url_count > 1)
        where = ": " + where_locked();
      socket_open = false;
      hub_ready = false;
      need_connect = true;
    }
    cv.notify_all();
    fail_all(reason);
    if (was_ready) {
      spdlog::warn("{}: disconnected: {}{}", opts.name, reason, where);
      if (disconnected_fn)
        disconnected_fn(reason);
    } else {
      spdlog::warn("{}: connect failed: {}{}", opts.name, reason, where);
    }
  }

  void on_message(const std::string& text) {
    std::vector<std::string> records;
    try {
      records = splitter.feed(text);
    } catch (const std::exception& e) {
      spdlog::error("{}: bad frame from server: {}", opts.name, e.what());
      close_socket();
      return;
    }
    for (auto& rec : records)
      handle_record(rec);
  }

  void handle_record(const std::string& rec) {
    bool ready;
    {
      std::lock_guard<std::mutex> lk(mtx);
      ready = hub_ready;
    }
    try {
      if (!ready) {
        auto err = sr::parse_handshake_response(rec);
        if (!err.empty()) {
          spdlog::error("{}: handshake refused: {}", opts.name, err);
          close_socket();
          return;
        }
        std::string where;
        {
          std::lock_guard<std::mutex> lk(mtx);
          hub_ready = true;
          backoff = opts.reconnect_initial;
          tried_in_round = 0;  // the next drop starts a new round
          where = where_locked();
        }
        spdlog::info("{}: connected to {}", opts.name, where);
        if (connected_fn)
          connected_fn();
        return;
      }
      auto msg = protocol::fast::parse_record(rec);
      if (msg.type == 1) {
        if (auto raw = raw_methods.find(msg.target); raw != raw_methods.end()) {
          raw->second(msg.arguments);
          if (msg.invocation_id)
            send_text(sr::encode(sr::completion{*msg.invocation_id, json(nullptr), {}}));
          return;
        }
        auto it = methods.find(msg.target);
        if (it == methods.end()) {
          spdlog::warn("{}: server called unknown method '{}'", opts.name, msg.target);
          if (msg.invocation_id)
            send_text(sr::encode(sr::completion{*msg.invocation_id, std::nullopt,
                                                "unknown method " + msg.target}));
          return;
        }
        it->second(json::parse(msg.arguments));
        if (msg.invocation_id)
          send_text(sr::encode(sr::completion{*msg.invocation_id, json(nullptr), {}}));
      } else if (msg.type == 3) {
        pending_call call;
        {
          std::lock_guard<std::mutex> lk(mtx);
          auto it = calls.find(*msg.invocation_id);
          if (it == calls.end())
            return;  // timed out earlier
          call = std::move(it->second);
          calls.erase(it);
        }
        if (msg.error)
          call.done({}, *msg.error);
        else
          call.done(msg.result ? std::move(*msg.result) : std::string{}, {});
      } else if (msg.type == 7) {
        spdlog::warn("{}: server closed the hub: {}", opts.name, msg.error.value_or("no reason"));
        close_socket();
      }
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot handle server message: {}", opts.name, e.what());
    }
  }

  void connect_now(std::size_t index) {
    ws_client_options wo;
    wo.url = url_of(index);
    {
      std::lock_guard<std::mutex> lk(mtx);
      current_display = without_query(wo.url);
    }
    wo.max_message_bytes = opts.max_message_bytes;
    wo.idle_timeout = opts.idle_timeout;
    wo.tls_verify = opts.tls_verify;
    wo.tls_ca_file = opts.tls_ca_file;
    std::weak_ptr<impl> weak = shared_from_this();
    ws_client_handlers h;
    h.on_open = [weak] {
      if (auto s = weak.lock())
        s->on_open();
    };
    h.on_message = [weak](std::string text) {
      if (auto s = weak.lock())
        s->on_message(text);
    };
    h.on_closed = [weak](std::string reason) {
      if (auto s = weak.lock())
        s->on_closed(reason);
    };
    // One ws_client per attempt keeps every attempt's callbacks separate.
    auto fresh = std::make_shared<ws_client>(wo, std::move(h));
    std::shared_ptr<ws_client> old;
    {
      std::lock_guard<std::mutex> lk(mtx);
      old = std::exchange(ws, fresh);
    }
    old.reset();
    fresh->connect();
  }

  // Supervisor: (re)connects with backoff, pings, and expires calls past their timeout.
  void supervise() {
    auto last_ping = clock_type::now();
    std::unique_lock<std::mutex> lk(mtx);
    while (running) {
      if (need_connect) {
        need_connect = false;
        // The next alternative in turn (the first one at the very start).
        if (attempted)
          current = (current + 1) % url_count;
        attempted = true;
        auto index = current;
        bool last_of_round = ++tried_in_round >= url_count;
        // Within a round the next alternative follows quickly; the backoff (doubling)
        // only comes after a whole round failed.
        auto base = last_of_round ? backoff : opts.reconnect_initial;
        lk.unlock();
        connect_now(index);
        lk.lock();
        // Wait for this attempt to finish or for the delay before the next one.
        auto jitter = std::uniform_int_distribution<long>(0, base.count() / 2 + 1)(rng);
        auto wait = base + std::chrono::milliseconds(jitter);
        cv.wait_for(lk, wait, [&] { return !running || hub_ready; });
        if (!hub_ready && last_of_round) {
          backoff = std::min(backoff * 2, opts.reconnect_max);
          tried_in_round = 0;
        }
        cv.wait(lk, [&] { return !running || hub_ready || (need_connect && !socket_open); });
        continue;
      }
      cv.wait_for(lk, std::chrono::milliseconds(250));
      if (!running)
        break;
      auto now = clock_type::now();
      std::vector<pending_call> expired;
      for (auto it = calls.begin(); it != calls.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second));
          it = calls.erase(it);
        } else {
          ++it;
        }
      }
      bool ping = hub_ready && now - last_ping >= opts.keepalive;
      lk.unlock();
      for (auto& c : expired)
        c.done({}, "timeout");
      if (ping) {
        last_ping = now;
        send_text(sr::encode_ping());
      }
      lk.lock();
    }
  }
};

hub_client::hub_client(options opts) : impl_(std::make_shared<impl>(std::move(opts))) {}

hub_client::~hub_client() { stop(); }

void hub_client::on_raw(const std::string& target, raw_method_fn fn) {
  impl_->raw_methods[target] = std::move(fn);
}

void hub_client::on(const std::string& target, method_fn fn) {
  impl_->methods[target] = std::move(fn);
}
void hub_client::on_connected(std::function<void()> fn) { impl_->connected_fn = std::move(fn); }
void hub_client::on_disconnected(std::function<void(const std::string&)> fn) {
  impl_->disconnected_fn = std::move(fn);
}

void hub_client::start() {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  if (impl_->running)
    return;
  impl_->running = true;
  impl_->need_connect = true;
  impl_->supervisor = std::thread([s = impl_] { s->supervise(); });
}

void hub_client::stop() {
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    if (!impl_->running)
      return;
    impl_->running = false;
  }
  impl_->cv.notify_all();
  if (impl_->supervisor.joinable())
    impl_->supervisor.join();
  auto ws = impl_->socket();
  if (ws)
    ws->close();
  ws.reset();
  std::shared_ptr<ws_client> last;
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    last = std::move(impl_->ws);
  }
  // Destroyed outside the lock: ~ws_client joins its io thread, which may be delivering a
  // message and waiting for mtx (a deadlock seen under ASan in the worker SDK tests).
  last.reset();
  impl_->fail_all("client stopped");
}

bool hub_client::connected() const {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  return impl_->hub_ready;
}

std::size_t hub_client::current_url() const {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  return impl_->current;
}

void hub_client::invoke(const std::string& target, json arguments, completion_fn done) {
  invoke_raw(target, arguments.dump(-1, ' ', false, json::error_handler_t::replace),
             [done = std::move(done)](std::string result, std::string error) {
               if (!error.empty())
                 return done(json(), std::move(error));
               json parsed;
               if (!result.empty()) {
                 parsed = json::parse(result, nullptr, false);
                 if (parsed.is_discarded())
                   return done(json(), "server sent a result that is not JSON");
               }
               done(std::move(parsed), {});
             });
}

void hub_client::invoke_raw(const std::string& target, std::string arguments_json,
                            raw_completion_fn done) {
  std::string id;
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    if (!impl_->hub_ready) {
      done({}, "not connected");
      return;
    }
    id = std::to_string(impl_->next_id++);
    impl_->calls[id] = {std::move(done), clock_type::now() + impl_->opts.invoke_timeout};
  }
  // {"type":1,"invocationId":..,"target":..,"arguments":<raw>}<RS>
  std::string frame;
  frame.reserve(arguments_json.size() + target.size() + 64);
  frame += "{\"type\":1,\"invocationId\":";
  protocol::fast::append_json_string(frame, id);
  frame += ",\"target\":";
  protocol::fast::append_json_string(frame, target);
  frame += ",\"arguments\":";
  frame += arguments_json;
  frame += '}';
  frame += sr::record_separator;
  impl_->send_text(std::move(frame));
}

void hub_client::send(const std::string& target, json arguments) {
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    if (!impl_->hub_ready)
      return;
  }
  impl_->send_text(sr::encode(sr::invocation{std::nullopt, target, std::move(arguments)}));
}

} // namespace spiderhub::net
