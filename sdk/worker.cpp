#include "sdk/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "core/digest.hpp"
#include "core/error.hpp"
#include "core/task_pool.hpp"
#include "core/url.hpp"
#include "net/hub_client.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"

namespace spiderhub::sdk {

namespace {

using json = nlohmann::json;

// How many ended run identities are remembered, so a Run that arrives again for an ended
// run (resent while we reconnected) is not started a second time. Identities are GUIDs
// (~40 bytes), so this bounds the memory at a few hundred KB.
constexpr std::size_t exited_memory = 4096;

// The broker's answer for a run it has finished or never had (block_dispatcher). Usually
// the run ended and its Exit got lost in a reconnect; but a broker that just restarted
// answers this too until it has restored its runs from storage, so the answer is only
// believed after it persisted this long (ms).
constexpr const char* unknown_run_marker = "unknown or finished run";
constexpr std::chrono::milliseconds unknown_run_grace{10000};

// Marks the SDK thread so stop() knows not to join itself.
thread_local const void* current_worker = nullptr;

} // namespace

struct worker::impl {
  enum class phase { fresh, pushing_start, completing, polling };

  /// One hub invocation in flight; filled by the completion on the hub's thread.
  struct call_state {
    bool done = false;
    std::string result;  // raw JSON text of the completion's result
    std::string error;
  };

  /// One hub call sent without waiting for it.
  struct pending_call {
    std::string args;       // JSON arguments, kept to send the call again if it fails
    std::size_t count = 0;  // requests pushed or results acked by it
    std::shared_ptr<call_state> call;  // null: not sent yet (Ack) or already answered (Push)
  };

  /// A parsed batch on its way out. Its Ack is sent only after every Push of its
  /// children succeeded, so a crash in between loses nothing (its results come again).
  struct flight {
    std::vector<pending_call> pushes;
    pending_call ack;  // args empty: nothing to ack
  };

  /// SDK-thread-only state of one active run.
  struct run_state {
    protocol::worker_run run;
    phase ph = phase::fresh;
    std::vector<protocol::request> start;  // start requests not yet pushed
    std::size_t next = 0;                  // index of the first unpushed start request
    // The next Poll, sent before the current batch is parsed so that the broker's answer
    // travels while this thread works (see poll_once).
    std::shared_ptr<call_state> prefetch;
    // Parsed batches whose children are being pushed or whose results are being acked,
    // oldest first (at most two between batches: see poll_once).
    std::deque<flight> flights;
  };

  /// Server-to-client call, queued by the hub thread for the SDK thread.
  struct event {
    bool is_run = false;
    protocol::worker_run run;  // for Run
    std::string identity;      // for Exit
  };

  worker_options opts;
  spider& sp;
  // Helpers of the SDK thread for parsing a batch (spiders that parse_concurrently);
  // made and joined by loop() on the SDK thread. Null: parse on the SDK thread alone.
  std::unique_ptr<core::task_pool> parse_pool;

  // Guards stopping, inbox, exited, st and started; every call_state too.
  mutable std::mutex mtx;
  std::condition_variable cv;  // inbox, completions, stop, finished runs
  bool stopping = false;
  std::deque<event> inbox;
  std::set<std::string> exited;           // ended identities (bounded, see exited_memory)
  std::deque<std::string> exited_order;   // insertion order, to forget the oldest
  worker_stats st;

  // The hub client pointer is replaced only by the SDK thread (and by stop() after the
  // SDK thread has been joined); other threads read it under client_mtx.
  mutable std::mutex client_mtx;
  std::unique_ptr<net::hub_client> client;

  std::mutex life_mtx;  // serialises start() and the joining part of stop()
  bool started = false; // under mtx
  std::thread thread;

  std::vector<std::string> brokers;  // opts.broker split (start())

  // SDK thread only.
  std::vector<std::unique_ptr<run_state>> active;
  std::size_t round_robin = 0;

  impl(worker_options o, spider& s) : opts(std::move(o)), sp(s) {
    opts.poll_max = std::max(opts.poll_max, 1);
    opts.poll_max_bytes = std::max<std::int64_t>(opts.poll_max_bytes, 1);
    opts.push_chunk = std::max<std::size_t>(opts.push_chunk, 1);
  }

