// bench_many_nodes: N signed node sessions from one process against a running broker.
//
// Every session connects to {url}/node with a fresh HMAC sign, does the WebSocket and
// SignalR handshakes, then calls Heartbeat every --interval-ms (random phase) and measures
// the round trip to its completion. Connections are opened --connect-concurrency at a time;
// a session that drops reconnects after 1-3 s. After the ramp and a warm-up, a window of
// --duration seconds is measured: heartbeats *sent* in the window count, their round-trip
// percentiles, sessions held and dropped, and the broker's RSS (/proc/<pid>/status), CPU
// and per-thread CPU / run-queue wait (/proc/<pid>/task/*/schedstat: how long its threads
// were runnable but got no CPU, i.e. how loaded the machine was). Figures only: no
// pass/fail: exit code 0, or 2 for bad options, 1 when the URL does not resolve.
//
//   bench_many_nodes --url http://127.0.0.1:55626 --token T --nodes 10000 --duration 60
//                    --broker-pid PID [--interval-ms 5000] [--threads 1]
//                    [--connect-concurrency 256] [--ramp-timeout 120] [--warmup 10]
//
// Beast/Asio are used directly here (not net/ws_client) so that one io thread can drive
// thousands of sessions without a thread or an actor each.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <cinttypes>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/digest.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using error_code = beast::error_code;
using steady = std::chrono::steady_clock;
using json = nlohmann::json;

// ---- options --------------------------------------------------------------------------

struct options {
  std::string url = "http://127.0.0.1:55626";
  std::string token = "1234";
  int nodes = 1000;
  int duration_s = 60;
  long broker_pid = 0;
  int interval_ms = 5000;
  int threads = 1;
  int connect_concurrency = 256;
  int ramp_timeout_s = 120;
  int warmup_s = 10;
  // derived
  std::string host, port, path_prefix;
};

[[noreturn]] void usage(const char* argv0, const std::string& error) {
  if (!error.empty())
    std::fprintf(stderr, "%s: %s\n", argv0, error.c_str());
  std::fprintf(stderr,
               "Usage: %s --url URL --token T --nodes N --duration S --broker-pid PID\n"
               "          [--interval-ms 5000] [--threads 1] [--connect-concurrency 256]\n"
               "          [--ramp-timeout 120] [--warmup 10]\n"
               "Opens N signed /node sessions to a running broker, heartbeats every interval\n"
               "(random phase), lets it settle for the warm-up after the ramp, then measures\n"
               "for S seconds: sessions held, heartbeat round-trip percentiles, broker RSS/CPU.\n",
               argv0);
  std::exit(error.empty() ? 0 : 2);
}

