#include "actors/dispatch/host_queues.hpp"

#include <algorithm>
#include <cmath>

namespace spiderhub::actors {

const char* to_string(robots_state s) {
  switch (s) {
    case robots_state::unknown: return "unknown";
    case robots_state::fetching: return "fetching";
    case robots_state::ready: return "ready";
    case robots_state::unreachable: return "unreachable";
    case robots_state::gave_up: return "gave_up";
  }
  return "?";
}

struct host_queues::origin_entry {
  std::string origin;
  key_entry* key = nullptr;
  robots_state state = robots_state::unknown;
  core::robots_rules rules;
  std::int64_t expires_ms = 0;     // ready: fetch again after this
  std::int64_t retry_at_ms = 0;    // unreachable: fetch again at this time
  int failures = 0;                // consecutive unreachable answers
  bool wanted = false;             // listed in key->robots_wanted
  std::string last_error;
  std::deque<queued_request> held; // waiting for the rules
};

struct host_queues::key_entry {
  std::string key;
  std::deque<queued_request> pending;
  std::deque<origin_entry*> robots_wanted;  // origins to fetch robots.txt for
  int in_flight = 0;                // slots of leased blocks
  int blocks = 0;                   // leased blocks
  std::int64_t next_start_ms = 0;   // delay: no block starts before
  std::int64_t paused_until_ms = 0; // Retry-After or error backoff
  std::int64_t crawl_delay_ms = 0;  // largest Crawl-delay of its origins
  // Adaptive concurrency: slow start (doubling) until latency rises or errors come, then
  // one more per healthy round, a quarter less when latency climbs, half on errors.
  int concurrency = 1;
  bool slow_start = true;
  int round_results = 0;
  double round_latency_sum = 0;
  int round_errors = 0;
  double base_latency_ms = -1;      // lowest round mean seen: the unloaded response time
  double latency_ewma_ms = 0;
  int error_streak = 0;
  std::int64_t backoff_ms = 0;
  // Where the key sits: 0 nowhere, 1 ready_, 2 timers_ (timer_at says when).
  int where = 0;
  std::int64_t timer_at = 0;
  // Counters.
  std::int64_t done = 0, errors = 0, skipped = 0, deferred = 0;
  std::map<std::string, std::int64_t> errors_by_kind;
  std::int64_t held = 0;            // requests held by its origins
};

host_queues::host_queues(host_queue_options opts) : opts_(std::move(opts)) {
  opts_.budget.max_concurrency = std::max(1, opts_.budget.max_concurrency);
  opts_.thread_num = std::max(1, opts_.thread_num);
  opts_.block_size = std::max(1, opts_.block_size);
  opts_.robots_max_attempts = std::max(1, opts_.robots_max_attempts);
}

host_queues::~host_queues() = default;

std::string host_queues::key_of(const std::string& url) const {
  auto k = core::politeness_key(url, opts_.key_kind);
  if (!k.empty())
    return k;
  if (opts_.key_kind == core::politeness_key_kind::ip) {
    if (auto host = core::url_host(url); !host.empty()) {
      auto it = host_keys_.find(host);
      if (it == host_keys_.end())
        return {};
      return it->second.empty() ? core::politeness_key(url, core::politeness_key_kind::host)
                                : it->second;
    }
  }
  return "invalid";
}

std::vector<std::string> host_queues::take_unresolved() {
  std::vector<std::string> out;
  out.swap(to_resolve_);
  return out;
}

void host_queues::resolved(const std::string& host, const std::string& address,
                           std::int64_t now, settled& out) {
  auto it = unresolved_.find(host);
  if (it == unresolved_.end())
    return;
  host_keys_[host] = address.empty() ? std::string() : core::ip_key(address);
  auto held = std::move(it->second);
  unresolved_.erase(it);
  auto n = static_cast<std::int64_t>(held.size());
  unresolved_count_ -= n;
  waiting_ -= n;  // push counts them again
  for (auto& r : held)
    push(std::move(r), now, out);
}

host_queues::key_entry& host_queues::key_for(const std::string& key) {
  auto& slot = keys_[key];
  if (!slot) {
    slot = std::make_unique<key_entry>();
    slot->key = key;
    slot->concurrency = opts_.budget.adaptive ? std::min(2, opts_.budget.max_concurrency)
                                              : opts_.budget.max_concurrency;
  }
  return *slot;
}

host_queues::origin_entry& host_queues::origin_for(const std::string& origin, key_entry& k) {
  auto& slot = origins_[origin];
  if (!slot) {
    slot = std::make_unique<origin_entry>();
    slot->origin = origin;
    slot->key = &k;
  }
  return *slot;
}

int host_queues::limit(const key_entry& k) const {
  return std::clamp(k.concurrency, 1, opts_.budget.max_concurrency);
}

std::int64_t host_queues::delay(const key_entry& k) const {
  auto d = std::max(opts_.budget.delay_ms, k.crawl_delay_ms);
  return std::min(d, opts_.budget.max_delay_ms);
}

bool host_queues::may_start(const key_entry& k, std::int64_t now, std::int64_t* wake) const {
  *wake = 0;
  if (k.pending.empty() && k.robots_wanted.empty())
    return false;
  if (k.in_flight >= limit(k))
    return false;  // release() places it again
  if (delay(k) > 0 && k.blocks > 0)
    return false;  // one block at a time: its node spaces the starts
  std::int64_t at = std::max(k.paused_until_ms, delay(k) > 0 ? k.next_start_ms : 0);
  if (at > now) {
    *wake = at;
    return false;
  }
  return true;
}

void host_queues::place(key_entry& k, std::int64_t now) {
  std::int64_t wake = 0;
  if (may_start(k, now, &wake)) {
    if (k.where != 1) {
      k.where = 1;
      ready_.push_back(&k);
    }
  } else if (wake > 0) {
    if (k.where != 2 || k.timer_at != wake) {
      k.where = 2;  // an older timer entry of k is skipped when popped (timer_at differs)
      k.timer_at = wake;
      timers_.push({wake, &k});
    }
  } else {
    k.where = 0;
  }
}

void host_queues::push(queued_request r, std::int64_t now, settled& out) {
  auto key = key_of(r.url);
  ++waiting_;
  if (key.empty()) {
    auto host = core::url_host(r.url);
    auto& list = unresolved_[host];
    if (list.empty())
      to_resolve_.push_back(host);
    list.push_back(std::move(r));
    ++unresolved_count_;
    return;
  }
  auto& k = key_for(key);
  if (!opts_.budget.robots || k.key == "invalid") {
    k.pending.push_back(std::move(r));
    place(k, now);
    return;
  }
  auto& o = origin_for(core::robots_base(r.url), k);
  if (o.state == robots_state::ready) {
    if (o.rules.allowed(core::url_path_and_query(r.url))) {
      k.pending.push_back(std::move(r));
    } else {
      --waiting_;
      ++k.skipped;
      out.skipped.push_back(std::move(r));
    }
    if (now >= o.expires_ms && !o.wanted) {
      // Stale rules keep working while the file is fetched again.
      o.wanted = true;
      k.robots_wanted.push_back(&o);
    }
  } else if (o.state == robots_state::gave_up) {
    --waiting_;
    ++k.errors;
    ++k.errors_by_kind["robots"];
    out.failed.emplace_back(std::move(r), "robots.txt of " + o.origin +
                                              " unreachable: " + o.last_error);
  } else {
    o.held.push_back(std::move(r));
    ++k.held;
    if (o.state == robots_state::unknown && !o.wanted) {
      o.wanted = true;
      k.robots_wanted.push_back(&o);
    }
  }
  place(k, now);
}

void host_queues::requeue(const std::string& key, std::vector<queued_request> rs,
                          std::int64_t now) {
  auto& k = key_for(key);
  waiting_ += static_cast<std::int64_t>(rs.size());
  for (auto it = rs.rbegin(); it != rs.rend(); ++it)
    k.pending.push_front(std::move(*it));
  place(k, now);
}

std::optional<host_queues::grant> host_queues::next(std::int64_t now, grant_limits limits) {
  while (!timers_.empty() && timers_.top().first <= now) {
    auto [at, k] = timers_.top();
    timers_.pop();
    if (k->where == 2 && k->timer_at == at) {
      k->where = 0;
      place(*k, now);
    }
  }
  while (!ready_.empty()) {
    key_entry& k = *ready_.front();
    ready_.pop_front();
    k.where = 0;
    std::int64_t wake = 0;
    if (!may_start(k, now, &wake)) {
      place(k, now);
      continue;
    }
    grant g;
    g.key = k.key;
    g.delay_ms = delay(k);
    if (!k.robots_wanted.empty()) {
      auto* o = k.robots_wanted.front();
      k.robots_wanted.pop_front();
      o->wanted = false;
      o->state = o->state == robots_state::ready ? robots_state::ready : robots_state::fetching;
      g.robots_origin = o->origin;
      g.robots_url = o->origin + "/robots.txt";
      g.thread_num = 1;
    } else {
      auto room = limit(k) - k.in_flight;
      std::size_t n = static_cast<std::size_t>(opts_.block_size);
      if (g.delay_ms > 0)  // the block must end well inside its lease
        n = std::min<std::size_t>(
          n, static_cast<std::size_t>(std::max<std::int64_t>(1, opts_.lease_timeout_ms / 2 / g.delay_ms)));
      if (limits.max_requests > 0)
        n = std::min(n, static_cast<std::size_t>(limits.max_requests));
      n = std::min(n, k.pending.size());
      g.requests.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        g.requests.push_back(std::move(k.pending.front()));
        k.pending.pop_front();
      }
      waiting_ -= static_cast<std::int64_t>(n);
      g.thread_num = std::max(1, std::min({room, opts_.thread_num, static_cast<int>(n),
                                           limits.max_threads > 0 ? limits.max_threads : room}));
    }
    k.in_flight += g.thread_num;
    ++k.blocks;
    if (g.delay_ms > 0)
      k.next_start_ms = std::max(k.next_start_ms, now);
    place(k, now);  // room left: back in line behind the keys that waited (round robin)
    return g;
  }
  return std::nullopt;
}

