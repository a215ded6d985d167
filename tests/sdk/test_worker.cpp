// The worker SDK against a scripted /worker hub: the pipeline (Poll prefetch, pushes in
// the background) must never ack a result before the Push of its children was answered.
#include <doctest/doctest.h>

#include "support/ports.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "net/http_server.hpp"
#include "protocol/json_codec.hpp"
#include "protocol/signalr.hpp"
#include "sdk/worker.hpp"

using namespace spiderhub;
namespace sr = protocol::signalr;
using json = nlohmann::json;

namespace {

constexpr const char* run_id = "run-1";

std::string child_of(std::int64_t result_id) {
  return "http://site.test/child/" + std::to_string(result_id);
}

// One parent result per id; its child request is child_of(id).
class one_child_spider : public sdk::spider {
public:
  std::vector<protocol::request> start_requests(const protocol::worker_run&) override {
    protocol::request r;
    r.url = "http://site.test/";
    return {r};
  }
  sdk::parse_result parse(const protocol::worker_run&, const protocol::result& r,
                          const std::string& body) override {
    sdk::parse_result out;
    protocol::request child;
    child.url = child_of(r.result_id);
    out.requests.push_back(child);
    out.items.push_back(json{{"url", r.url}, {"body", body}});
    return out;
  }
  void on_items(const protocol::worker_run&, const std::vector<json>& items) override {
    items_ += items.size();
  }
  std::atomic<std::size_t> items_{0};
};

// The broker side: serves `total` results through Poll, answers Push after a delay (so a
// wrong SDK would get to ack first), fails the Push that carries `fail_child` once, and
// sends Exit once every result was acked.
class scripted_hub {
public:
  explicit scripted_hub(std::int64_t total, std::int64_t fail_child)
    : total_(total), fail_child_(child_of(fail_child)) {
    net::server_options o;
    o.address = "127.0.0.1";
    net::server_callbacks cbs;
    cbs.on_ws_open = [this](net::ws_ptr ws) {
      auto splitter = std::make_shared<sr::record_splitter>(16 << 20);
      auto handshaken = std::make_shared<bool>(false);
      net::ws_handlers h;
      h.on_message = [this, ws, splitter, handshaken](std::string text) {
        for (auto& rec : splitter->feed(text)) {
          if (!*handshaken) {
            *handshaken = true;
            ws->send_text(sr::handshake_response());
            sr::invocation run;
            run.target = "Run";
            run.arguments =
              json::array({protocol::to_json(protocol::worker_run{"job-1", run_id, "{}"})});
            ws->send_text(sr::encode(run));
            continue;
          }
          auto msg = sr::parse_message(rec);
          if (auto* inv = std::get_if<sr::invocation>(&msg))
            on_invocation(ws, *inv);
        }
      };
      h.on_closed = [](std::string) {};
      return h;
    };
    server_ = std::make_unique<net::http_server>(o, cbs);
    port_ = server_->start();
  }