options parse_options(int argc, char** argv) {
  options o;
  auto int_of = [&](const std::string& name, const char* v, long lo, long hi) {
    char* end = nullptr;
    long x = std::strtol(v, &end, 10);
    if (!end || *end || x < lo || x > hi)
      usage(argv[0], name + " must be an integer in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
    return x;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h")
      usage(argv[0], "");
    if (i + 1 >= argc)
      usage(argv[0], "missing value for " + a);
    const char* v = argv[++i];
    if (a == "--url") o.url = v;
    else if (a == "--token") o.token = v;
    else if (a == "--nodes") o.nodes = static_cast<int>(int_of(a, v, 1, 1000000));
    else if (a == "--duration") o.duration_s = static_cast<int>(int_of(a, v, 1, 86400));
    else if (a == "--broker-pid") o.broker_pid = int_of(a, v, 0, 1L << 30);
    else if (a == "--interval-ms") o.interval_ms = static_cast<int>(int_of(a, v, 10, 3600000));
    else if (a == "--threads") o.threads = static_cast<int>(int_of(a, v, 1, 64));
    else if (a == "--connect-concurrency")
      o.connect_concurrency = static_cast<int>(int_of(a, v, 1, 100000));
    else if (a == "--ramp-timeout") o.ramp_timeout_s = static_cast<int>(int_of(a, v, 1, 86400));
    else if (a == "--warmup") o.warmup_s = static_cast<int>(int_of(a, v, 0, 3600));
    else usage(argv[0], "unknown option " + a);
  }
  // http://host:port/prefix  (ws:// accepted too; no TLS in this bench)
  std::string u = o.url;
  for (const char* scheme : {"http://", "ws://"})
    if (u.rfind(scheme, 0) == 0) {
      u = u.substr(std::strlen(scheme));
      break;
    }
  if (u.find("://") != std::string::npos)
    usage(argv[0], "only http:// and ws:// URLs are supported");
  auto slash = u.find('/');
  std::string hostport = u.substr(0, slash);
  o.path_prefix = slash == std::string::npos ? "" : u.substr(slash);
  while (!o.path_prefix.empty() && o.path_prefix.back() == '/')
    o.path_prefix.pop_back();
  auto colon = hostport.rfind(':');
  o.host = colon == std::string::npos ? hostport : hostport.substr(0, colon);
  o.port = colon == std::string::npos ? "80" : hostport.substr(colon + 1);
  if (o.host.empty())
    usage(argv[0], "bad --url " + o.url);
  return o;
}

std::string url_encode(const std::string& s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// ---- /proc readings ---------------------------------------------------------------------

struct proc_mem {
  double rss_mb = 0, hwm_mb = 0;
  long threads = 0;
};

proc_mem read_status(long pid) {
  proc_mem m;
  std::ifstream f(pid > 0 ? "/proc/" + std::to_string(pid) + "/status" : "/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    auto kb = [&] { return std::strtod(line.c_str() + line.find(':') + 1, nullptr) / 1024.0; };
    if (line.rfind("VmRSS:", 0) == 0) m.rss_mb = kb();
    else if (line.rfind("VmHWM:", 0) == 0) m.hwm_mb = kb();
    else if (line.rfind("Threads:", 0) == 0) m.threads = std::strtol(line.c_str() + 8, nullptr, 10);
  }
  return m;
}

// utime + stime of a process in seconds, or -1.
double cpu_seconds(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  if (rp == std::string::npos)
    return -1;
  std::istringstream in(s.substr(rp + 2));
  std::string field;
  unsigned long long ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {  // fields 14, 15: utime, stime
    if (i == 14) ut = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) st = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Per-thread scheduler figures of a process from /proc/<pid>/task/<tid>/schedstat:
// seconds on a CPU and seconds runnable but waiting for one (run-queue delay).
struct thread_time {
  std::string name;
  double cpu_s = 0, wait_s = 0;
};

std::map<long, thread_time> thread_times(long pid) {
  std::map<long, thread_time> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (auto* d = opendir(dir.c_str())) {
    while (auto* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      long tid = std::strtol(e->d_name, nullptr, 10);
      thread_time t;
      std::ifstream comm(dir + "/" + e->d_name + "/comm");
      std::getline(comm, t.name);
      std::ifstream ss(dir + "/" + e->d_name + "/schedstat");
      unsigned long long run_ns = 0, wait_ns = 0;
      ss >> run_ns >> wait_ns;
      t.cpu_s = run_ns / 1e9;
      t.wait_s = wait_ns / 1e9;
      out[tid] = t;
    }
    closedir(d);
  }
  return out;
}

// ---- shared statistics ---------------------------------------------------------------------

struct stats {
  std::mutex mu;
  std::vector<std::uint32_t> rtt_us;       // heartbeat round trips inside the window
  std::vector<std::uint32_t> connect_us;   // TCP connect -> SignalR handshake done
  std::map<std::string, long> failures;    // connect/handshake failures by reason
  std::map<std::string, long> drops;       // established sessions lost, by reason
  std::atomic<long> held{0}, connecting{0}, connects_ok{0}, reconnects{0};
  std::atomic<long> hb_sent{0}, hb_ok{0}, hb_error{0}, hb_skipped{0}, server_invocations{0};
  // Heartbeats sent inside the measurement window [window_start, window_end) and their fate.
  std::atomic<long> win_sent{0}, win_ok{0}, win_error{0}, closed{0};
  std::atomic<std::int64_t> window_start{INT64_MAX}, window_end{INT64_MAX};  // steady ns
  std::atomic<bool> stopping{false};
  bool in_window(steady::time_point t) const {
    auto ns = t.time_since_epoch().count();
    return ns >= window_start.load() && ns < window_end.load();
  }

  void failure(std::map<std::string, long>& m, const std::string& why) {
    std::lock_guard<std::mutex> lk(mu);
    ++m[why];
  }
};

std::string reason_of(const error_code& ec) {
  if (ec == websocket::error::upgrade_declined) return "upgrade declined (HTTP status != 101)";
  if (ec == beast::error::timeout) return "timeout";
  return ec.message();
}

// ---- one node session ------------------------------------------------------------------------

class worker;

class session : public std::enable_shared_from_this<session> {
 public:
  session(worker& w, int index);
  void connect();         // queued by the worker's ramp
  void close();           // graceful close at the end
  bool established() const { return ready_; }

 private:
  using ws_t = websocket::stream<beast::tcp_stream>;
  void on_connect(error_code ec, const tcp::endpoint&);
  void on_handshake(error_code ec);
  void do_read();
  void on_read(error_code ec, std::size_t);
  void handle_record(const std::string& rec);
  void send(std::string text);
  void do_write();
  void on_write(error_code ec, std::size_t);
  void schedule_heartbeat(std::chrono::milliseconds delay);
  void heartbeat();
  void fail(const std::string& why);
  void retry_later();

  worker& w_;
  const int index_;
  std::string node_id_;
  std::optional<ws_t> ws_;
  beast::flat_buffer buf_;
  std::string partial_;
  std::deque<std::string> out_;
  bool writing_ = false, hub_ready_ = false, ready_ = false, closing_ = false;
  std::uint64_t generation_ = 0;  // bumps on every (re)connect: stale handlers ignore
  asio::steady_timer hb_timer_, retry_timer_;
  std::uint64_t next_id_ = 0;
  std::deque<std::pair<std::uint64_t, steady::time_point>> pending_;  // heartbeats in flight
  steady::time_point connect_started_;
};

class worker {
 public:
  worker(const options& o, stats& s, tcp::resolver::results_type eps, unsigned seed)
      : opts(o), st(s), endpoints(std::move(eps)), rng(seed) {}

  const options& opts;
  stats& st;
  tcp::resolver::results_type endpoints;
  asio::io_context ioc{1};
  std::mt19937_64 rng;
  std::vector<std::shared_ptr<session>> sessions;
  std::deque<std::shared_ptr<session>> queue;  // waiting for a connect slot
  int in_flight = 0, max_in_flight = 1;
  std::thread thread;

  void enqueue(std::shared_ptr<session> s) {
    queue.push_back(std::move(s));
    pump();
  }
  void slot_done() {
    --in_flight;
    pump();
  }
  void pump() {
    while (in_flight < max_in_flight && !queue.empty() && !st.stopping) {
      auto s = std::move(queue.front());
      queue.pop_front();
      ++in_flight;
      s->connect();
    }
  }
  std::chrono::milliseconds jitter(int lo_ms, int hi_ms) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(lo_ms, hi_ms)(rng));
  }
};

session::session(worker& w, int index)
    : w_(w), index_(index), node_id_(spiderhub::core::new_guid()), hb_timer_(w.ioc),
      retry_timer_(w.ioc) {}

void session::connect() {
  ++generation_;
  hub_ready_ = ready_ = writing_ = false;
  out_.clear();
  pending_.clear();
  partial_.clear();
  buf_.clear();
  ws_.emplace(w_.ioc);
  connect_started_ = steady::now();
  ++w_.st.connecting;
  auto& tcp_layer = beast::get_lowest_layer(*ws_);
  tcp_layer.expires_after(std::chrono::seconds(20));
  tcp_layer.async_connect(w_.endpoints, [self = shared_from_this(), g = generation_](
                                            error_code ec, const tcp::endpoint& ep) {
    if (g == self->generation_) self->on_connect(ec, ep);
  });
}

void session::on_connect(error_code ec, const tcp::endpoint&) {
  if (ec) return fail("connect: " + reason_of(ec));
  auto& tcp_layer = beast::get_lowest_layer(*ws_);
  tcp_layer.socket().set_option(tcp::no_delay(true), ec);
  tcp_layer.expires_never();
  websocket::stream_base::timeout t = websocket::stream_base::timeout::suggested(beast::role_type::client);
  t.handshake_timeout = std::chrono::seconds(20);
  ws_->set_option(t);
  auto ts = static_cast<std::int64_t>(std::time(nullptr));
  std::string target = w_.opts.path_prefix + "/node?nodeId=" + node_id_ +
                       "&group=bench&ip=127.0.0.1&memory=4096&nodeType=1&os=" +
                       url_encode("Linux bench") + "&processorCount=2&ts=" + std::to_string(ts) +
                       "&sign=" + spiderhub::core::connection_sign(w_.opts.token, node_id_, ts);
  ws_->async_handshake(w_.opts.host + ":" + w_.opts.port, target,
                       [self = shared_from_this(), g = generation_](error_code e) {
                         if (g == self->generation_) self->on_handshake(e);
                       });
}

void session::on_handshake(error_code ec) {
  if (ec) return fail("websocket handshake: " + reason_of(ec));
  ws_->text(true);
  send(std::string("{\"protocol\":\"json\",\"version\":1}\x1e"));
  do_read();
}

void session::do_read() {
  ws_->async_read(buf_, [self = shared_from_this(), g = generation_](error_code ec, std::size_t n) {
    if (g == self->generation_) self->on_read(ec, n);
  });
}

void session::on_read(error_code ec, std::size_t) {
  if (ec) {
    std::string why = reason_of(ec);
    if (ec == websocket::error::closed) {
      auto r = ws_->reason();
      why = "closed by broker (" + std::to_string(r.code) + " " +
            std::string(r.reason.data(), r.reason.size()) + ")";
    }
    return fail(why);
  }
  auto data = buf_.cdata();
  partial_.append(static_cast<const char*>(data.data()), data.size());
  buf_.consume(buf_.size());
  std::size_t start = 0, pos;
  const auto g = generation_;
  while ((pos = partial_.find('\x1e', start)) != std::string::npos) {
    handle_record(partial_.substr(start, pos - start));
    if (g != generation_) return;  // the record failed the session
    start = pos + 1;
  }
  partial_.erase(0, start);
  do_read();
}

void session::handle_record(const std::string& rec) {
  auto& st = w_.st;
  if (!hub_ready_) {
    auto j = json::parse(rec, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.contains("error"))
      return fail("hub handshake refused: " + rec.substr(0, 200));
    hub_ready_ = ready_ = true;
    --st.connecting;
    ++st.held;
    ++st.connects_ok;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - connect_started_);
    {
      std::lock_guard<std::mutex> lk(st.mu);
      st.connect_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us.count(), UINT32_MAX)));
    }
    w_.slot_done();
    schedule_heartbeat(w_.jitter(0, w_.opts.interval_ms));  // random phase
    return;
  }
  // Cheap dispatch on the message type; only completions are parsed fully.
  if (rec.find("\"type\":3") != std::string::npos) {
    auto j = json::parse(rec, nullptr, false);
    if (j.is_discarded()) return fail("bad completion JSON");
    auto id_text = j.value("invocationId", std::string{});
    std::uint64_t id = std::strtoull(id_text.c_str(), nullptr, 10);
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](auto& p) { return p.first == id; });
    if (it == pending_.end()) return;
    auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - it->second);
    const bool counted = st.in_window(it->second);
    pending_.erase(it);
    if (j.contains("error")) {
      ++st.hb_error;
      if (counted) ++st.win_error;
      return;
    }
    ++st.hb_ok;
    if (counted) {
      ++st.win_ok;
      std::lock_guard<std::mutex> lk(st.mu);
      st.rtt_us.push_back(static_cast<std::uint32_t>(std::min<long long>(rtt.count(), UINT32_MAX)));
    }
  } else if (rec.find("\"type\":1") != std::string::npos) {
    ++st.server_invocations;  // Receive/Exit/RunApplication: not expected without runs
  } else if (rec.find("\"type\":7") != std::string::npos) {
    fail("SignalR close from broker: " + rec.substr(0, 200));
  }
  // type 6 (ping): nothing to do
}