void host_queues::shrink(const std::string& key, int slots, std::int64_t now) {
  auto it = keys_.find(key);
  if (it == keys_.end() || slots <= 0)
    return;
  auto& k = *it->second;
  k.in_flight = std::max(0, k.in_flight - slots);
  place(k, now);
}

void host_queues::release(const std::string& key, int slots, std::int64_t now) {
  auto it = keys_.find(key);
  if (it == keys_.end())
    return;
  auto& k = *it->second;
  k.in_flight = std::max(0, k.in_flight - slots);
  k.blocks = std::max(0, k.blocks - 1);
  if (delay(k) > 0)
    k.next_start_ms = std::max(k.next_start_ms, now + delay(k));
  place(k, now);
}

void host_queues::release_held(origin_entry& o, key_entry& k, std::int64_t now,
                               settled& out) {
  while (!o.held.empty()) {
    auto r = std::move(o.held.front());
    o.held.pop_front();
    --k.held;
    if (o.state == robots_state::gave_up) {
      --waiting_;
      ++k.errors;
      ++k.errors_by_kind["robots"];
      out.failed.emplace_back(std::move(r), "robots.txt of " + o.origin +
                                                " unreachable: " + o.last_error);
    } else if (o.rules.allowed(core::url_path_and_query(r.url))) {
      k.pending.push_back(std::move(r));
    } else {
      --waiting_;
      ++k.skipped;
      out.skipped.push_back(std::move(r));
    }
  }
  place(k, now);
}