  /// A hub client for the /worker hub; its URL (and so the sign) is rebuilt before every
  /// connect attempt because the broker only accepts signs a few minutes old.
  /// `first_url`: the broker (index into `brokers`) tried first.
  std::unique_ptr<net::hub_client> make_client(std::size_t first_url = 0) {
    net::hub_client::options ho;
    ho.url_count = brokers.size();
    ho.first_url = first_url;
    ho.url_at = [brokers = brokers, token = opts.token,
                 cls = opts.full_class_name](std::size_t index) {
      auto ts = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
      return core::hub_url(brokers.at(index), "/worker",
                           {{"fullClassName", cls},
                            {"ts", std::to_string(ts)},
                            {"sign", core::connection_sign(token, cls, ts)}});
    };
    ho.reconnect_max = opts.reconnect_max;
    ho.tls_verify = opts.tls_verify;
    ho.tls_ca_file = opts.tls_ca_file;
    ho.invoke_timeout = opts.invoke_timeout;
    ho.idle_timeout = opts.idle_timeout;
    ho.name = "worker " + opts.full_class_name;
    auto c = std::make_unique<net::hub_client>(std::move(ho));
    c->on("Run", [this](const json& args) { on_run(args); });
    c->on("Exit", [this](const json& args) { on_exit(args); });
    return c;
  }

  // ---- hub side (runs on the hub client's threads: never block here) -------------

  void on_run(const json& args) {
    protocol::worker_run run;
    try {
      if (!args.is_array() || args.empty())
        throw core::input_error("Run: expected one argument");
      run = protocol::decode<protocol::worker_run>(args[0], "Run.arguments[0]");
    } catch (const std::exception& e) {
      spdlog::error("worker: ignoring malformed Run: {}", e.what());
      return;
    }
    std::lock_guard<std::mutex> lk(mtx);
    if (stopping)
      return;
    if (exited.count(run.identity) != 0) {
      spdlog::debug("worker: Run for ended run {} ignored", run.identity);
      return;
    }
    inbox.push_back(event{true, std::move(run), {}});
    cv.notify_all();
  }

  void on_exit(const json& args) {
    if (!args.is_array() || args.empty() || !args[0].is_string()) {
      spdlog::error("worker: ignoring malformed Exit: {}", args.dump());
      return;
    }
    std::lock_guard<std::mutex> lk(mtx);
    remember_exit_locked(args[0].get<std::string>());
  }

  void remember_exit_locked(const std::string& identity) {
    if (exited.insert(identity).second) {
      exited_order.push_back(identity);
      if (exited_order.size() > exited_memory) {
        exited.erase(exited_order.front());
        exited_order.pop_front();
      }
      inbox.push_back(event{false, {}, identity});
    }
    cv.notify_all();
  }

  // ---- SDK thread ---------------------------------------------------------------

  /// True when waiting on behalf of `identity` should stop (run ended or stop()).
  bool abandoned_locked(const std::string& identity) const {
    return stopping || exited.count(identity) != 0;
  }

  void restart_client() {
    std::unique_ptr<net::hub_client> old;
    {
      std::lock_guard<std::mutex> lk(client_mtx);
      old = std::move(client);
    }
    // The same broker first: a timeout does not mean that it stopped being the active one.
    auto first = old ? old->current_url() : 0;
    old.reset();  // stops it: pending completions fail on this thread (mtx is not held)
    auto fresh = make_client(first);
    fresh->start();
    std::lock_guard<std::mutex> lk(client_mtx);
    client = std::move(fresh);
  }

  /// call_raw() with a parsed result.
  std::optional<json> call(const std::string& identity, const std::string& target,
                           const json& args) {
    auto raw = call_raw(identity, target,
                        args.dump(-1, ' ', false, json::error_handler_t::replace));
    if (!raw)
      return std::nullopt;
    if (raw->empty())
      return json();
    auto parsed = json::parse(*raw, nullptr, false);
    if (parsed.is_discarded()) {
      spdlog::error("worker: run {}: {} answered with invalid JSON", identity, target);
      return json();
    }
    return parsed;
  }