void session::send(std::string text) {
  out_.push_back(std::move(text));
  if (!writing_) do_write();
}

void session::do_write() {
  writing_ = true;
  ws_->async_write(asio::buffer(out_.front()),
                   [self = shared_from_this(), g = generation_](error_code ec, std::size_t n) {
                     if (g == self->generation_) self->on_write(ec, n);
                   });
}

void session::on_write(error_code ec, std::size_t) {
  writing_ = false;
  out_.pop_front();
  if (ec) return fail("write: " + reason_of(ec));
  if (!out_.empty()) do_write();
}

void session::schedule_heartbeat(std::chrono::milliseconds delay) {
  hb_timer_.expires_after(delay);
  hb_timer_.async_wait([self = shared_from_this(), g = generation_](error_code ec) {
    if (!ec && g == self->generation_ && !self->closing_) self->heartbeat();
  });
}

void session::heartbeat() {
  auto& st = w_.st;
  schedule_heartbeat(std::chrono::milliseconds(w_.opts.interval_ms));
  if (pending_.size() >= 3 || out_.size() > 2) {  // the broker is far behind: don't pile up
    ++st.hb_skipped;
    return;
  }
  auto id = ++next_id_;
  auto now = steady::now();
  pending_.emplace_back(id, now);
  ++st.hb_sent;
  if (st.in_window(now)) ++st.win_sent;
  send("{\"type\":1,\"invocationId\":\"" + std::to_string(id) +
       "\",\"target\":\"Heartbeat\",\"arguments\":[{\"processCount\":0,\"cpu\":" +
       std::to_string(index_ % 100) + ",\"freeMemory\":2048,\"freeSlots\":0}]}\x1e");
}