void host_queues::robots_answer(const std::string& origin, std::int32_t status,
                                const std::string& body, const std::string& error,
                                std::int64_t now, settled& out) {
  auto it = origins_.find(origin);
  if (it == origins_.end())
    return;
  auto& o = *it->second;
  auto& k = *o.key;
  const bool unreachable = !error.empty() || status == 0 || status >= 500 || status == 429;
  if (unreachable) {
    o.last_error = !error.empty() ? error : "HTTP " + std::to_string(status);
    if (o.state == robots_state::ready) {
      // A refresh failed: keep the rules we have, try again after the retry delay.
      o.expires_ms = now + opts_.robots_retry_ms;
      return;
    }
    ++o.failures;
    if (o.failures >= opts_.robots_max_attempts) {
      o.state = robots_state::gave_up;
      release_held(o, k, now, out);
      return;
    }
    o.state = robots_state::unreachable;
    // Disallow all for a while, then fetch again (doubling).
    o.retry_at_ms = now + opts_.robots_retry_ms * (std::int64_t{1} << std::min(o.failures - 1, 16));
    k.paused_until_ms = std::max(k.paused_until_ms, o.retry_at_ms);
    o.wanted = true;
    k.robots_wanted.push_back(&o);
    place(k, now);
    return;
  }
  o.failures = 0;
  o.state = robots_state::ready;
  o.expires_ms = now + opts_.robots_ttl_ms;
  if (status >= 200 && status < 300) {
    o.rules = core::robots_rules::parse(body, core::robots_product_token(opts_.user_agent));
    if (auto d = o.rules.crawl_delay_ms())
      k.crawl_delay_ms = std::max(k.crawl_delay_ms, *d);
  } else {
    // 4xx (no file) and 3xx left after redirects: everything allowed.
    o.rules = core::robots_rules::allow_all();
  }
  release_held(o, k, now, out);
}