  ~scripted_hub() {
    std::vector<std::thread> delayed;
    {
      std::lock_guard<std::mutex> lk(mtx_);
      stopping_ = true; // from here on no Push answer thread is started
      delayed.swap(delayed_);
    }
    cv_.notify_all();
    for (auto& t : delayed)
      t.join();
    server_.reset(); // only after the threads that send on its connections are gone
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

  struct report {
    std::set<std::int64_t> acked;
    std::size_t acks = 0, pushes = 0, failed_pushes = 0;
    std::vector<std::string> violations; // acks that overtook their children's Push
    std::size_t polls_while_pushing = 0; // Polls that arrived with a Push unanswered
  };
  report snapshot() {
    std::lock_guard<std::mutex> lk(mtx_);
    return rep_;
  }

private:
  void complete(const net::ws_ptr& ws, const std::string& id, json result) {
    sr::completion c;
    c.invocation_id = id;
    c.result = std::move(result);
    ws->send_text(sr::encode(c));
  }

  void on_invocation(const net::ws_ptr& ws, const sr::invocation& inv) {
    if (!inv.invocation_id)
      return;
    const auto& id = *inv.invocation_id;
    std::unique_lock<std::mutex> lk(mtx_);
    if (inv.target == "Complete") {
      complete(ws, id, true);
    } else if (inv.target == "Poll") {
      if (pushes_unanswered_ > 0)
        ++rep_.polls_while_pushing;
      auto max = inv.arguments.at(1).get<std::int64_t>();
      json out = json::array();
      for (std::int64_t n = 0; n < max && next_ <= total_; ++n, ++next_) {
        protocol::result r;
        r.result_id = next_;
        r.url = "http://site.test/p/" + std::to_string(next_);
        r.request_hash = "h" + std::to_string(next_);
        r.status_code = 200;
        r.content = "page " + std::to_string(next_);
        out.push_back(protocol::to_json(r));
      }
      complete(ws, id, out);
    } else if (inv.target == "Push") {
      if (stopping_)
        return;
      ++rep_.pushes;
      std::vector<std::string> urls;
      for (auto& r : inv.arguments.at(1))
        urls.push_back(r.at("url").get<std::string>());
      bool fail = !failed_once_ && std::find(urls.begin(), urls.end(), fail_child_) != urls.end();
      ++pushes_unanswered_;
      // Answered 30 ms later from another thread, like a broker waiting for its storage.
      delayed_.emplace_back([this, ws, id, urls, fail] {
        std::unique_lock<std::mutex> lk(mtx_);
        cv_.wait_for(lk, std::chrono::milliseconds(30), [this] { return stopping_; });
        --pushes_unanswered_;
        sr::completion c;
        c.invocation_id = id;
        if (fail) {
          failed_once_ = true;
          ++rep_.failed_pushes;
          c.error = "requests not stored (storage failure)";
        } else {
          pushed_.insert(urls.begin(), urls.end());
          c.result = static_cast<std::int64_t>(urls.size());
        }
        ws->send_text(sr::encode(c));
      });
    } else if (inv.target == "Ack") {
      ++rep_.acks;
      for (auto& v : inv.arguments.at(1)) {
        auto rid = v.get<std::int64_t>();
        if (!pushed_.count(child_of(rid)))
          rep_.violations.push_back("result " + std::to_string(rid) +
                                    " acked before its child was stored");
        rep_.acked.insert(rid);
      }
      complete(ws, id, true);
      if (static_cast<std::int64_t>(rep_.acked.size()) == total_ && !exit_sent_) {
        exit_sent_ = true;
        sr::invocation exit;
        exit.target = "Exit";
        exit.arguments = json::array({run_id});
        ws->send_text(sr::encode(exit));
      }
    } else {
      sr::completion c;
      c.invocation_id = id;
      c.error = "unexpected " + inv.target;
      ws->send_text(sr::encode(c));
    }
  }

  std::int64_t total_;
  std::string fail_child_;
  std::unique_ptr<net::http_server> server_;
  std::uint16_t port_ = 0;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::int64_t next_ = 1; // next result id to hand out
  std::set<std::string> pushed_;
  int pushes_unanswered_ = 0;
  bool failed_once_ = false, exit_sent_ = false;
  std::vector<std::thread> delayed_;
  report rep_;
};

} // namespace

TEST_CASE("worker: pipelined Poll/Push/Ack never acks before the children are stored") {
  constexpr std::int64_t total = 1200;
  scripted_hub hub(total, 450); // the Push holding result 450's child fails once
  one_child_spider spider;
  sdk::worker_options o;
  o.broker = hub.url();
  o.full_class_name = "test.Spider";
  o.poll_max = 100;
  o.retry_initial = std::chrono::milliseconds(10);
  sdk::worker w(o, spider);
  w.start();
  REQUIRE(w.wait_runs_finished(1, std::chrono::seconds(20)));
  w.stop();
  auto rep = hub.snapshot();
  CHECK(rep.violations.empty());
  if (!rep.violations.empty())
    MESSAGE(rep.violations.front());
  CHECK(rep.acked.size() == total);
  CHECK(rep.failed_pushes == 1);
  // Pushes: the start request, one per batch of 100, and the failed one sent again.
  CHECK(rep.pushes == 1 + total / 100 + 1);
  CHECK(w.stats().retries >= 1);
  CHECK(spider.items_ == total);
  // The pipeline is real: the next Poll went out while a Push was still unanswered.
  CHECK(rep.polls_while_pushing >= total / 100 / 2);
}

using spiderhub::testing::unused_port;

TEST_CASE("worker: a comma-separated broker list goes round to the broker that answers") {
  constexpr std::int64_t total = 50;
  scripted_hub hub(total, 0);  // no Push fails (result ids start at 1)
  one_child_spider spider;
  sdk::worker_options o;
  o.broker = "http://127.0.0.1:" + std::to_string(unused_port()) + "/, " + hub.url();
  o.full_class_name = "test.Spider";
  o.retry_initial = std::chrono::milliseconds(10);
  sdk::worker w(o, spider);
  w.start();
  REQUIRE(w.wait_runs_finished(1, std::chrono::seconds(20)));
  w.stop();
  auto rep = hub.snapshot();
  CHECK(rep.acked.size() == total);
  CHECK(rep.violations.empty());
  CHECK(spider.items_ == total);
}

TEST_CASE("worker: a bad element of the broker list is refused at start") {
  one_child_spider spider;
  sdk::worker_options o;
  o.full_class_name = "test.Spider";
  o.broker = "http://127.0.0.1:1/,ftp://x/";
  sdk::worker w(o, spider);
  CHECK_THROWS_WITH_AS(w.start(),
                       "worker: broker: 'ftp://x/' is not an http://, https://, ws:// or wss:// "
                       "URL with a host",
                       core::input_error);
  o.broker = "http://127.0.0.1:1/,";
  sdk::worker w2(o, spider);
  CHECK_THROWS_WITH_AS(w2.start(), "worker: broker: element 2 of 'http://127.0.0.1:1/,' is empty",
                       core::input_error);
  CHECK_FALSE(w.connected());
}