void session::fail(const std::string& why) {
  auto& st = w_.st;
  ++generation_;  // every pending handler of this connection is now stale
  hb_timer_.cancel();
  if (ws_) {
    error_code ig;
    beast::get_lowest_layer(*ws_).socket().close(ig);
  }
  if (ready_) {
    ready_ = false;
    --st.held;
    if (!closing_) st.failure(st.drops, why);
  } else {
    --st.connecting;
    st.failure(st.failures, why);
    w_.slot_done();
  }
  if (!closing_ && !st.stopping) retry_later();
}

void session::retry_later() {
  ++w_.st.reconnects;
  retry_timer_.expires_after(w_.jitter(1000, 3000));
  retry_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec && !self->w_.st.stopping) self->w_.enqueue(self);
  });
}

void session::close() {
  closing_ = true;
  hb_timer_.cancel();
  retry_timer_.cancel();
  if (!ready_ || !ws_) return;
  ready_ = false;
  --w_.st.held;
  ++generation_;
  beast::get_lowest_layer(*ws_).expires_after(std::chrono::seconds(5));
  ws_->async_close(websocket::close_code::normal, [self = shared_from_this()](error_code) {
    error_code ig;
    beast::get_lowest_layer(*self->ws_).socket().close(ig);
    ++self->w_.st.closed;
  });
}

