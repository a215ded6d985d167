#include "actors/dispatch/block_dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "actors/dispatch/dispatcher_state.hpp"
#include "core/canonical_url.hpp"
#include "core/digest.hpp"
#include "core/digest_set.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"
#include "storage/packed_body.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors::restore_detail {

// What the dispatcher reads back from storage for one run after a restart.
struct restored_run {
  storage::running_row running;
  core::digest_set seen;                          // dedup digests, built by the storage thread
  std::int64_t spilled = 0;                       // requests waiting on disk only
  std::int64_t last_seq = 0;                      // highest request Seq of the run
  std::vector<storage::request_row> pending;      // not downloaded yet
  std::vector<storage::job_status_row> statuses;  // per-node counters of the run
  storage::request_totals totals;
  std::vector<std::pair<std::int64_t, std::int64_t>> unacked;  // (result id, stored bytes)
};
using restored_runs = std::shared_ptr<std::vector<restored_run>>;

} // namespace spiderhub::actors::restore_detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::actors::restore_detail::restored_runs)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<spiderhub::storage::request_row>)

namespace spiderhub::actors {

host_queue_options run_politeness(const dispatch_options& opts, const protocol::site& site) {
  auto o = opts.politeness;
  o.thread_num = opts.thread_num;
  o.block_size = opts.block_size;
  o.lease_timeout_ms = opts.lease_timeout.count();
  o.user_agent = site.user_agent.empty() ? "spiderhub" : site.user_agent;
  if (site.max_concurrency_per_host > 0)
    o.budget.max_concurrency = site.max_concurrency_per_host;
  if (site.delay_ms >= 0)
    o.budget.delay_ms = site.delay_ms;
  if (!site.robots_txt.empty())
    o.budget.robots = site.robots_txt == "obey";
  if (!site.adaptive_throttle.empty())
    o.budget.adaptive = site.adaptive_throttle == "on";
  if (auto k = core::parse_politeness_key_kind(site.politeness_key))
    o.key_kind = *k;
  return o;
}

namespace dispatch {

using namespace spiderhub::protocol;
using restore_detail::restored_run;
using restore_detail::restored_runs;
using storage::block_state;
using json = nlohmann::json;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Kind of a failed download for /metrics and the host queues: what the node named
// (protocol::error_kinds), else guessed from the status and the error text (older nodes).
std::string error_kind(std::int32_t status, const std::string& error, const std::string& named) {
  if (!named.empty())
    return named;
  if (status >= 500)
    return "http_5xx";
  if (status >= 400)
    return "http_4xx";
  auto has = [&](const char* s) { return error.find(s) != std::string::npos; };
  if (has("imeout") || has("timed out"))
    return "timeout";
  if (has("resolve"))
    return "dns";
  if (has("onnect"))
    return "connect";
  if (has("too large") || has("maximum") || has("larger than"))
    return "too_large";
  return "network";
}

void store(self_ptr self, write_fn fn, std::function<void(bool)> then) {
  self->request(self->state.storage, caf::infinite, write_atom::value, std::move(fn))
    .then([then](bool ok) {
            if (then)
              then(ok);
          },
          [then](const caf::error& err) {
            spdlog::error("dispatcher: storage write failed: {}", caf::to_string(err));
            if (then)
              then(false);
          });
}

storage::job_status_row status_row(const run_entry& r, const std::string& node_id,
                                   const counters& c, std::int64_t total,
                                   const std::string& status) {
  storage::job_status_row s;
  s.job_id = r.job_id;
  s.identity = r.identity;
  s.node_id = node_id;
  s.status = status;
  s.total = total;
  s.success = c.success;
  s.error = c.error;
  s.skipped = c.skipped;
  s.left = node_id.empty()
             ? std::max<std::int64_t>(0, total - c.success - c.error - c.skipped)
             : 0;
  if (node_id.empty() && !r.cut.empty())
    s.cut = json(r.cut).dump();
  return s;
}

void write_status(self_ptr self, run_entry& r, const std::string& status) {
  std::vector<storage::job_status_row> rows;
  rows.push_back(status_row(r, "", r.all, r.total, status));
  for (auto& [node, c] : r.per_node)
    rows.push_back(status_row(r, node, c, c.success + c.error, status));
  r.status_dirty = false;
  store(self, [rows = std::move(rows)](storage::database& db) {
    storage::run_repository repo(db);
    for (auto& row : rows)
      repo.upsert_status(row);
  });
}

// Records requests decided without a download: robots.txt disallowed them (skipped) or
// they cannot be fetched (error, e.g. robots.txt unreachable, attempts used up).
void settle(self_ptr self, run_entry& r, host_queues::settled& s) {
  if (s.empty())
    return;
  r.all.skipped += static_cast<std::int64_t>(s.skipped.size());
  r.all.error += static_cast<std::int64_t>(s.failed.size());
  self->state.skipped += s.skipped.size();
  self->state.failed_undownloaded += s.failed.size();
  for (auto& [q, why] : s.failed)
    spdlog::warn("dispatcher: run {}: {} fails: {}", r.identity, q.url, why);
  r.status_dirty = true;
  std::vector<std::pair<std::int64_t, storage::request_state>> rows;
  for (auto& q : s.skipped)
    rows.emplace_back(q.seq, storage::request_state::skipped);
  for (auto& [q, why] : s.failed)
    rows.emplace_back(q.seq, storage::request_state::error);
  store(self, [identity = r.identity, rows = std::move(rows)](storage::database& db) {
    storage::crawl_repository repo(db);
    for (auto& [seq, state] : rows)
      repo.finish_request(identity, seq, state);
  });
}

void drop_node_lease(self_ptr self, const run_entry& r, const block_entry& b) {
  auto it = self->state.nodes.find(b.node_id);
  if (it != self->state.nodes.end())
    it->second.leases.erase({r.identity, b.id});
}

// A leased block ended without all its results (lease expired, node gone or refused it):
// its slots are freed, its requests go back to their key (or fail out of attempts).
void requeue(self_ptr self, run_entry& r, block_entry& b, const std::string& why) {
  drop_node_lease(self, r, b);
  auto now = now_ms();
  r.hosts->release(b.key, b.slots, now);
  if (!b.robots_origin.empty()) {
    spdlog::info("dispatcher: run {}: robots.txt of {} not fetched ({}), fetched again later",
                 r.identity, b.robots_origin, why);
    r.hosts->robots_lost(b.robots_origin, now);
    r.blocks.erase(b.id);
    return;
  }
  std::vector<queued_request> back;
  host_queues::settled out;
  for (auto& q : b.requests) {
    if (!b.outstanding.count(q.hash))
      continue;
    if (++q.attempts < self->state.opts.max_attempts) {
      back.push_back(std::move(q));
      continue;
    }
    auto reason = "leased " + std::to_string(q.attempts) + " times without a result (last: " +
                  why + ")";
    out.failed.emplace_back(std::move(q), std::move(reason));
  }
  spdlog::info("dispatcher: run {} block {}: {} requests back to {}: {}", r.identity, b.id,
               back.size(), b.key, why);
  if (!out.failed.empty())
    ++self->state.blocks_failed;
  for (std::size_t i = 0; i < out.failed.size(); ++i)
    r.hosts->count(b.key, false, "attempts");
  r.hosts->requeue(b.key, std::move(back), now);
  settle(self, r, out);
  store(self, [id = b.id](storage::database& db) { storage::crawl_repository(db).delete_block(id); });
  r.blocks.erase(b.id);
}

// The Block JSON a node receives; requests are spliced in as the worker sent them.
std::string to_wire(const run_entry& r, const block_entry& b) {
  std::string out;
  const auto& site = b.robots_origin.empty() ? r.site_json : r.robots_site_json;
  std::size_t size = 256 + site.size();
  for (auto& q : b.requests)
    size += q.json.size() + 1;
  out.reserve(size);
  out += "{\"blockId\":";
  fast::append_json_string(out, b.id);
  out += ",\"identity\":";
  fast::append_json_string(out, r.identity);
  out += ",\"command\":";
  out += std::to_string(static_cast<int>(block_command::download));
  out += ",\"threadNum\":";
  out += std::to_string(b.thread_num);
  out += ",\"delayMs\":";
  out += std::to_string(b.delay_ms);
  out += ",\"changeIpPattern\":";
  fast::append_json_string(out, b.robots_origin.empty() ? r.site_settings.change_ip_pattern
                                                        : std::string());
  out += ",\"site\":";
  out += site;
  out += ",\"cookies\":";
  fast::append_json_string(out, r.site_settings.cookies);
  out += ",\"requests\":[";
  bool first = true;
  for (auto& q : b.requests) {
    if (!first)
      out += ',';
    first = false;
    out += q.json;
  }
  out += "]}";
  return out;
}

// A block with only an id and a command (pause, exit) for a node.
std::string command_wire(const std::string& identity, const std::string& block_id,
                         block_command c) {
  std::string out = "{\"blockId\":";
  fast::append_json_string(out, block_id);
  out += ",\"identity\":";
  fast::append_json_string(out, identity);
  out += ",\"command\":";
  out += std::to_string(static_cast<int>(c));
  out += ",\"requests\":[]}";
  return out;
}

// The request a robots.txt fetch downloads.
queued_request robots_request(const std::string& url) {
  request rq;
  rq.url = url;
  queued_request q;
  q.url = url;
  q.hash = request_hash(rq);
  q.json = to_json(rq).dump();
  return q;
}

// Leases the next block of `r` that may start to `node_id`; returns its JSON.
// A node whose speed is not known yet gets blocks of two requests per slot. One
// downloading at under half the per-slot rate of the fastest node gets fewer slots
// per block (its share of the fastest's rate) and about `slow_node_block` of work per
// block: it holds little of a host's budget, and the run's tail waits little for it.
grant_limits limits_for(self_ptr self, const std::string& node_id) {
  const auto& st = self->state;
  grant_limits lim;
  auto it = st.nodes.find(node_id);
  if (st.opts.slow_node_block.count() <= 0 || it == st.nodes.end())
    return lim;
  if (!it->second.measured) {
    // Speed unknown (a node's first blocks): small blocks until one has finished, so a
    // slow node does not start with a full block on every slot.
    lim.max_requests = 2 * st.opts.thread_num;
    return lim;
  }
  if (it->second.slot_rate <= 0)
    return lim;  // only blocks paced by a delay so far: their speed is the delay's
  double best = 0;
  for (auto& [id, n] : st.nodes)
    best = std::max(best, n.slot_rate);
  double share = it->second.slot_rate / best;
  if (share >= 0.5)
    return lim;
  lim.max_threads = std::max(1, static_cast<int>(std::lround(st.opts.thread_num * share)));
  lim.max_requests = std::max(
    lim.max_threads, static_cast<int>(it->second.slot_rate * lim.max_threads *
                                      static_cast<double>(st.opts.slow_node_block.count()) / 1000.0));
  return lim;
}

// Render blocks (runs whose Site asks for rendering) a node holds: its render slots are
// counted apart from its download capacity.
int render_leases(self_ptr self, const node_entry& n) {
  int count = 0;
  for (auto& [identity, block_id] : n.leases)
    if (auto it = self->state.runs.find(identity);
        it != self->state.runs.end() && it->second.site_settings.render)
      ++count;
  return count;
}

std::optional<std::string> lease_one(self_ptr self, run_entry& r, const std::string& node_id) {
  auto now = now_ms();
  auto limits = limits_for(self, node_id);
  if (!r.site_settings.change_ip_pattern.empty()) {
    // A ChangeIpPattern run: only nodes that can change their IP download it.
    auto n = self->state.nodes.find(node_id);
    if (n == self->state.nodes.end() || !n->second.change_ip)
      return std::nullopt;
  }
  if (r.site_settings.render) {
    // Only nodes that render take these, one tab per block, as many blocks as tabs.
    auto n = self->state.nodes.find(node_id);
    if (n == self->state.nodes.end() || n->second.render_tabs <= render_leases(self, n->second))
      return std::nullopt;
    limits.max_threads = 1;
  }
  auto g = r.hosts->next(now, limits);
  if (!g)
    return std::nullopt;
  block_entry b;
  b.id = core::new_guid();
  b.key = g->key;
  b.thread_num = g->thread_num;
  b.slots = g->thread_num;
  b.delay_ms = g->delay_ms;
  b.node_id = node_id;
  b.leased_ms = now;
  if (!g->robots_origin.empty()) {
    b.robots_origin = g->robots_origin;
    b.requests.push_back(robots_request(g->robots_url));
    ++self->state.robots_fetched;
  } else {
    b.requests = std::move(g->requests);
  }
  for (auto& q : b.requests)
    b.outstanding.emplace(q.hash, q.seq);
  b.lease_until = now + self->state.opts.lease_timeout.count() +
                  b.delay_ms * static_cast<std::int64_t>(b.requests.size());
  auto& holder = self->state.nodes[node_id];
  holder.leases.insert({r.identity, b.id});
  holder.last_lease = ++self->state.lease_seq;
  ++self->state.blocks_built;
  ++self->state.blocks_leased;
  if (b.robots_origin.empty()) {
    store(self, [identity = r.identity, id = b.id, node_id,
                 lease = b.lease_until](storage::database& db) {
      storage::block_row row;
      row.id = id;
      row.identity = identity;
      row.state = block_state::used;
      row.node_id = node_id;
      row.lease_until = lease;
      row.attempts = 1;
      storage::crawl_repository(db).upsert_block(row);
    });
  }
  auto wire = to_wire(r, b);
  r.blocks.emplace(b.id, std::move(b));
  return wire;
}

int free_capacity(const node_entry& n) {
  if (n.disabled)
    return 0;
  return n.capacity - static_cast<int>(n.leases.size());
}

// Runs with requests waiting, priority DESC then fewest leased blocks first. A run whose
// worker is behind gets no new blocks until it catches up: the results would only wait on
// disk.
std::vector<run_entry*> runs_by_turn(self_ptr self) {
  std::vector<run_entry*> out;
  for (auto& [id, r] : self->state.runs)
    if (!r.finishing && r.hosts->waiting() > 0 && !worker_behind(self, r))
      out.push_back(&r);
  std::stable_sort(out.begin(), out.end(), [](run_entry* a, run_entry* b) {
    if (a->priority != b->priority)
      return a->priority > b->priority;
    return a->blocks.size() < b->blocks.size();
  });
  return out;
}

// Leases one block to `node_id` from the first run that may start one.
std::optional<std::string> lease_any(self_ptr self, const std::string& node_id) {
  for (auto* r : runs_by_turn(self))
    if (auto b = lease_one(self, *r, node_id))
      return b;
  return std::nullopt;
}

// Schedules a wake-up for the earliest key waiting on time (delay, pause, robots retry).
void schedule_wake(self_ptr self) {
  std::int64_t earliest = 0;
  for (auto& [id, r] : self->state.runs) {
    auto w = r.hosts->next_wake_ms();
    if (w > 0 && (earliest == 0 || w < earliest))
      earliest = w;
  }
  auto& st = self->state;
  if (earliest == 0 || (st.wake_at != 0 && st.wake_at <= earliest))
    return;
  st.wake_at = earliest;
  auto in = std::max<std::int64_t>(1, earliest - now_ms());
  self->delayed_send(self, std::chrono::milliseconds(in), wake_atom::value);
}

constexpr int dns_parallel = 4;
constexpr std::int64_t dns_ttl_ms = 300000, dns_failure_ttl_ms = 30000;
constexpr std::size_t dns_cache_max = 100000;

// Hands the host names that runs with `ip` keys wait for to resolvers (answers come as
// resolved_atom); names in the cache are answered at once.
void resolve_hosts(self_ptr self) {
  auto& st = self->state;
  auto now = now_ms();
  for (auto& [identity, r] : st.runs) {
    auto hosts = r.hosts->take_unresolved();
    if (hosts.empty())
      continue;
    host_queues::settled out;
    for (auto& host : hosts) {
      auto c = st.dns_cache.find(host);
      if (c != st.dns_cache.end() && c->second.second > now)
        r.hosts->resolved(host, c->second.first, now, out);
      else if (st.dns_busy.insert(host).second)
        st.dns_queue.push_back(host);
    }
    settle(self, r, out);
  }
  while (st.dns_running < dns_parallel && !st.dns_queue.empty()) {
    auto host = std::move(st.dns_queue.front());
    st.dns_queue.pop_front();
    ++st.dns_running;
    auto me = caf::actor_cast<caf::actor>(self);
    self->spawn<caf::detached>([me, host](caf::blocking_actor* b) {
      std::string error;
      auto address = core::resolve_host(host, &error);
      b->send(me, resolved_atom::value, host, address, error);
    });
  }
}

// Queues requests read back from storage (a restart, or the frontier on disk).
void queue_stored(run_entry& r, std::vector<storage::request_row>& rows, std::int64_t now,
                  host_queues::settled& out) {
  for (auto& row : rows) {
    queued_request q;
    q.hash = std::move(row.hash);
    q.json = row.body.value_or("{}");
    q.url = protocol::fast::request_url(q.json);  // once per request read back: no DOM
    q.seq = row.seq;
    r.hosts->push(std::move(q), now, out);
  }
}

// Reads the oldest spilled requests of a run back into memory once its queue there has
// drained below half the limit (one read at a time per run).
void unspill(self_ptr self, run_entry& r) {
  const auto memory_max = self->state.opts.frontier_memory_max;
  if (r.spilled == 0 || r.unspilling || r.finishing ||
      r.hosts->waiting() + r.hosts->unresolved() >= memory_max / 2)
    return;
  r.unspilling = true;
  auto chunk = std::max<std::int64_t>(1, memory_max / 2);
  auto after = r.unspilled_to;
  self->request(self->state.storage, caf::infinite, read_atom::value,
                read_fn([identity = r.identity, after, chunk](storage::database& db) {
                  return caf::make_message(
                    storage::crawl_repository(db).unspill_requests(identity, after, chunk));
                }))
    .then(
      [=, identity = r.identity](std::vector<storage::request_row>& rows) {
        auto* run = find_run(self, identity);
        if (!run)
          return;
        run->unspilling = false;
        if (!rows.empty())
          run->unspilled_to = rows.back().seq;
        host_queues::settled out;
        queue_stored(*run, rows, now_ms(), out);
        run->spilled = std::max<std::int64_t>(0, run->spilled - static_cast<std::int64_t>(rows.size()));
        if (rows.empty())
          run->spilled = 0;  // the count was ahead of the disk (a failed store)
        self->state.unspilled += rows.size();
        settle(self, *run, out);
        pump(self);
      },
      [=, identity = r.identity](caf::error& err) {
        spdlog::error("dispatcher: run {}: reading spilled requests failed: {}", identity,
                      to_string(err));
        if (auto* run = find_run(self, identity))
          run->unspilling = false;  // the next pump tries again
      });
}

// Pushes blocks that may start to nodes with free capacity, most free first.
void pump(self_ptr self) {
  resolve_hosts(self);
  for (auto& [id, r] : self->state.runs)
    unspill(self, r);
  // Nothing waiting is the common case on node connects: skip the node scan.
  bool work = std::any_of(self->state.runs.begin(), self->state.runs.end(),
                          [](auto& kv) { return kv.second.hosts->waiting() > 0; });
  std::set<std::string> skip;  // nodes that got nothing this round
  while (work) {
    node_entry* target = nullptr;
    std::string target_id;
    // Most free capacity first; on a tie the node served longest ago, so a key allowed
    // one block at a time still spreads its blocks over the nodes.
    for (auto& [id, n] : self->state.nodes) {
      auto free = free_capacity(n);
      if (free <= 0 || skip.count(id))
        continue;
      if (!target || free > free_capacity(*target) ||
          (free == free_capacity(*target) && n.last_lease < target->last_lease)) {
        target = &n;
        target_id = id;
      }
    }
    if (!target)
      break;
    auto b = lease_any(self, target_id);
    if (!b) {
      // Nothing this node may take (e.g. only render blocks wait and it cannot render):
      // the others may still.
      skip.insert(target_id);
      continue;
    }
    self->send(target->session, receive_atom::value, std::move(*b));
  }
  schedule_wake(self);
}

// Tells the nodes holding other blocks of `key` to start nothing more from them: the key
// was paused (429/503). They return what they did not start as deferred results.
void pause_key(self_ptr self, run_entry& r, const std::string& key, const std::string& except) {
  for (auto& [id, b] : r.blocks) {
    if (b.key != key || id == except)
      continue;
    if (auto n = self->state.nodes.find(b.node_id); n != self->state.nodes.end())
      self->send(n->second.session, receive_atom::value,
                 command_wire(r.identity, id, block_command::pause));
  }
}

// Gives pages freed by purges back to the filesystem, a few MB per write, then empties
// the WAL (a read runs outside the batch transactions, where a checkpoint may run).
void release_pages(self_ptr self) {
  auto left = std::make_shared<std::int64_t>(0);
  store(self, [left](storage::database& db) { *left = db.release_free_pages(2048); },
        [self, left](bool ok) {
          if (ok && *left > 0)
            return release_pages(self);
          if (ok)
            self->request(self->state.storage, caf::infinite, read_atom::value,
                          read_fn([](storage::database& db) {
                            db.truncate_wal();
                            return caf::make_message(true);
                          }))
              .then([](bool) {}, [](const caf::error& err) {
                spdlog::warn("dispatcher: WAL checkpoint after a purge failed: {}",
                             caf::to_string(err));
              });
        });
}

// Deletes the rows of a finished run a chunk per write, so other writes go in between;
// then its pages go back to the filesystem. Restarted for leftovers at every start.
void purge(self_ptr self, const std::string& identity) {
  auto removed = std::make_shared<int>(0);
  store(self,
        [identity, removed](storage::database& db) {
          *removed = storage::crawl_repository(db).purge_run(identity, 20000);
        },
        [self, identity, removed](bool ok) {
          if (!ok)
            return;  // the next start finds the leftovers
          if (*removed > 0)
            purge(self, identity);
          else
            release_pages(self);
        });
}

void finish_run(self_ptr self, run_entry& r, const std::string& status) {
  r.finishing = true;
  spdlog::info("dispatcher: run {} of job {} finished ({}): total {} success {} error {} "
               "skipped {}",
               r.identity, r.job_id, status, r.total, r.all.success, r.all.error, r.all.skipped);
  write_status(self, r, status);
  auto identity = r.identity;
  store(self, [identity](storage::database& db) {
    storage::run_repository(db).remove_running(identity);
  });
  purge(self, identity);
  answer_held_polls(r);
  for (auto& [session, c] : r.consumers)
    self->send(session, exit_atom::value, identity);
  std::set<std::string> told;
  for (auto& [id, b] : r.blocks)
    if (auto n = self->state.nodes.find(b.node_id); n != self->state.nodes.end()) {
      n->second.leases.erase({identity, id});
      if (told.insert(b.node_id).second)
        self->send(n->second.session, exit_atom::value, identity);
    }
  ++self->state.runs_finished;
  self->state.runs.erase(identity);
}

void maybe_finish(self_ptr self, run_entry& r) {
  if (!more_may_come(self, r) && r.returned.empty())
    answer_held_polls(r);  // nothing can wake them any more
  if (r.completed && !r.finishing && r.hosts->waiting() == 0 && r.blocks.empty() &&
      r.unacked == 0 && r.spilled == 0 && !r.unspilling)
    finish_run(self, r, "Success");
}

run_entry* find_run(self_ptr self, const std::string& identity) {
  auto it = self->state.runs.find(identity);
  return it == self->state.runs.end() || it->second.finishing ? nullptr : &it->second;
}

caf::error unknown_run(const std::string& identity) {
  return app_error("not_found", "unknown or finished run '" + identity + "'");
}

/// The run's scope and trap limits: the Site's values, the defaults where it sets none.
core::crawl_limits run_limits(const site& s) {
  core::crawl_limits l;
  if (s.max_url_length >= 0)
    l.max_url_length = s.max_url_length;
  if (s.max_depth >= 0)
    l.max_depth = s.max_depth;
  if (s.max_pages >= 0)
    l.max_pages = s.max_pages;
  if (s.max_pages_per_host >= 0)
    l.max_pages_per_host = s.max_pages_per_host;
  if (s.max_repeated_segments >= 0)
    l.max_repeated_segments = s.max_repeated_segments;
  return l;
}

run_entry make_run(self_ptr self, const std::string& job_id, const std::string& identity,
                   const site& s) {
  run_entry r;
  r.job_id = job_id;
  r.identity = identity;
  r.site_settings = s;
  r.workers_per_run = s.workers_per_run;
  // Every block names the run's body limit, never more than fits in a hub message (the
  // broker's dispatch.max_body_bytes, checked against http.max_message_bytes at start).
  auto& max_body = r.site_settings.max_body_bytes;
  if (max_body > self->state.opts.max_body_bytes)
    spdlog::warn("dispatcher: run {}: MaxBodyBytes {} is over dispatch.max_body_bytes {}; "
                 "bodies are refused over the latter",
                 identity, max_body, self->state.opts.max_body_bytes);
  if (max_body <= 0 || max_body > self->state.opts.max_body_bytes)
    max_body = self->state.opts.max_body_bytes;
  // Redirects come back to the broker as requests of their own (dedup, robots.txt, scope).
  r.site_settings.broker_redirects = true;
  if (!r.site_settings.verify_tls)
    spdlog::warn("dispatcher: run {}: TLS certificates are not verified (VerifyTls false): "
                 "its pages can come from anyone on the path",
                 identity);
  r.site_json = to_json(r.site_settings).dump();
  // robots.txt is text/plain whatever pages the run wants: its fetch is not typed.
  auto robots_site = r.site_settings;
  robots_site.allowed_content_types.clear();
  robots_site.broker_redirects = false;  // RFC 9309: the fetch itself follows redirects
  r.robots_site_json = to_json(robots_site).dump();
  r.hosts = std::make_unique<host_queues>(run_politeness(self->state.opts, s));
  r.scope = std::make_unique<core::crawl_scope>(run_limits(r.site_settings));
  return r;
}

void restore(self_ptr self, std::vector<restored_run>& runs) {
  auto now = now_ms();
  for (auto& rr : runs) {
    site s;
    try {
      s = decode<site>(json::parse(rr.running.site_json), "site");
    } catch (const std::exception& e) {
      spdlog::warn("dispatcher: run {} has bad site settings ({}); using defaults",
                   rr.running.identity, e.what());
    }
    auto r = make_run(self, rr.running.job_id, rr.running.identity, s);
    r.priority = rr.running.priority;
    r.completed = rr.running.worker_completed;
    r.full_class_name = rr.running.full_class_name;
    r.arguments = rr.running.arguments;
    r.seen = std::move(rr.seen);
    r.spilled = rr.spilled;
    r.last_seq = rr.last_seq;
    r.total = rr.totals.total;
    r.all.success = rr.totals.success;
    r.all.error = rr.totals.error;
    r.all.skipped = rr.totals.skipped;
    r.scope->restored(r.total);
    r.unacked = static_cast<std::int64_t>(rr.unacked.size());
    for (auto [id, bytes] : rr.unacked)
      add_unacked(r, id, bytes);
    for (auto& st : rr.statuses) {
      if (!st.node_id.empty()) {
        r.per_node[st.node_id] = counters{st.success, st.error, 0};
      } else if (!st.cut.empty()) {
        // What the limits cut before the restart (those requests are not stored, so only
        // the status row remembers them).
        auto j = json::parse(st.cut, nullptr, false);
        if (j.is_object())
          for (auto& [reason, n] : j.items())
            if (n.is_number_integer())
              r.cut[reason] = n.get<std::int64_t>();
      }
    }
    // Leases died with the old process: every request not downloaded is queued again
    // (robots.txt is fetched again too).
    host_queues::settled out;
    queue_stored(r, rr.pending, now, out);
    spdlog::info("dispatcher: restored run {} (total {}, {} requests to download in memory, "
                 "{} on disk, {} unacked results)",
                 r.identity, r.total, r.hosts->waiting(), r.spilled, r.unacked);
    auto identity = r.identity;
    store(self, [identity](storage::database& db) {
      storage::crawl_repository(db).delete_open_blocks(identity);
    });
    auto& placed = self->state.runs.emplace(identity, std::move(r)).first->second;
    settle(self, placed, out);
    maybe_finish(self, placed);
  }
  pump(self);
}

// One result of a politeness key as throttling input.
host_observation observation_of(const fast::raw_result& res) {
  host_observation o;
  o.status = res.status_code;
  o.response_ms = res.response_time;
  auto kind = res.error.empty() ? "" : error_kind(res.status_code, res.error, res.error_kind);
  // A refused body (too large, content type not allowed) says nothing of the host's health.
  o.network_error = res.status_code == 0 && !res.error.empty() && kind != "too_large" &&
                    kind != "skipped_type";
  if (res.retry_after_ms >= 0)
    o.retry_after_ms = res.retry_after_ms;
  return o;
}

// The answer to a robots.txt block: handed to the run's queues, never stored.
void robots_answered(self_ptr self, run_entry& r, block_entry& b,
                     const fast::raw_result& res) {
  std::string body;
  try {
    auto j = json::parse(res.body);
    auto one = decode<result>(j, "robots result");
    body = result_body(one);
  } catch (const std::exception& e) {
    spdlog::warn("dispatcher: run {}: unreadable robots.txt result from {}: {}", r.identity,
                 b.node_id, e.what());
  }
  auto now = now_ms();
  host_queues::settled out;
  if (res.status_code == 429 || res.status_code == 503)
    r.hosts->observe(b.key, observation_of(res), now);
  r.hosts->robots_answer(b.robots_origin, res.status_code, body, res.error, now, out);
  spdlog::info("dispatcher: run {}: robots.txt of {} -> {} ({} requests skipped, {} failed)",
               r.identity, b.robots_origin,
               res.error.empty() ? "HTTP " + std::to_string(res.status_code) : res.error,
               out.skipped.size(), out.failed.size());
  drop_node_lease(self, r, b);
  r.hosts->release(b.key, b.slots, now);
  r.blocks.erase(b.id);
  settle(self, r, out);
}

/// What a 3xx a node handed back becomes: the request of its target, or the worker's error
/// result (a loop, too many hops, a target that is not an http(s) URL).
struct redirect_step {
  std::optional<fast::raw_request> next;
  std::string failed;  // result JSON for the worker when there is no next request
};

redirect_step follow_redirect(const queued_request& q, std::int32_t status,
                              const std::string& location, int max_redirects) {
  redirect_step step;
  request rq;
  try {
    rq = decode<request>(json::parse(q.json), "request");
  } catch (const std::exception& e) {
    spdlog::warn("dispatcher: redirect of {} not followed: {}", q.url, e.what());
    return step;
  }
  auto fail = [&](std::string why) {
    result res;
    res.request_hash = q.hash;
    res.url = rq.url;
    res.status_code = status;
    res.depth = rq.depth;
    res.error = std::move(why);
    res.error_kind = "redirect_loop";
    res.redirects = rq.redirects;
    res.redirects.push_back({status, location});
    res.redirected_from = rq.redirected_from;
    res.payload = rq.payload;
    fast::append_json(step.failed, res);
    return step;
  };
  auto target = core::canonical_url(location);
  if (target.empty())
    return fail("redirect to '" + location + "', not an http(s) URL");
  const auto& first = rq.redirected_from.empty() ? rq.url : rq.redirected_from;
  bool seen = target == first || target == rq.url;
  for (auto& h : rq.redirects)
    seen = seen || h.url == target;
  if (seen)
    return fail("redirect loop: " + target + " was already on the way");
  if (static_cast<int>(rq.redirects.size()) >= max_redirects)
    return fail("more than " + std::to_string(max_redirects) + " redirects");
  // 301/302/303 turn other methods than HEAD into GET without a body (RFC 9110 15.4, as
  // browsers and Scrapy do); 307/308 repeat the request as it was.
  if ((status == 301 || status == 302 || status == 303) && rq.method != "HEAD" &&
      rq.method != "GET") {
    rq.method = "GET";
    rq.content.clear();
  }
  rq.redirected_from = first;
  rq.redirects.push_back({status, target});
  rq.url = target;
  // The pusher's fingerprint named the first URL: the target is deduplicated by its own
  // canonical URL like any link (its payload still travels with it).
  rq.fingerprint.clear();
  rq.dont_filter = false;
  fast::raw_request next;
  fast::append_json(next.json, rq);
  next.hash = request_hash(rq);
  next.url = std::move(target);
  next.depth = rq.depth;
  step.next = std::move(next);
  return step;
}

json proxies_json(const std::map<std::string, proxy_counters>& m) {
  json out = json::object();
  for (auto& [name, c] : m)
    out[name] = {{"requests", c.requests}, {"failures", c.failures}};
  return out;
}

/// The /metrics counters of a proxy (redacted name); past max_proxy_series names, the
/// rest share "other" so a run of 10,000 proxies cannot blow up the metrics.
proxy_counters& proxy_counter(self_ptr self, const std::string& name) {
  constexpr std::size_t max_proxy_series = 1000;
  auto& m = self->state.proxies;
  if (auto it = m.find(name); it != m.end())
    return it->second;
  return m[m.size() < max_proxy_series ? name : std::string("other")];
}

/// The run's own canonicalisation (job properties SortQuery, StripSessionIds,
/// StripTracking), on top of the one parse_push applied to every URL: a request it changes
/// gets the new URL and dedup key.
void apply_run_canonical(const site& s, fast::raw_request& req) {
  core::canonical_options o;
  o.sort_query = s.sort_query;
  o.strip_session_ids = s.strip_session_ids;
  o.strip_tracking = s.strip_tracking;
  if (!o.sort_query && !o.strip_session_ids && !o.strip_tracking)
    return;
  auto url = core::canonical_url(req.url, o);
  if (url.empty() || url == req.url)
    return;
  auto rq = decode<request>(json::parse(req.json));
  rq.url = url;
  req.json.clear();
  fast::append_json(req.json, rq);
  req.hash = request_hash(rq);
  req.url = std::move(url);
}

/// Takes requests into a run: new ones (by hash) are stored, then queued by politeness key;
/// `done` gets how many were new, or the storage failure. Push, and redirects the nodes
/// hand back, come in here.
void admit(self_ptr self, run_entry& run, std::vector<fast::raw_request>& requests,
           std::function<void(caf::expected<std::int32_t>)> done) {
      auto* r = &run;
      const auto identity = run.identity;
      std::vector<queued_request> fresh;
      std::vector<storage::request_row> rows;
      const auto memory_max = self->state.opts.frontier_memory_max;
      auto in_memory = r->hosts->waiting() + r->hosts->unresolved();
      std::int64_t spilled = 0;
      for (auto& req : requests) {
        apply_run_canonical(r->site_settings, req);
        // Hashes come from parse_push: always 16 hex digits.
        auto url_digest = req.url_hash.empty() ? std::nullopt : core::parse_digest(req.url_hash);
        if ((url_digest && r->seen.contains(*url_digest)) ||
            !r->seen.insert(core::parse_digest(req.hash).value_or(0))) {
          ++self->state.duplicates;
          continue;
        }
        if (url_digest)
          r->seen.insert(*url_digest);
        if (auto reason = r->scope->admit(req.url, req.depth)) {
          // A trap or a limit of the run: not taken (and, being seen, not counted again).
          ++r->cut[reason];
          ++self->state.cut[reason];
          r->status_dirty = true;
          continue;
        }
        storage::request_row row;
        row.identity = identity;
        row.hash = req.hash;
        row.seq = ++r->last_seq;
        if (memory_max > 0 && (r->spilled + spilled > 0 || in_memory >= memory_max)) {
          // Beyond the in-memory frontier: only on disk until the queue drains.
          row.state = static_cast<std::int32_t>(storage::request_state::spilled);
          row.body = std::move(req.json);
          ++spilled;
          rows.push_back(std::move(row));
          continue;
        }
        ++in_memory;
        row.body = req.json;
        fresh.push_back(queued_request{std::move(req.hash), std::move(req.json),
                                       std::move(req.url), 0, row.seq});
        rows.push_back(std::move(row));
      }
      r->spilled += spilled;  // counted now: a refill may not overtake them
      auto n = static_cast<std::int32_t>(fresh.size() + static_cast<std::size_t>(spilled));
      if (n == 0) {
        done(0);
        return;
      }
      auto shared = std::make_shared<std::vector<queued_request>>(std::move(fresh));
      auto spilled_hashes = std::make_shared<std::vector<std::uint64_t>>();
      for (auto& row : rows)
        if (row.state == static_cast<std::int32_t>(storage::request_state::spilled))
          spilled_hashes->push_back(core::parse_digest(row.hash).value_or(0));
      store(self,
            [rows = std::move(rows)](storage::database& db) {
              storage::crawl_repository repo(db);
              for (auto& row : rows)
                repo.insert_request(row);
            },
            [=](bool ok) mutable {
              auto* run = find_run(self, identity);
              if (!ok) {
                if (run) {
                  for (auto& h : *shared)
                    run->seen.erase(core::parse_digest(h.hash).value_or(0));
                  for (auto& d : *spilled_hashes)
                    run->seen.erase(d);
                  run->spilled -= static_cast<std::int64_t>(spilled_hashes->size());
                }
                done(caf::make_error(caf::sec::runtime_error,
                                     "requests not stored (storage failure)"));
                return;
              }
              if (run) {
                auto now = now_ms();
                host_queues::settled out;
                for (auto& q : *shared)
                  run->hosts->push(std::move(q), now, out);
                run->total += n;
                run->status_dirty = true;
                self->state.requests_accepted += n;
                settle(self, *run, out);
                pump(self);
              }
              done(n);
            });
}

caf::behavior dispatcher(self_ptr self, caf::actor storage, dispatch_options opts) {
  self->state.storage = storage;
  self->state.opts = opts;
  self
    ->request(storage, caf::infinite, read_atom::value, read_fn([](storage::database& db) {
                std::set<std::string> off;
                for (auto& n : storage::node_repository(db).list())
                  if (!n.is_enabled)
                    off.insert(n.id);
                return caf::make_message(off);
              }))
    .then([=](std::set<std::string>& off) {
      for (auto& id : off)
        if (auto it = self->state.nodes.find(id); it != self->state.nodes.end())
          it->second.disabled = true;
      self->state.disabled.insert(off.begin(), off.end());
    });
  // Restore runs before serving anything: the read is queued at the storage actor
  // ahead of any write this actor makes.
  self->request(storage, caf::infinite, read_atom::value,
                read_fn([](storage::database& db) {
                  std::vector<restored_run> out;
                  storage::run_repository runs(db);
                  storage::crawl_repository crawl(db);
                  auto leftovers = crawl.finished_run_leftovers();
                  for (auto& row : runs.running()) {
                    restored_run rr;
                    rr.running = row;
                    crawl.for_each_request_hash(row.identity, [&](const std::string& h) {
                      if (auto d = core::parse_digest(h))
                        rr.seen.insert(*d);
                    });
                    rr.spilled = crawl.spilled(row.identity);
                    rr.last_seq = crawl.last_seq(row.identity);
                    rr.pending = crawl.pending_requests(row.identity);
                    rr.statuses = runs.statuses_of_run(row.identity);
                    rr.totals = crawl.totals(row.identity);
                    rr.unacked = crawl.result_sizes(row.identity);
                    out.push_back(std::move(rr));
                  }
                  return caf::make_message(std::make_shared<std::vector<restored_run>>(
                                             std::move(out)),
                                           std::move(leftovers));
                }))
    .then(
      [=](restored_runs& runs, std::vector<std::string>& leftovers) {
        restore(self, *runs);
        for (auto& identity : leftovers) {
          spdlog::info("dispatcher: purging what is left of finished run {}", identity);
          purge(self, identity);
        }
      },
      [=](const caf::error& err) {
        spdlog::critical("dispatcher: cannot restore runs: {}", caf::to_string(err));
      });
  self->send(self, tick_atom::value);
  // Worker sessions polling a run are monitored: the results one held go to the others.
  self->set_down_handler([=](caf::down_msg& m) { consumer_gone(self, m.source); });
  return {
    [=](start_run_atom, const run_spec& spec) -> caf::result<bool> {
      if (self->state.runs.count(spec.identity))
        return app_error("conflict", "run " + spec.identity + " already exists");
      auto site_json = spec.site_json.empty() ? std::string("{}") : spec.site_json;
      site s;
      try {
        s = decode<site>(json::parse(site_json), "site");
      } catch (const std::exception& e) {
        return app_error("invalid", std::string("bad site settings: ") + e.what());
      }
      auto r = make_run(self, spec.job_id, spec.identity, s);
      r.priority = spec.priority;
      r.full_class_name = spec.full_class_name;
      r.arguments = spec.arguments;
      auto rp = self->make_response_promise<bool>();
      storage::running_row row;
      row.job_id = spec.job_id;
      row.identity = spec.identity;
      row.priority = spec.priority;
      row.site_json = site_json;
      row.full_class_name = spec.full_class_name;
      row.arguments = spec.arguments;
      auto status = status_row(r, "", r.all, 0, "Running");
      auto identity = spec.identity;
      self->state.runs.emplace(identity, std::move(r));
      store(self,
            [row, status](storage::database& db) {
              storage::run_repository(db).insert_running(row);
              storage::run_repository(db).upsert_status(status);
            },
            [=](bool ok) mutable {
              if (!ok) {
                self->state.runs.erase(identity);
                rp.deliver(app_error("unavailable", "cannot store the run"));
                return;
              }
              rp.deliver(true);
            });
      return rp;
    },
    [=](orphans_atom, const std::string& full_class_name) {
      std::vector<worker_run> out;
      for (auto& [id, r] : self->state.runs)
        if (!r.finishing && r.full_class_name == full_class_name)
          out.push_back(worker_run{r.job_id, r.identity, r.arguments});
      return out;
    },
    [=](push_atom, const std::string& identity,
        std::vector<fast::raw_request>& requests) -> caf::result<std::int32_t> {
      auto* r = find_run(self, identity);
      if (!r)
        return unknown_run(identity);
      auto rp = self->make_response_promise<std::int32_t>();
      admit(self, *r, requests, [rp](caf::expected<std::int32_t> n) mutable {
        if (n)
          rp.deliver(*n);
        else
          rp.deliver(std::move(n.error()));
      });
      return rp;
    },
    [=](node_up_atom, const std::string& node_id, caf::actor session, std::int32_t max_blocks,
        std::int32_t render_tabs, bool change_ip) {
      auto& n = self->state.nodes[node_id];
      n.session = session;
      n.render_tabs = render_tabs;
      n.change_ip = change_ip;
      n.capacity = max_blocks > 0 ? std::min(max_blocks, self->state.opts.blocks_per_node)
                                  : self->state.opts.blocks_per_node;
      n.disabled = self->state.disabled.count(node_id) > 0;
      pump(self);
    },
    [=](node_enabled_atom, const std::string& node_id, bool enabled) {
      if (enabled)
        self->state.disabled.erase(node_id);
      else
        self->state.disabled.insert(node_id);
      if (auto it = self->state.nodes.find(node_id); it != self->state.nodes.end())
        it->second.disabled = !enabled;
      spdlog::info("dispatcher: node {} {}", node_id,
                   enabled ? "enabled: gets blocks again" : "disabled: gets no new blocks");
      if (enabled)
        pump(self);
    },
    [=](node_down_atom, const std::string& node_id, const caf::actor& session) {
      auto it = self->state.nodes.find(node_id);
      if (it == self->state.nodes.end() || it->second.session != session)
        return;
      auto leases = it->second.leases;
      self->state.nodes.erase(it);
      for (auto& [identity, block_id] : leases)
        if (auto* r = find_run(self, identity))
          if (auto b = r->blocks.find(block_id); b != r->blocks.end()) {
            // The node is gone: its lease cannot complete, return the block now.
            requeue(self, *r, b->second, "node " + node_id + " disconnected");
            maybe_finish(self, *r);
          }
      pump(self);
    },
    [=](lease_atom, const std::string& node_id, std::int32_t free_slots) {
      std::string out = "[";
      auto it = self->state.nodes.find(node_id);
      if (it == self->state.nodes.end())
        return out + "]";
      auto room = std::min(free_slots, free_capacity(it->second));
      while (room-- > 0) {
        auto b = lease_any(self, node_id);
        if (!b)
          break;
        if (out.size() > 1)
          out += ',';
        out += *b;
      }
      schedule_wake(self);
      return out + "]";
    },
    [=](save_atom, const std::string& node_id,
        fast::raw_block_response& resp) -> caf::result<bool> {
      auto* r = find_run(self, resp.identity);
      if (!r)
        return true;  // a run that ended or was exited: nothing to keep
      auto bit = r->blocks.find(resp.block_id);
      if (bit == r->blocks.end())
        return true;  // already finished by another lease
      auto& b = bit->second;
      if (!resp.exception.empty() && resp.results.empty()) {
        if (b.node_id == node_id) {
          requeue(self, *r, b, "node " + node_id + " reported: " + resp.exception);
          pump(self);
        }
        return true;
      }
      auto now = now_ms();
      if (!b.robots_origin.empty()) {
        for (auto& res : resp.results)
          if (b.outstanding.count(res.request_hash)) {
            if (res.deferred) {
              requeue(self, *r, b, "robots.txt fetch deferred");
            } else {
              robots_answered(self, *r, b, res);
            }
            pump(self);
            break;
          }
        return true;
      }
      if (b.node_id == node_id)
        b.lease_until = now + self->state.opts.lease_timeout.count();  // the node is working
      std::vector<storage::result_row> rows;
      struct outcome {
        std::string hash;
        std::int64_t seq = 0;
        bool ok = false;
        bool redirected = false;  // handed back as a new request: skipped, no page
      };
      std::vector<outcome> outcomes;
      std::vector<queued_request> back;                    // deferred: queued again
      std::vector<fast::raw_request> redirected;           // redirect targets, new requests
      host_queues::settled out;
      bool paused = false;
      for (auto& res : resp.results) {
        if (!b.outstanding.count(res.request_hash))
          continue;  // duplicate from an expired lease, or not ours
        auto obs = observation_of(res);
        if (res.deferred) {
          auto q = std::find_if(b.requests.begin(), b.requests.end(),
                                [&](auto& x) { return x.hash == res.request_hash; });
          if (q == b.requests.end())
            continue;
          b.outstanding.erase(res.request_hash);
          if (res.status_code != 0) {
            // It met 429/503: the key pauses; the request counts one attempt.
            r->hosts->observe(b.key, obs, now);
            paused = true;
            ++self->state.pauses;
            if (++q->attempts >= self->state.opts.max_attempts) {
              r->hosts->count(b.key, false, "deferred");
              out.failed.emplace_back(*q, "HTTP " + std::to_string(res.status_code) + " " +
                                            std::to_string(q->attempts) + " times");
              continue;
            }
          }
          ++self->state.deferred;
          back.push_back(*q);
          continue;
        }
        auto seq = b.outstanding.extract(res.request_hash).mapped();
        if (!res.redirect_to.empty()) {
          auto q = std::find_if(b.requests.begin(), b.requests.end(),
                                [&](auto& x) { return x.hash == res.request_hash; });
          auto step = q == b.requests.end()
                        ? redirect_step{}
                        : follow_redirect(*q, res.status_code, res.redirect_to,
                                          self->state.opts.max_redirects);
          if (step.next) {
            r->hosts->observe(b.key, obs, now);
            r->hosts->count(b.key, true, "");
            outcomes.push_back({res.request_hash, seq, true, true});
            redirected.push_back(std::move(*step.next));
            ++self->state.redirects;
            continue;
          }
          if (!step.failed.empty())
            res.body = std::move(step.failed);  // a loop or too many hops: the worker's error
        }
        bool ok = res.error.empty() && res.status_code >= 200 && res.status_code < 400;
        r->hosts->observe(b.key, obs, now);
        auto kind = ok ? std::string() : error_kind(res.status_code, res.error, res.error_kind);
        r->hosts->count(b.key, ok, kind);
        outcomes.push_back({res.request_hash, seq, ok});
        self->state.result_bytes += res.body.size();
        if (!ok)
          ++self->state.download_errors[kind];
        if (!res.proxy.empty())
          ++proxy_counter(self, res.proxy).requests;
        for (auto& p : res.proxy_errors)
          ++proxy_counter(self, p).failures;
        storage::result_row row;
        row.identity = resp.identity;
        row.block_id = resp.block_id;
        row.request_hash = res.request_hash;
        row.seq = seq;
        // The node's JSON object as sent, packed (LZ4) for the SQLite store here on the
        // actor threads: the storage thread is the busiest of the broker.
        row.body = self->state.opts.pack_results ? storage::pack_body(std::move(res.body))
                                                 : std::move(res.body);
        rows.push_back(std::move(row));
      }
      // A block runs at most as many downloads as it has unfinished requests: the slots
      // above that go back to its key now, not when its last request is done.
      if (auto can_use = std::min<int>(b.thread_num, static_cast<int>(b.outstanding.size()));
          can_use < b.slots) {
        r->hosts->shrink(b.key, b.slots - can_use, now);
        b.slots = can_use;
      }
      if (!back.empty()) {
        r->hosts->count_deferred(b.key, static_cast<std::int64_t>(back.size()));
        r->hosts->requeue(b.key, std::move(back), now);
      }
      if (paused)
        pause_key(self, *r, b.key, b.id);
      settle(self, *r, out);
      bool block_done = b.outstanding.empty();
      if (block_done && b.node_id == node_id && now > b.leased_ms && !r->site_settings.render) {
        // How fast this node works: requests per second per slot, smoothed (blocks paced
        // by a politeness delay say nothing about it).
        if (auto n = self->state.nodes.find(node_id); n != self->state.nodes.end() &&
                                                      (n->second.measured = true, b.delay_ms == 0)) {
          double sample = static_cast<double>(b.requests.size()) * 1000.0 /
                          static_cast<double>(now - b.leased_ms) / std::max(1, b.thread_num);
          auto& rate = n->second.slot_rate;
          rate = rate <= 0 ? sample : 0.7 * rate + 0.3 * sample;
        }
      }
      if (!redirected.empty()) {
        // Stored before this batch's outcomes (same storage queue): a crash between the two
        // downloads the redirect again rather than losing its target.
        admit(self, *r, redirected, [](caf::expected<std::int32_t> n) {
          if (!n)
            spdlog::error("dispatcher: redirect targets not stored: {}", caf::to_string(n.error()));
        });
      }
      if (rows.empty() && outcomes.empty()) {
        if (block_done) {
          drop_node_lease(self, *r, b);
          r->hosts->release(b.key, b.slots, now);
          store(self, [id = b.id](storage::database& db) {
            storage::crawl_repository(db).delete_block(id);
          });
          r->blocks.erase(bit);
          maybe_finish(self, *r);
        }
        pump(self);
        return true;
      }
      auto rp = self->make_response_promise<bool>();
      auto identity = resp.identity;
      auto block_id = resp.block_id;
      auto n = static_cast<std::int64_t>(rows.size());
      // (id, bytes) of each stored result: what the run's worker has still to take.
      auto stored = std::make_shared<std::vector<std::pair<std::int64_t, std::int64_t>>>();
      store(self,
            [rows = std::move(rows), outcomes, block_done, block_id, identity, node_id,
             stored](storage::database& db) {
              storage::crawl_repository repo(db);
              stored->clear();  // a batch retried after a failed commit starts over
              for (auto& row : rows)
                stored->emplace_back(repo.insert_result(row),
                                     static_cast<std::int64_t>(row.body.size()));
              for (auto& o : outcomes)
                repo.finish_request(identity, o.seq,
                                    o.redirected ? storage::request_state::skipped
                                    : o.ok       ? storage::request_state::success
                                                 : storage::request_state::error);
              if (block_done)
                repo.set_block_state(block_id, block_state::success, node_id, 0, 1);
            },
            [=](bool ok) mutable {
              auto* run = find_run(self, identity);
              if (!ok) {
                // Not stored: put the hashes back so another lease can deliver them.
                if (run)
                  if (auto it = run->blocks.find(block_id); it != run->blocks.end())
                    for (auto& o : outcomes)
                      it->second.outstanding.emplace(o.hash, o.seq);
                rp.deliver(caf::make_error(caf::sec::runtime_error,
                                           "results not stored (storage failure)"));
                return;
              }
              if (run) {
                auto& per = run->per_node[node_id];
                for (auto& o : outcomes) {
                  if (o.redirected) {
                    ++run->all.skipped;  // its target is a request of its own
                    continue;
                  }
                  (o.ok ? run->all.success : run->all.error)++;
                  (o.ok ? per.success : per.error)++;
                }
                run->unacked += n;
                for (auto [id, bytes] : *stored)
                  add_unacked(*run, id, bytes);
                results_stored(self, *run);  // a long Poll may wait for them
                run->status_dirty = true;
                self->state.results_stored += n;
                if (auto it = run->blocks.find(block_id);
                    it != run->blocks.end() && it->second.outstanding.empty()) {
                  drop_node_lease(self, *run, it->second);
                  run->hosts->release(it->second.key, it->second.slots, now_ms());
                  run->blocks.erase(it);
                  ++self->state.blocks_done;
                }
                pump(self);
              }
              rp.deliver(true);
            });
      return rp;
    },
    [=](poll_atom, const std::string& identity, std::int32_t max, std::int32_t wait_ms,
        std::int64_t max_bytes, const caf::actor& session) -> caf::result<std::string> {
      return poll(self, identity, max, wait_ms, max_bytes, session);
    },
    [=](poll_wake_atom, const std::string& identity, std::uint64_t token) {
      poll_wait_over(self, identity, token);  // a held Poll's wait ended with nothing for it
    },
    [=](poll_wake_atom, const caf::actor& session) { session_polls_over(self, session); },
    [=](ack_atom, const std::string& identity,
        std::vector<std::int64_t>& ids) -> caf::result<bool> {
      return ack(self, identity, std::move(ids));
    },
    [=](complete_atom, const std::string& identity) -> caf::result<bool> {
      auto* r = find_run(self, identity);
      if (!r)
        return unknown_run(identity);
      if (r->completed)
        return true;
      r->completed = true;
      auto rp = self->make_response_promise<bool>();
      store(self,
            [identity](storage::database& db) {
              storage::run_repository(db).set_worker_completed(identity);
            },
            [=](bool ok) mutable {
              if (auto* run = find_run(self, identity))
                maybe_finish(self, *run);
              rp.deliver(ok);
            });
      return rp;
    },
    [=](exit_run_atom, const std::string& identity) -> bool {
      auto* r = find_run(self, identity);
      if (!r)
        return false;
      finish_run(self, *r, "Exited");
      return true;
    },
    [=](wake_atom) {
      self->state.wake_at = 0;
      pump(self);
    },
    [=](resolved_atom, const std::string& host, const std::string& address,
        const std::string& error) {
      auto& st = self->state;
      --st.dns_running;
      st.dns_busy.erase(host);
      auto now = now_ms();
      if (address.empty())
        spdlog::warn("dispatcher: {} does not resolve ({}); its requests are keyed by host "
                     "and their nodes report the error", host, error);
      if (st.dns_cache.size() >= dns_cache_max)
        st.dns_cache.clear();
      st.dns_cache[host] = {address, now + (address.empty() ? dns_failure_ttl_ms : dns_ttl_ms)};
      for (auto& [identity, r] : st.runs) {
        host_queues::settled out;
        r.hosts->resolved(host, address, now, out);
        settle(self, r, out);
      }
      pump(self);
    },
    [=](tick_atom) {
      auto now = now_ms();
      for (auto& [identity, r] : self->state.runs) {
        std::vector<std::string> expired;
        for (auto& [id, b] : r.blocks)
          if (b.lease_until < now)
            expired.push_back(id);
        for (auto& id : expired) {
          ++self->state.leases_expired;
          requeue(self, r, r.blocks.at(id), "lease expired");
        }
      }
      for (auto it = self->state.runs.begin(); it != self->state.runs.end();) {
        auto& r = it->second;
        ++it;  // maybe_finish may erase r
        maybe_finish(self, r);
      }
      if (now - self->state.last_status_ms >= self->state.opts.status_interval.count()) {
        self->state.last_status_ms = now;
        for (auto& [identity, r] : self->state.runs)
          if (r.status_dirty)
            write_status(self, r, "Running");
      }
      pump(self);
      self->delayed_send(self, self->state.opts.tick, tick_atom::value);
    },
    [=](hosts_atom, const std::string& identity) -> caf::result<std::string> {
      auto* r = find_run(self, identity);
      if (!r)
        return unknown_run(identity);
      json hosts = json::array();
      for (auto& v : r->hosts->view(now_ms()))
        hosts.push_back({{"key", v.key},
                         {"pending", v.pending},
                         {"waitingForRobots", v.held},
                         {"inFlight", v.in_flight},
                         {"blocks", v.blocks},
                         {"done", v.done},
                         {"errors", v.errors},
                         {"errorsByKind", v.errors_by_kind},
                         {"skipped", v.skipped},
                         {"deferred", v.deferred},
                         {"concurrency", v.concurrency},
                         {"maxConcurrency", v.max_concurrency},
                         {"delayMs", v.delay_ms},
                         {"pausedUntil", v.paused_until_ms},
                         {"latencyMs", v.latency_ms},
                         {"robots", v.robots}});
      // Requests of `ip` keys whose host name has no address yet belong to no key.
      return json{{"identity", identity}, {"hosts", hosts},
                  {"waitingForAddress", r->hosts->unresolved()}}.dump();
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      auto now = now_ms();
      json runs = json::array();
      std::vector<host_view> busiest;
      for (auto& [id, r] : st.runs) {
        runs.push_back({{"identity", id}, {"jobId", r.job_id}, {"total", r.total},
                        {"success", r.all.success}, {"error", r.all.error},
                        {"skipped", r.all.skipped}, {"pending", r.hosts->waiting()},
                        {"spilled", r.spilled},
                        {"blocksLeased", r.blocks.size()}, {"unacked", r.unacked},
                        {"unackedBytes", r.unacked_bytes}, {"cut", r.cut},
                        {"completed", r.completed}});
        for (auto& v : r.hosts->view(now))
          busiest.push_back(std::move(v));
      }
      // Bounded cardinality for /metrics: the ten keys with most work in flight or waiting.
      std::sort(busiest.begin(), busiest.end(), [](auto& a, auto& b) {
        return a.in_flight + a.pending > b.in_flight + b.pending;
      });
      if (busiest.size() > 10)
        busiest.resize(10);
      json top = json::array();
      for (auto& v : busiest)
        top.push_back({{"key", v.key}, {"inFlight", v.in_flight}, {"pending", v.pending},
                       {"done", v.done}, {"errors", v.errors}, {"skipped", v.skipped},
                       {"delayMs", v.delay_ms}, {"concurrency", v.concurrency},
                       {"paused", v.paused_until_ms > 0 ? 1 : 0}});
      json nodes = json::object();
      for (auto& [id, n] : st.nodes)
        nodes[id] = {{"leases", n.leases.size()}, {"capacity", n.capacity},
                     {"disabled", n.disabled}};
      return json{{"requestsAccepted", st.requests_accepted}, {"duplicates", st.duplicates},
                  {"blocksBuilt", st.blocks_built}, {"blocksLeased", st.blocks_leased},
                  {"blocksDone", st.blocks_done}, {"blocksFailed", st.blocks_failed},
                  {"leasesExpired", st.leases_expired}, {"resultsStored", st.results_stored},
                  {"resultsAcked", st.results_acked}, {"runsFinished", st.runs_finished},
                  {"resultsReleased", st.results_released},
                  {"resultBytes", st.result_bytes}, {"downloadErrors", st.download_errors},
                  {"proxies", proxies_json(st.proxies)},
                  {"requestsSkipped", st.skipped}, {"requestsDeferred", st.deferred},
                  {"requestsFailedUndownloaded", st.failed_undownloaded},
                  {"robotsFetched", st.robots_fetched}, {"hostPauses", st.pauses},
                  {"requestsUnspilled", st.unspilled}, {"redirectsFollowed", st.redirects},
                  {"requestsCut", st.cut},
                  {"topHosts", top}, {"runs", runs}, {"nodes", nodes},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace dispatch

caf::actor spawn_block_dispatcher(caf::actor_system& sys, caf::actor storage,
                                  dispatch_options opts) {
  return sys.spawn(dispatch::dispatcher, std::move(storage), opts);
}

} // namespace spiderhub::actors