  /// Sends one invocation; its call_state is filled when the completion arrives.
  std::shared_ptr<call_state> send_call(const std::string& target, const std::string& args) {
    auto state = std::make_shared<call_state>();
    // The completion may run right here ("not connected"), so mtx must not be held.
    client->invoke_raw(target, args, [this, state](std::string result, std::string error) {
      {
        std::lock_guard<std::mutex> lk(mtx);
        state->done = true;
        state->result = std::move(result);
        state->error = std::move(error);
      }
      cv.notify_all();
    });
    return state;
  }

  /// Invokes `target` until it succeeds; nullopt when the run ended or stop() was called
  /// first. Blocks the SDK thread. The result comes back as raw JSON text. `sent` is a
  /// first attempt already sent with send_call (pipelined calls): it is awaited instead of
  /// sending one, and retried like any other when it failed.
  std::optional<std::string> call_raw(const std::string& identity, const std::string& target,
                                      const std::string& args,
                                      std::shared_ptr<call_state> sent = nullptr) {
    auto delay = opts.retry_initial;
    std::uint64_t failures = 0;
    std::optional<std::chrono::steady_clock::time_point> unknown_since;
    for (;;) {
      auto state = std::exchange(sent, nullptr);
      if (!state) {
        {
          std::lock_guard<std::mutex> lk(mtx);
          if (abandoned_locked(identity))
            return std::nullopt;
        }
        state = send_call(target, args);
      }
      std::string error;
      {
        std::unique_lock<std::mutex> lk(mtx);
        cv.wait(lk, [&] { return state->done || abandoned_locked(identity); });
        if (!state->done)
          return std::nullopt;  // the late completion only touches `state`, kept alive by it
        if (state->error.empty()) {
          if (failures > 0)
            spdlog::info("worker: run {}: {} succeeded after {} retries", identity, target,
                         failures);
          return std::move(state->result);
        }
        error = state->error;
      }
      if (error.find(unknown_run_marker) != std::string::npos) {
        auto now = std::chrono::steady_clock::now();
        if (!unknown_since)
          unknown_since = now;
        if (now - *unknown_since >= unknown_run_grace) {
          spdlog::warn("worker: run {}: {} refused for {} ms ({}); ending the run here", identity,
                       target, unknown_run_grace.count(), error);
          // Not remembered as exited: if the broker does know the run after all, its next
          // Run starts it again.
          std::lock_guard<std::mutex> lk(mtx);
          inbox.push_back(event{false, {}, identity});
          cv.notify_all();
          return std::nullopt;
        }
      }
      ++failures;
      if (failures == 1)
        spdlog::warn("worker: run {}: {} failed ({}); retrying", identity, target, error);
      else
        spdlog::debug("worker: run {}: {} failed again ({})", identity, target, error);
      if (error == "timeout") {
        // The broker may have answered into the void: a Poll's results then count as
        // delivered on this connection and would not come again until a new connection
        // polls, so reconnect to have every unacked result redelivered.
        spdlog::warn("worker: {} timed out after {} ms; reconnecting", target,
                     opts.invoke_timeout.count());
        restart_client();
      }
      std::unique_lock<std::mutex> lk(mtx);
      ++st.retries;
      if (cv.wait_for(lk, delay, [&] { return abandoned_locked(identity); }))
        return std::nullopt;
      delay = std::min(delay * 2, opts.retry_max);
    }
  }

  /// JSON arguments of a Push of requests [begin, end).
  static std::string push_args(const std::string& identity,
                               const std::vector<protocol::request>& reqs, std::size_t begin,
                               std::size_t end) {
    std::string out = "[";
    protocol::fast::append_json_string(out, identity);
    out += ",[";
    for (auto i = begin; i < end; ++i) {
      if (i > begin)
        out += ',';
      protocol::fast::append_json(out, reqs[i]);
    }
    out += "]]";
    return out;
  }

  /// Counts a Push that succeeded; its answer is the number of requests new to the broker.
  void count_push(std::size_t pushed, const std::string& answer) {
    std::int64_t accepted = 0;
    auto parsed = json::parse(answer, nullptr, false);
    if (parsed.is_number_integer())
      accepted = std::max<std::int64_t>(parsed.get<std::int64_t>(), 0);
    std::lock_guard<std::mutex> lk(mtx);
    st.pushed += pushed;
    st.accepted += static_cast<std::uint64_t>(accepted);
  }