// ---- report ------------------------------------------------------------------------------------

double pct(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(std::min<double>(v.size() - 1, p / 100.0 * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k] / 1000.0;  // ms
}

void raise_fd_limit(long want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t target = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(want));
  if (rl.rlim_cur < target) {
    rl.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(want))
    std::fprintf(stderr, "bench: warning: open files limit %llu < %ld needed; raise ulimit -n\n",
                 static_cast<unsigned long long>(rl.rlim_cur), want);
}

}  // namespace

int main(int argc, char** argv) {
  auto o = parse_options(argc, argv);
  raise_fd_limit(o.nodes + 256);
  stats st;

  tcp::resolver::results_type endpoints;
  {
    asio::io_context tmp;
    tcp::resolver r(tmp);
    error_code ec;
    endpoints = r.resolve(o.host, o.port, ec);
    if (ec) {
      std::fprintf(stderr, "bench: cannot resolve %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                   ec.message().c_str());
      return 1;
    }
  }

  std::vector<std::unique_ptr<worker>> workers;
  for (int t = 0; t < o.threads; ++t) {
    workers.push_back(std::make_unique<worker>(o, st, endpoints, 0x5eed + t));
    workers.back()->max_in_flight = std::max(1, o.connect_concurrency / o.threads);
  }
  for (int i = 0; i < o.nodes; ++i) {
    auto& w = *workers[static_cast<std::size_t>(i % o.threads)];
    w.sessions.push_back(std::make_shared<session>(w, i));
  }
  std::printf("bench: %d node sessions -> %s/node, heartbeat every %d ms, %d io thread(s), "
              "%d connects in flight, broker pid %ld\n",
              o.nodes, o.url.c_str(), o.interval_ms, o.threads, o.connect_concurrency,
              o.broker_pid);
  std::fflush(stdout);
  auto t0 = steady::now();
  for (auto& w : workers) {
    asio::post(w->ioc, [wp = w.get()] {
      for (auto& s : wp->sessions) wp->queue.push_back(s);
      wp->pump();
    });
    w->thread = std::thread([wp = w.get()] {
      auto guard = asio::make_work_guard(wp->ioc);
      wp->ioc.run();
    });
  }

  auto secs = [](steady::duration d) { return std::chrono::duration<double>(d).count(); };
  auto broker = [&] { return o.broker_pid > 0 ? read_status(o.broker_pid) : proc_mem{}; };
  auto broker_rss0 = broker();

  // Ramp: until every session is established (or the ramp timeout).
  double ramp_s = 0, last_print = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    long held = st.held;
    ramp_s = secs(steady::now() - t0);
    if (ramp_s - last_print >= 2) {
      last_print = ramp_s;
      std::printf("ramp %5.1fs: held %ld/%d, connecting %ld, retries %ld, broker RSS %.0f MB\n",
                  ramp_s, held, o.nodes, st.connecting.load(), st.reconnects.load(),
                  broker().rss_mb);
      std::fflush(stdout);
    }
    if (held >= o.nodes || ramp_s >= o.ramp_timeout_s) break;
  }
  long held_after_ramp = st.held;
  std::printf("ramp done in %.1f s: %ld/%d held; warm-up %d s\n", ramp_s, held_after_ramp,
              o.nodes, o.warmup_s);
  std::fflush(stdout);
  for (int s = 0; s < o.warmup_s; ++s) std::this_thread::sleep_for(std::chrono::seconds(1));

  // Measurement window: heartbeats *sent* inside it are counted, whenever they complete.
  auto w0 = steady::now();
  st.window_start = w0.time_since_epoch().count();
  long drops0 = 0;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    for (auto& [k, v] : st.drops) drops0 += v;
  }
  double cpu0 = o.broker_pid > 0 ? cpu_seconds(o.broker_pid) : -1;
  auto threads0 = o.broker_pid > 0 ? thread_times(o.broker_pid) : std::map<long, thread_time>{};
  long min_held = st.held, max_held = st.held;
  long held_start = st.held;
  double peak_rss = broker().rss_mb;
  std::size_t rtt_seen = 0;
  long ok_seen = 0;
  auto last_tick = w0;
  for (int s = 1; s <= o.duration_s; ++s) {
    std::this_thread::sleep_until(w0 + std::chrono::seconds(s));
    long held = st.held;
    min_held = std::min(min_held, held);
    max_held = std::max(max_held, held);
    auto b = broker();
    peak_rss = std::max(peak_rss, b.rss_mb);
    if (s % 10 == 0 || s == o.duration_s) {
      std::vector<std::uint32_t> recent;
      {
        std::lock_guard<std::mutex> lk(st.mu);
        recent.assign(st.rtt_us.begin() + static_cast<long>(rtt_seen), st.rtt_us.end());
        rtt_seen = st.rtt_us.size();
      }
      auto now = steady::now();
      long ok_now = st.win_ok;
      std::printf("t+%3ds: held %ld, heartbeats %.0f/s, RTT since last line p50 %.2f ms "
                  "p99 %.2f ms, broker RSS %.0f MB\n",
                  s, held, (ok_now - ok_seen) / secs(now - last_tick), pct(recent, 50),
                  pct(recent, 99), b.rss_mb);
      std::fflush(stdout);
      ok_seen = ok_now;
      last_tick = now;
    }
  }
  auto w1 = steady::now();
  st.window_end = w1.time_since_epoch().count();
  double window_s = secs(w1 - w0);
  double cpu1 = o.broker_pid > 0 ? cpu_seconds(o.broker_pid) : -1;
  auto threads1 = o.broker_pid > 0 ? thread_times(o.broker_pid) : std::map<long, thread_time>{};
  auto broker_end = broker();
  long held_end = st.held;
  // Let heartbeats sent just before the end complete (or count as lost).
  for (int i = 0; i < 50; ++i) {
    if (st.win_ok + st.win_error >= st.win_sent) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  long sent = st.win_sent, ok = st.win_ok, err = st.win_error, skipped = st.hb_skipped;
  long drops = 0;
  std::map<std::string, long> failures, dropmap;
  std::vector<std::uint32_t> rtt, conn;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    for (auto& [k, v] : st.drops) drops += v;
    failures = st.failures;
    dropmap = st.drops;
    rtt = st.rtt_us;
    conn = st.connect_us;
  }
  drops -= drops0;

  // Graceful close: WebSocket close handshakes, at most ~6 s.
  st.stopping = true;
  long to_close = st.held;
  for (auto& w : workers)
    asio::post(w->ioc, [wp = w.get()] {
      for (auto& s : wp->sessions) s->close();
    });
  for (int i = 0; i < 60 && st.closed < to_close; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  long closed = st.closed;
  for (auto& w : workers) w->ioc.stop();
  for (auto& w : workers) w->thread.join();

  auto self_mem = read_status(0);
  std::string load;
  {
    std::ifstream f("/proc/loadavg");
    std::getline(f, load);
  }
  std::printf("\n==== many_nodes: %d sessions, %.0f s window after %d s warm-up, heartbeat every "
              "%d ms ====\n",
              o.nodes, window_s, o.warmup_s, o.interval_ms);
  std::printf("sessions held:    %ld/%d (%.2f%%) after the %.1f s ramp (%.0f sessions/s); "
              "window start %ld, min %ld, max %ld, end %ld (%.2f%%)\n",
              held_after_ramp, o.nodes, 100.0 * held_after_ramp / o.nodes, ramp_s,
              held_after_ramp / std::max(ramp_s, 1e-9), held_start, min_held, max_held, held_end,
              100.0 * held_end / o.nodes);
  std::printf("connect+handshake: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %zu connects "
              "(%d in flight); %ld reconnect attempts\n",
              pct(conn, 50), pct(conn, 99), pct(conn, 100), conn.size(), o.connect_concurrency,
              st.reconnects.load());
  for (auto& [k, v] : failures) std::printf("  connect failure x%ld: %s\n", v, k.c_str());
  std::printf("sessions dropped in the window: %ld (%.3f%% of sessions)\n", drops,
              100.0 * drops / o.nodes);
  for (auto& [k, v] : dropmap) std::printf("  drop x%ld: %s\n", v, k.c_str());
  std::printf("heartbeats:       %.1f/s answered (%.1f/s expected = held / interval); sent %ld, "
              "answered %ld (%.3f%%), errors %ld, unanswered %ld; skipped overall (3 in flight) %ld\n",
              ok / window_s, held_start * 1000.0 / o.interval_ms, sent, ok,
              sent ? 100.0 * ok / sent : 0.0, err, std::max(0L, sent - ok - err), skipped);
  std::printf("heartbeat RTT:    p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms "
              "(%zu samples; target p99 < 50 ms)\n",
              pct(rtt, 50), pct(rtt, 90), pct(rtt, 99), pct(rtt, 99.9), pct(rtt, 100), rtt.size());
  if (o.broker_pid > 0) {
    std::printf("broker:           RSS %.0f MB at the end (%.0f MB before the ramp, peak %.0f MB in "
                "the window, VmHWM %.0f MB), %.1f KB per held session; %ld threads; target < 500 MB\n",
                broker_end.rss_mb, broker_rss0.rss_mb, peak_rss, broker_end.hwm_mb,
                held_start > 0 ? (broker_end.rss_mb - broker_rss0.rss_mb) * 1024.0 / held_start : 0.0,
                broker_end.threads);
    if (cpu0 >= 0 && cpu1 >= 0)
      std::printf("broker CPU:       %.1f%% of one core over the window (%.1f us per answered "
                  "heartbeat)\n",
                  100.0 * (cpu1 - cpu0) / window_s, ok ? (cpu1 - cpu0) * 1e6 / ok : 0.0);
    // Busiest threads: CPU share and run-queue wait share of the window. A high wait share
    // means the thread was runnable but the machine had no CPU for it (other load).
    std::vector<std::tuple<double, double, std::string>> per_thread;
    double wait_total = 0;
    for (auto& [tid, t] : threads1) {
      auto it = threads0.find(tid);
      double cpu = t.cpu_s - (it == threads0.end() ? 0.0 : it->second.cpu_s);
      double wait = t.wait_s - (it == threads0.end() ? 0.0 : it->second.wait_s);
      wait_total += wait;
      if (cpu > 0.001 * window_s || wait > 0.001 * window_s)
        per_thread.emplace_back(cpu, wait, t.name + "/" + std::to_string(tid));
    }
    std::sort(per_thread.rbegin(), per_thread.rend());
    std::printf("broker threads:   (cpu%% / run-queue wait%% of the window)");
    for (std::size_t i = 0; i < per_thread.size() && i < 8; ++i)
      std::printf("  %s %.1f/%.1f", std::get<2>(per_thread[i]).c_str(),
                  100.0 * std::get<0>(per_thread[i]) / window_s,
                  100.0 * std::get<1>(per_thread[i]) / window_s);
    std::printf("\nbroker run-queue wait: %.1f ms per second of window over all threads\n",
                1000.0 * wait_total / window_s);
  }
  std::printf("bench process:    RSS %.0f MB, peak %.0f MB; %ld/%ld sessions closed gracefully\n",
              self_mem.rss_mb, self_mem.hwm_mb, closed, to_close);
  std::printf("machine:          %u cpus, load average %s\n", std::thread::hardware_concurrency(),
              load.c_str());
  return 0;
}