void host_queues::robots_lost(const std::string& origin, std::int64_t now) {
  auto it = origins_.find(origin);
  if (it == origins_.end())
    return;
  auto& o = *it->second;
  if (o.state == robots_state::fetching)
    o.state = robots_state::unknown;
  if (!o.wanted) {
    o.wanted = true;
    o.key->robots_wanted.push_back(&o);
  }
  place(*o.key, now);
}

void host_queues::observe(const std::string& key, const host_observation& ob, std::int64_t now) {
  auto it = keys_.find(key);
  if (it == keys_.end())
    return;
  auto& k = *it->second;
  const bool throttled = ob.status == 429 || ob.status == 503;
  const bool server_error = ob.network_error || ob.status >= 500;
  if (throttled) {
    // Retry-After holds for every node; without one, the error backoff decides.
    auto pause = ob.retry_after_ms
                   ? *ob.retry_after_ms
                   : (k.backoff_ms = std::min(opts_.budget.max_delay_ms,
                                              k.backoff_ms ? k.backoff_ms * 2 : opts_.backoff_initial_ms));
    k.paused_until_ms = std::max(k.paused_until_ms, now + pause);
  }
  if (server_error || throttled) {
    ++k.error_streak;
    ++k.round_errors;
    if (server_error && k.error_streak >= opts_.backoff_after_errors) {
      k.backoff_ms = std::min(opts_.budget.max_delay_ms,
                              k.backoff_ms ? k.backoff_ms * 2 : opts_.backoff_initial_ms);
      k.paused_until_ms = std::max(k.paused_until_ms, now + k.backoff_ms);
    }
  } else {
    k.error_streak = 0;
    if (k.backoff_ms > 0)
      k.backoff_ms = k.backoff_ms / 2 < opts_.backoff_initial_ms ? 0 : k.backoff_ms / 2;
    double ms = static_cast<double>(std::max<std::int64_t>(0, ob.response_ms));
    k.latency_ewma_ms = k.latency_ewma_ms == 0 ? ms : 0.8 * k.latency_ewma_ms + 0.2 * ms;
    k.round_latency_sum += ms;
  }
  ++k.round_results;
  adapt(k, now);
  place(k, now);
}