  /// Pushes requests [begin, end) and waits for the answer; false when abandoned.
  bool push(const protocol::worker_run& run, const std::vector<protocol::request>& reqs,
            std::size_t begin, std::size_t end) {
    auto raw = call_raw(run.identity, "Push", push_args(run.identity, reqs, begin, end));
    if (!raw)
      return false;
    count_push(end - begin, *raw);
    return true;
  }

  /// One Poll batch: parse, items, then children pushed and results acked in the
  /// background (flights). False when the poll was empty and nothing was in flight.
  bool poll_once(run_state& rs) {
    const auto& id = rs.run.identity;
    // A long Poll (waitMs) only while this is the one run: the thread waits on its answer.
    const bool long_poll = opts.poll_wait.count() > 0 && active.size() == 1;
    const auto poll_args =
      json::array({id, opts.poll_max, long_poll ? opts.poll_wait.count() : 0,
                   opts.poll_max_bytes})
        .dump();
    auto raw = call_raw(id, "Poll", poll_args, std::exchange(rs.prefetch, nullptr));
    if (!raw)
      return true;  // abandoned: let the loop apply the Exit/stop now
    std::vector<protocol::result> results;
    std::vector<std::int64_t> ack_ids;
    try {
      // Fast path: the whole batch decoded without a DOM.
      results = protocol::fast::parse_results(*raw);
      for (auto& r : results)
        ack_ids.push_back(r.result_id);
    } catch (const std::exception&) {
      results.clear();
      auto res = json::parse(*raw, nullptr, false);
      if (!res.is_array()) {
        spdlog::error("worker: run {}: Poll answered a non-array: {}", id, raw->substr(0, 200));
        return false;
      }
      for (std::size_t i = 0; i < res.size(); ++i) {
        const auto& j = res[i];
        try {
          results.push_back(
            protocol::decode<protocol::result>(j, "Poll[" + std::to_string(i) + "]"));
          ack_ids.push_back(results.back().result_id);
        } catch (const std::exception& e) {
          // A result we cannot read would otherwise stay unacked forever and keep the run
          // from finishing; ack it when it at least has an id.
          spdlog::error("worker: run {}: dropping unreadable result: {}", id, e.what());
          if (j.is_object() && j.contains("resultId") && j["resultId"].is_number_integer())
            ack_ids.push_back(j["resultId"].get<std::int64_t>());
        }
      }
    }
    if (results.empty() && ack_ids.empty()) {
      // Nothing new: land what is on its way out before idling (the last acks are what
      // lets the broker end the run).
      if (rs.flights.empty())
        return false;
      land_flights(rs, 0);
      return true;
    }
    // The broker's cursor already points past this batch, so the next Poll can travel
    // while this one is parsed, pushed and acked.
    rs.prefetch = send_call("Poll", poll_args);

    std::vector<parse_result> parsed(results.size());
    auto parse_one = [&](std::size_t i) {
      const auto& r = results[i];
      std::string body;
      try {
        body = protocol::result_body(r);
      } catch (const std::exception& e) {
        spdlog::warn("worker: run {}: result {} ({}) has an undecodable body: {}", id,
                     r.result_id, r.url, e.what());
      }
      try {
        parsed[i] = sp.parse(rs.run, r, body);
      } catch (const std::exception& e) {
        spdlog::error("worker: run {}: parse of {} failed: {}", id, r.url, e.what());
      } catch (...) {
        spdlog::error("worker: run {}: parse of {} failed", id, r.url);
      }
    };
    if (parse_pool && sp.parse_concurrently())
      parse_pool->run(results.size(), parse_one);
    else
      for (std::size_t i = 0; i < results.size(); ++i)
        parse_one(i);
    parse_result all;
    for (auto& pr : parsed) {  // in result order, whichever thread parsed what
      std::move(pr.requests.begin(), pr.requests.end(), std::back_inserter(all.requests));
      std::move(pr.items.begin(), pr.items.end(), std::back_inserter(all.items));
    }
    {
      std::lock_guard<std::mutex> lk(mtx);
      st.results += results.size();
    }

    // Items are written before their results are acked: a crash in between repeats
    // items, it never loses them.
    if (!all.items.empty()) {
      try {
        sp.on_items(rs.run, all.items);
      } catch (const std::exception& e) {
        spdlog::error("worker: run {}: on_items failed: {}", id, e.what());
      }
      std::lock_guard<std::mutex> lk(mtx);
      st.items += all.items.size();
    }
    // Pipeline: this batch's children go out now, the previous batch's pushes are awaited
    // and its Ack sent, the Ack of the one before is awaited. So this thread parses while
    // the broker stores, and every Ack still follows the pushes of its batch.
    flight f;
    for (std::size_t i = 0; i < all.requests.size(); i += opts.push_chunk) {
      auto end = std::min(all.requests.size(), i + opts.push_chunk);
      pending_call p;
      p.args = push_args(id, all.requests, i, end);
      p.count = end - i;
      p.call = send_call("Push", p.args);
      f.pushes.push_back(std::move(p));
    }
    if (!ack_ids.empty()) {
      f.ack.args = json::array({id, ack_ids}).dump();
      f.ack.count = ack_ids.size();
    }
    rs.flights.push_back(std::move(f));
    land_flights(rs, 2);
    return true;
  }

