// net::hub_client against fake brokers on 127.0.0.1: several alternative URLs (brokers
// sharing one database, one active, the others standby answering 503), rotation and
// backoff. Every wait is bounded.
#include <doctest/doctest.h>

#include "support/ports.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "net/http_server.hpp"
#include "net/hub_client.hpp"
#include "protocol/signalr.hpp"

using namespace spiderhub;
using namespace std::chrono_literals;
namespace sr = protocol::signalr;
using steady = std::chrono::steady_clock;

namespace {

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  while (!pred()) {
    if (steady::now() > deadline)
      return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

using spiderhub::testing::unused_port;

// Upgrade requests seen by the fake brokers of one test, in arrival order.
class attempt_log {
 public:
  void add(const std::string& broker) {
    std::lock_guard<std::mutex> lk(mu_);
    attempts_.emplace_back(broker, steady::now());
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lk(mu_);
    return attempts_.size();
  }
  std::vector<std::pair<std::string, steady::time_point>> all() const {
    std::lock_guard<std::mutex> lk(mu_);
    return attempts_;
  }
  std::size_t count(const std::string& broker) const {
    std::lock_guard<std::mutex> lk(mu_);
    std::size_t n = 0;
    for (auto& a : attempts_)
      n += a.first == broker;
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, steady::time_point>> attempts_;
};

// A broker as hub clients see it. Active: accepts the WebSocket upgrade on any path,
// answers the SignalR handshake, and answers a "Who" invocation with its name. Standby:
// every HTTP request and upgrade gets 503 {"status":"standby","leader":...}.
class fake_broker {
 public:
  fake_broker(std::string name, bool active, attempt_log& log, std::uint16_t port = 0)
    : name_(std::move(name)), active_(active), log_(log) {
    net::server_options o;
    o.address = "127.0.0.1";
    o.port = port;
    o.stop_grace = 500ms;
    net::server_callbacks cbs;
    cbs.on_http = [this](net::http_request, std::shared_ptr<net::http_responder> r) {
      r->reply(active_ ? net::make_json_error(404, "not_found", "no such page") : standby());
    };
    cbs.on_upgrade = [this](const net::http_request&) -> std::optional<net::http_response> {
      log_.add(name_);
      if (!active_)
        return standby();
      return std::nullopt;
    };
    cbs.on_ws_open = [this](net::ws_ptr ws) {
      ++opened_;
      auto splitter = std::make_shared<sr::record_splitter>(1 << 20);
      auto handshaken = std::make_shared<bool>(false);
      net::ws_handlers h;
      h.on_message = [this, ws, splitter, handshaken](std::string text) {
        for (auto& rec : splitter->feed(text)) {
          if (!*handshaken) {
            *handshaken = true;
            ws->send_text(sr::handshake_response());
            continue;
          }
          auto msg = sr::parse_message(rec);
          auto* inv = std::get_if<sr::invocation>(&msg);
          if (inv && inv->invocation_id && inv->target == "Who") {
            sr::completion c;
            c.invocation_id = *inv->invocation_id;
            c.result = name_;
            ws->send_text(sr::encode(c));
          }
        }
      };
      h.on_closed = [](std::string) {};
      return h;
    };
    srv_ = std::make_unique<net::http_server>(o, cbs);
    port_ = srv_->start();
  }
  ~fake_broker() { srv_->stop(); }

  std::uint16_t port() const { return port_; }
  void set_active(bool a) { active_ = a; }
  int opened() const { return opened_; }

 private:
  static net::http_response standby() {
    net::http_response r;
    r.status = 503;
    r.body = R"({"status":"standby","leader":""})";
    return r;
  }

  std::string name_;
  std::atomic<bool> active_;
  attempt_log& log_;
  std::atomic<int> opened_{0};
  std::unique_ptr<net::http_server> srv_;
  std::uint16_t port_ = 0;
};

std::string hub_url(std::uint16_t port) {
  return "ws://127.0.0.1:" + std::to_string(port) + "/node?sign=s";
}

// Options for the alternatives `ports`, with a short reconnect_initial.
net::hub_client::options alternatives(std::vector<std::uint16_t> ports,
                                      std::chrono::milliseconds initial = 100ms,
                                      std::chrono::milliseconds max = 2000ms) {
  net::hub_client::options o;
  o.name = "test hub";
  o.url_count = ports.size();
  o.url_at = [ports](std::size_t i) { return hub_url(ports.at(i)); };
  o.reconnect_initial = initial;
  o.reconnect_max = max;
  return o;
}

// The name of the broker the client is connected to ("" when the call fails).
std::string who(net::hub_client& c) {
  auto p = std::make_shared<std::promise<std::string>>();
  auto f = p->get_future();
  c.invoke("Who", nlohmann::json::array(), [p](nlohmann::json result, std::string error) {
    p->set_value(error.empty() && result.is_string() ? result.get<std::string>() : "");
  });
  if (f.wait_for(3s) != std::future_status::ready)
    return "";
  return f.get();
}

long ms_between(steady::time_point a, steady::time_point b) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

} // namespace

TEST_CASE("hub_client: [dead, standby 503, active] connects to the active broker, then follows "
          "when it dies and another comes up") {
  attempt_log log;
  auto dead_port = unused_port();
  fake_broker standby("B", false, log);
  auto active = std::make_unique<fake_broker>("C", true, log);
  net::hub_client c(alternatives({dead_port, standby.port(), active->port()}));
  std::atomic<int> connects{0};
  c.on_connected([&] { ++connects; });
  auto t0 = steady::now();
  c.start();

  // One round: A refused, B 503, C accepted; about 2 * reconnect_initial (100 ms + jitter).
  REQUIRE(wait_until([&] { return c.connected(); }, 3000ms));
  auto took = ms_between(t0, steady::now());
  MESSAGE("connected after " << took << " ms");
  CHECK(took < 2500);
  CHECK(c.current_url() == 2);
  CHECK(who(c) == "C");
  CHECK(log.count("B") == 1);  // the standby was asked once on the way
  CHECK(active->opened() == 1);

  // C dies; A comes up only later, on the port that was dead: the client goes round the
  // list (the standby is asked again) until A answers.
  auto b_before = log.count("B");
  active.reset();
  REQUIRE(wait_until([&] { return !c.connected(); }, 3000ms));
  std::this_thread::sleep_for(700ms);
  CHECK_FALSE(c.connected());
  auto revived = std::make_unique<fake_broker>("A", true, log, dead_port);
  REQUIRE(wait_until([&] { return c.connected(); }, 5000ms));
  CHECK(c.current_url() == 0);
  CHECK(who(c) == "A");
  CHECK(log.count("B") > b_before);
  CHECK(connects == 2);

  // The standby takes over and A dies: after the drop the next alternative (B) comes first.
  standby.set_active(true);
  auto t1 = steady::now();
  revived.reset();
  REQUIRE(wait_until([&] { return c.connected() && c.current_url() == 1; }, 5000ms));
  CHECK(who(c) == "B");
  CHECK(ms_between(t1, steady::now()) < 2000);
  CHECK(connects == 3);
  c.stop();
}

TEST_CASE("hub_client: one round over the alternatives is quick, the backoff doubles per round") {
  attempt_log log;
  fake_broker x("X", false, log), y("Y", false, log), z("Z", false, log);
  net::hub_client c(alternatives({x.port(), y.port(), z.port()}, 100ms, 5000ms));
  auto t0 = steady::now();
  c.start();
  // Rounds of three: within a round 100-150 ms apart; after round 1 100-150 ms, after
  // round 2 200-300 ms. Doubling per attempt instead would put the 7th at 6.3 s or later.
  REQUIRE(wait_until([&] { return log.size() >= 7; }, 4000ms));
  c.stop();
  auto a = log.all();
  std::string order;
  for (std::size_t i = 0; i < 7; ++i)
    order += a[i].first;
  CHECK(order == "XYZXYZX");
  std::vector<long> gaps;
  for (std::size_t i = 1; i < 7; ++i)
    gaps.push_back(ms_between(a[i - 1].second, a[i].second));
  MESSAGE("first attempt after " << ms_between(t0, a[0].second) << " ms; gaps " << gaps[0] << " "
          << gaps[1] << " " << gaps[2] << " " << gaps[3] << " " << gaps[4] << " " << gaps[5]);
  for (std::size_t i : {0, 1, 3, 4}) {  // within a round: reconnect_initial, not doubled
    CHECK(gaps[i] >= 80);
    CHECK(gaps[i] < 700);
  }
  CHECK(gaps[2] >= 80);   // after round 1: the backoff, 100 ms
  CHECK(gaps[5] >= 180);  // after round 2: doubled, 200 ms (a round's gaps are 100-150)
  CHECK(ms_between(a[0].second, a[6].second) < 3000);
}

TEST_CASE("hub_client: a single URL keeps doubling the backoff per attempt") {
  attempt_log log;
  fake_broker s("S", false, log);
  net::hub_client::options o;
  o.name = "test hub";
  o.url = [port = s.port()] { return hub_url(port); };
  o.reconnect_initial = 50ms;
  o.reconnect_max = 5000ms;
  net::hub_client c(o);
  c.start();
  REQUIRE(wait_until([&] { return log.size() >= 4; }, 5000ms));
  c.stop();
  auto a = log.all();
  auto g1 = ms_between(a[0].second, a[1].second), g2 = ms_between(a[1].second, a[2].second),
       g3 = ms_between(a[2].second, a[3].second);
  MESSAGE("gaps " << g1 << " " << g2 << " " << g3);
  CHECK(g1 >= 40);   // 50 ms + jitter, as measured by the server
  CHECK(g2 >= 85);   // 100 ms
  CHECK(g3 >= 180);  // 200 ms
  CHECK(c.current_url() == 0);
}

TEST_CASE("hub_client: first_url picks the alternative tried first") {
  attempt_log log;
  fake_broker p("P", true, log), q("Q", true, log);
  auto o = alternatives({p.port(), q.port()});
  o.first_url = 1;
  net::hub_client c(o);
  c.start();
  REQUIRE(wait_until([&] { return c.connected(); }, 3000ms));
  CHECK(c.current_url() == 1);
  CHECK(who(c) == "Q");
  CHECK(log.count("P") == 0);
  c.stop();
}