void host_queues::adapt(key_entry& k, std::int64_t) {
  if (!opts_.budget.adaptive)
    return;
  const int cap = opts_.budget.max_concurrency;
  if (k.round_errors > 0) {
    // Errors: halve at once, leave slow start.
    k.concurrency = std::max(1, k.concurrency / 2);
    k.slow_start = false;
    k.round_results = k.round_errors = 0;
    k.round_latency_sum = 0;
    return;
  }
  if (k.round_results < std::max(1, k.concurrency))
    return;  // a round is as many results as the key may have in flight
  double mean = k.round_latency_sum / k.round_results;
  if (k.base_latency_ms < 0 || mean < k.base_latency_ms)
    k.base_latency_ms = mean;
  // Response times twice the unloaded ones (plus 20 ms of noise) mean the host queues
  // our requests: back off a quarter. Otherwise grow: doubling in slow start, else +1.
  if (mean > 2 * k.base_latency_ms + 20) {
    k.concurrency = std::max(1, k.concurrency - std::max(1, k.concurrency / 4));
    k.slow_start = false;
  } else {
    k.concurrency = std::min(cap, k.slow_start ? k.concurrency * 2 : k.concurrency + 1);
  }
  k.round_results = 0;
  k.round_latency_sum = 0;
}

void host_queues::count(const std::string& key, bool ok, const std::string& error_kind) {
  auto it = keys_.find(key);
  if (it == keys_.end())
    return;
  auto& k = *it->second;
  if (ok) {
    ++k.done;
  } else {
    ++k.errors;
    ++k.errors_by_kind[error_kind];
  }
}

void host_queues::count_skipped(const std::string& key, std::int64_t n) {
  if (auto it = keys_.find(key); it != keys_.end())
    it->second->skipped += n;
}

void host_queues::count_deferred(const std::string& key, std::int64_t n) {
  if (auto it = keys_.find(key); it != keys_.end())
    it->second->deferred += n;
}

std::int64_t host_queues::next_wake_ms() const {
  return timers_.empty() ? 0 : timers_.top().first;
}

std::vector<host_view> host_queues::view(std::int64_t now) const {
  std::vector<host_view> out;
  out.reserve(keys_.size());
  std::map<const key_entry*, robots_state> worst;
  for (auto& [name, o] : origins_) {
    auto& w = worst.try_emplace(o->key, o->state).first->second;
    if (o->state != robots_state::ready)
      w = o->state;
  }
  for (auto& [name, kp] : keys_) {
    auto& k = *kp;
    host_view v;
    v.key = k.key;
    v.pending = static_cast<std::int64_t>(k.pending.size());
    v.held = k.held;
    v.in_flight = k.in_flight;
    v.blocks = k.blocks;
    v.done = k.done;
    v.errors = k.errors;
    v.skipped = k.skipped;
    v.deferred = k.deferred;
    v.errors_by_kind = k.errors_by_kind;
    v.concurrency = limit(k);
    v.max_concurrency = opts_.budget.max_concurrency;
    v.delay_ms = delay(k);
    v.paused_until_ms = k.paused_until_ms > now ? k.paused_until_ms : 0;
    v.latency_ms = static_cast<std::int64_t>(std::llround(k.latency_ewma_ms));
    if (!opts_.budget.robots)
      v.robots = "off";
    else if (auto w = worst.find(&k); w != worst.end())
      v.robots = to_string(w->second);
    else
      v.robots = "none";
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.key < b.key; });
  return out;
}

} // namespace spiderhub::actors