  /// Waits until every Push of `f` succeeded (sending failed ones again), then sends its
  /// Ack. False when the run was abandoned.
  bool send_ack(const std::string& identity, flight& f) {
    for (auto& p : f.pushes) {
      if (!p.call)
        continue;
      auto raw = call_raw(identity, "Push", p.args, p.call);
      if (!raw)
        return false;
      p.call.reset();
      count_push(p.count, *raw);
    }
    if (!f.ack.args.empty() && !f.ack.call)
      f.ack.call = send_call("Ack", f.ack.args);
    return true;
  }

  /// Moves the run's flights on, oldest first: those beyond the newest `keep` land (Ack
  /// confirmed, then dropped); every other flight but the newest gets its Ack sent. Stops
  /// early when the run was abandoned (the loop then applies the Exit/stop).
  void land_flights(run_state& rs, std::size_t keep) {
    const auto& id = rs.run.identity;
    while (rs.flights.size() > keep) {
      auto& f = rs.flights.front();
      if (!send_ack(id, f))
        return;
      if (f.ack.call) {
        if (!call_raw(id, "Ack", f.ack.args, f.ack.call))
          return;
        std::lock_guard<std::mutex> lk(mtx);
        st.acked += f.ack.count;
      }
      rs.flights.pop_front();
    }
    for (std::size_t k = 0; k + 1 < rs.flights.size(); ++k)
      if (!send_ack(id, rs.flights[k]))
        return;
  }

  /// Advances one run by one unit of work; false when it had nothing to do (idle poll).
  bool step(run_state& rs) {
    switch (rs.ph) {
      case phase::fresh:
        try {
          rs.start = sp.start_requests(rs.run);
        } catch (const std::exception& e) {
          // Completing with no requests lets the broker end the run instead of leaving
          // it open forever.
          spdlog::error("worker: run {}: start_requests failed, completing it empty: {}",
                        rs.run.identity, e.what());
          rs.start.clear();
        }
        spdlog::info("worker: run {}: {} start requests", rs.run.identity, rs.start.size());
        rs.ph = phase::pushing_start;
        return true;
      case phase::pushing_start:
        if (rs.next < rs.start.size()) {
          auto end = std::min(rs.start.size(), rs.next + opts.push_chunk);
          if (push(rs.run, rs.start, rs.next, end))
            rs.next = end;
          return true;
        }
        rs.start = {};  // release the memory of large seed lists
        rs.ph = phase::completing;
        return true;
      case phase::completing:
        if (call(rs.run.identity, "Complete", json::array({rs.run.identity})))
          rs.ph = phase::polling;
        return true;
      case phase::polling:
        return poll_once(rs);
    }
    return false;
  }

  void apply(event& ev) {
    auto it = std::find_if(active.begin(), active.end(), [&](const auto& r) {
      return r->run.identity == (ev.is_run ? ev.run.identity : ev.identity);
    });
    if (ev.is_run) {
      if (it != active.end()) {
        spdlog::debug("worker: duplicate Run for active run {} ignored", ev.run.identity);
        return;
      }
      spdlog::info("worker: run {} of job {} started", ev.run.identity, ev.run.job_id);
      auto rs = std::make_unique<run_state>();
      rs->run = std::move(ev.run);
      active.push_back(std::move(rs));
      std::lock_guard<std::mutex> lk(mtx);
      ++st.runs;
      return;
    }
    if (it == active.end()) {
      spdlog::debug("worker: Exit for unknown run {} ignored", ev.identity);
      return;
    }
    auto rs = std::move(*it);
    active.erase(it);
    spdlog::info("worker: run {} of job {} finished", rs->run.identity, rs->run.job_id);
    try {
      sp.on_run_finished(rs->run);
    } catch (const std::exception& e) {
      spdlog::error("worker: run {}: on_run_finished failed: {}", rs->run.identity, e.what());
    }
    {
      std::lock_guard<std::mutex> lk(mtx);
      ++st.runs_finished;
    }
    cv.notify_all();
  }

  void loop() {
    current_worker = this;
    unsigned threads = opts.parse_threads;
    if (threads == 0)
      threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
    if (threads > 1 && sp.parse_concurrently())
      parse_pool = std::make_unique<core::task_pool>(threads - 1, [this] {
        current_worker = this;  // a parse callback calling stop() must not join
      });
    for (;;) {
      std::deque<event> events;
      {
        std::lock_guard<std::mutex> lk(mtx);
        if (stopping)
          break;
        events.swap(inbox);
      }
      for (auto& ev : events)
        apply(ev);
      bool busy = false;
      const auto n = active.size();
      for (std::size_t k = 0; k < n; ++k) {
        {
          std::lock_guard<std::mutex> lk(mtx);
          if (stopping)
            break;
        }
        try {
          busy = step(*active[(round_robin + k) % n]) || busy;
        } catch (const std::exception& e) {
          // Only our own bugs get here (spider exceptions are caught closer); keep the
          // thread alive and try again after the idle sleep.
          spdlog::error("worker: unexpected error: {}", e.what());
        }
      }
      round_robin = n == 0 ? 0 : (round_robin + 1) % n;
      if (!busy) {
        std::unique_lock<std::mutex> lk(mtx);
        cv.wait_for(lk, opts.poll_idle, [&] { return stopping || !inbox.empty(); });
      }
    }
    parse_pool.reset();
    current_worker = nullptr;
  }
};

worker::worker(worker_options o, spider& s) : impl_(std::make_unique<impl>(std::move(o), s)) {}

worker::~worker() { stop(); }

void worker::start() {
  auto& d = *impl_;
  if (d.opts.full_class_name.empty())
    throw core::input_error("worker: full_class_name is empty");
  auto brokers = core::parse_broker_urls(d.opts.broker, "worker: broker");
  std::lock_guard<std::mutex> life(d.life_mtx);
  {
    std::lock_guard<std::mutex> lk(d.mtx);
    if (d.started || d.stopping)
      return;  // a stopped worker stays stopped
    d.started = true;
  }
  d.brokers = std::move(brokers);
  auto c = d.make_client();
  c->start();
  {
    std::lock_guard<std::mutex> lk(d.client_mtx);
    d.client = std::move(c);
  }
  d.thread = std::thread([&d] { d.loop(); });
}

void worker::stop() {
  auto& d = *impl_;
  {
    std::lock_guard<std::mutex> lk(d.mtx);
    d.stopping = true;
  }
  d.cv.notify_all();
  if (current_worker == &d)
    return;  // called from a spider callback: the thread ends after this step
  std::lock_guard<std::mutex> life(d.life_mtx);
  if (d.thread.joinable())
    d.thread.join();
  std::unique_ptr<net::hub_client> c;
  {
    std::lock_guard<std::mutex> lk(d.client_mtx);
    c = std::move(d.client);
  }
  c.reset();  // stops the hub client; no callback of it runs after this
}

bool worker::wait_runs_finished(std::size_t runs, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  std::unique_lock<std::mutex> lk(d.mtx);
  d.cv.wait_for(lk, timeout, [&] { return d.stopping || d.st.runs_finished >= runs; });
  return d.st.runs_finished >= runs;
}

worker_stats worker::stats() const {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  return impl_->st;
}

bool worker::connected() const {
  std::lock_guard<std::mutex> lk(impl_->client_mtx);
  return impl_->client && impl_->client->connected();
}

} // namespace spiderhub::sdk
