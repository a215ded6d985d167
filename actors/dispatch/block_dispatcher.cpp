#include "actors/dispatch/block_dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/digest.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors::restore_detail {

// What the dispatcher reads back from storage for one run after a restart.
struct restored_run {
  storage::running_row running;
  std::vector<std::string> hashes;
  std::vector<storage::block_row> blocks;
  std::vector<storage::request_row> pending;  // not downloaded yet, in or out of blocks
  std::vector<storage::job_status_row> statuses;  // per-node counters of the run
  storage::request_totals totals;
  std::int64_t unacked = 0;
};
using restored_runs = std::shared_ptr<std::vector<restored_run>>;

} // namespace spiderhub::actors::restore_detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(spiderhub::actors::restore_detail::restored_runs)

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using restore_detail::restored_run;
using restore_detail::restored_runs;
using storage::block_state;
using json = nlohmann::json;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

using hashed_request = fast::raw_request;  // dedup hash + the request's JSON text

struct block_entry {
  std::string id;
  std::vector<hashed_request> requests;
  std::unordered_set<std::string> outstanding;  // hashes still without a result
  block_state state = block_state::ready;
  std::string node_id;
  std::int64_t lease_until = 0;                 // unix ms
  int attempts = 0;
};

struct counters {
  std::int64_t success = 0, error = 0;
};

struct run_entry {
  std::string job_id;
  std::string identity;
  int priority = 0;
  std::string full_class_name;
  std::string arguments;
  site site_settings;
  std::string site_json = "{}";                  // site_settings encoded once for every block
  std::unordered_set<std::string> seen;          // dedup hashes of this run
  std::deque<hashed_request> pending;            // accepted, not yet in a block
  std::deque<std::string> ready;                 // ids of ready blocks, oldest first
  std::unordered_map<std::string, block_entry> blocks;  // ready and leased blocks
  int leased = 0;                                // blocks out on nodes (Consuming)
  std::int64_t total = 0;
  counters all;
  std::map<std::string, counters> per_node;
  std::int64_t unacked = 0;                      // stored results not yet acked
  std::int64_t cursor = 0;                       // last result id handed to the consumer
  bool poll_in_flight = false;
  bool completed = false;                        // worker sent Complete
  bool finishing = false;
  bool status_dirty = true;
  caf::actor consumer;                           // worker session polling this run
};

struct node_entry {
  caf::actor session;
  int capacity = 4;
  bool disabled = false;  // `console disable NODE`: keeps its leases, gets no new ones
  std::set<std::pair<std::string, std::string>> leases;  // (identity, block id)
};

struct dispatcher_state {
  caf::actor storage;
  dispatch_options opts;
  std::map<std::string, run_entry> runs;
  std::map<std::string, node_entry> nodes;
  std::set<std::string> disabled;  // node ids, loaded at start, updated by node_enabled_atom
  std::int64_t last_status_ms = 0;
  // Counters for stats_atom and /metrics.
  std::uint64_t requests_accepted = 0, duplicates = 0, blocks_built = 0, blocks_leased = 0,
                blocks_done = 0, blocks_failed = 0, leases_expired = 0, results_stored = 0,
                results_acked = 0, runs_finished = 0, result_bytes = 0;
  std::map<std::string, std::uint64_t> download_errors;  // by kind, see error_kind()
  static inline const char* name = "block_dispatcher";
};

using self_ptr = caf::stateful_actor<dispatcher_state>*;

// Kind of a failed download for /metrics: http_4xx, http_5xx, timeout, dns, connect,
// too_large or network.
const char* error_kind(std::int32_t status, const std::string& error) {
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
  if (has("too large") || has("maximum"))
    return "too_large";
  return "network";
}

// Persists a write and runs `then` (ok = committed) in the dispatcher's context.
void store(self_ptr self, write_fn fn, std::function<void(bool)> then = {}) {
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
  s.left = node_id.empty() ? std::max<std::int64_t>(0, total - c.success - c.error) : 0;
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

void release_lease(self_ptr self, run_entry& r, block_entry& b) {
  if (b.state != block_state::used)
    return;
  auto it = self->state.nodes.find(b.node_id);
  if (it != self->state.nodes.end())
    it->second.leases.erase({r.identity, b.id});
  --r.leased;
}

// Marks every outstanding request of a block as failed (too many attempts).
void fail_block(self_ptr self, run_entry& r, block_entry& b, const std::string& why) {
  spdlog::warn("dispatcher: run {} block {} failed after {} attempts: {}", r.identity, b.id,
               b.attempts, why);
  ++self->state.blocks_failed;
  std::vector<std::string> hashes(b.outstanding.begin(), b.outstanding.end());
  r.all.error += static_cast<std::int64_t>(hashes.size());
  r.status_dirty = true;
  store(self, [identity = r.identity, id = b.id, attempts = b.attempts,
               hashes](storage::database& db) {
    storage::crawl_repository repo(db);
    repo.set_block_state(id, block_state::failed, "", 0, attempts);
    for (auto& h : hashes)
      repo.finish_request(identity, h, storage::request_state::error);
  });
  auto id = b.id;  // b dies with the erase
  r.blocks.erase(id);
}

// Puts a leased block back to ready (or fails it when out of attempts).
void requeue(self_ptr self, run_entry& r, block_entry& b, const std::string& why) {
  release_lease(self, r, b);
  if (b.attempts >= self->state.opts.max_attempts) {
    fail_block(self, r, b, why);
    return;
  }
  spdlog::info("dispatcher: run {} block {} back to ready: {}", r.identity, b.id, why);
  b.state = block_state::ready;
  b.node_id.clear();
  b.lease_until = 0;
  r.ready.push_back(b.id);
  store(self, [id = b.id, attempts = b.attempts](storage::database& db) {
    storage::crawl_repository(db).set_block_state(id, block_state::ready, "", 0, attempts);
  });
}

void maybe_finish(self_ptr self, run_entry& r);

// Groups up to block_size pending requests into a new ready block.
void build_block(self_ptr self, run_entry& r) {
  block_entry b;
  b.id = core::new_guid();
  auto n = std::min<std::size_t>(r.pending.size(), self->state.opts.block_size);
  b.requests.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    b.outstanding.insert(r.pending.front().hash);
    b.requests.push_back(std::move(r.pending.front()));
    r.pending.pop_front();
  }
  std::string hashes;
  for (auto& h : b.requests) {
    if (!hashes.empty())
      hashes += ',';
    hashes += h.hash;
  }
  store(self, [identity = r.identity, id = b.id, hashes](storage::database& db) {
    storage::block_row row;
    row.id = id;
    row.identity = identity;
    row.state = block_state::ready;
    row.hashes = hashes;
    storage::crawl_repository(db).upsert_block(row);
  });
  ++self->state.blocks_built;
  r.ready.push_back(b.id);
  r.blocks.emplace(b.id, std::move(b));
}

// The Block JSON a node receives; requests are spliced in as the worker sent them.
std::string to_wire(const run_entry& r, const block_entry& b, int thread_num) {
  std::string out;
  std::size_t size = 256 + r.site_json.size();
  for (auto& h : b.requests)
    size += h.json.size() + 1;
  out.reserve(size);
  out += "{\"blockId\":";
  fast::append_json_string(out, b.id);
  out += ",\"identity\":";
  fast::append_json_string(out, r.identity);
  out += ",\"command\":";
  out += std::to_string(static_cast<int>(block_command::download));
  out += ",\"threadNum\":";
  out += std::to_string(thread_num);
  out += ",\"changeIpPattern\":\"\",\"site\":";
  out += r.site_json;
  out += ",\"cookies\":";
  fast::append_json_string(out, r.site_settings.cookies);
  out += ",\"requests\":[";
  bool first = true;
  for (auto& h : b.requests) {
    if (!b.outstanding.count(h.hash))
      continue;  // already has a result from an earlier lease
    if (!first)
      out += ',';
    first = false;
    out += h.json;
  }
  out += "]}";
  return out;
}

// Picks the run to serve next: priority DESC, then least consuming.
run_entry* next_run(self_ptr self) {
  run_entry* best = nullptr;
  for (auto& [id, r] : self->state.runs) {
    if (r.finishing || (r.ready.empty() && r.pending.empty()))
      continue;
    if (!best || r.priority > best->priority ||
        (r.priority == best->priority && r.leased < best->leased))
      best = &r;
  }
  return best;
}

// Leases one block of `r` to `node_id`; returns its JSON for the wire.
std::optional<std::string> lease_one(self_ptr self, run_entry& r, const std::string& node_id) {
  while (!r.ready.empty() || !r.pending.empty()) {
    if (r.ready.empty())
      build_block(self, r);
    auto id = r.ready.front();
    r.ready.pop_front();
    auto it = r.blocks.find(id);
    if (it == r.blocks.end() || it->second.state != block_state::ready)
      continue;
    auto& b = it->second;
    b.state = block_state::used;
    b.node_id = node_id;
    b.lease_until = now_ms() + self->state.opts.lease_timeout.count();
    ++b.attempts;
    ++r.leased;
    self->state.nodes[node_id].leases.insert({r.identity, b.id});
    ++self->state.blocks_leased;
    store(self, [id = b.id, node_id, lease = b.lease_until,
                 attempts = b.attempts](storage::database& db) {
      storage::crawl_repository(db).set_block_state(id, block_state::used, node_id, lease,
                                                    attempts);
    });
    return to_wire(r, b, self->state.opts.thread_num);
  }
  return std::nullopt;
}

int free_capacity(const node_entry& n) {
  if (n.disabled)
    return 0;
  return n.capacity - static_cast<int>(n.leases.size());
}

// Pushes ready work to nodes with free capacity, most free first.
void pump(self_ptr self) {
  for (;;) {
    // Nothing to lease is the common case on node connects: skip the node scan.
    if (!next_run(self))
      return;
    node_entry* target = nullptr;
    std::string target_id;
    for (auto& [id, n] : self->state.nodes) {
      if (free_capacity(n) > 0 && (!target || free_capacity(n) > free_capacity(*target))) {
        target = &n;
        target_id = id;
      }
    }
    if (!target)
      return;
    auto* r = next_run(self);
    if (!r)
      return;
    auto b = lease_one(self, *r, target_id);
    if (!b)
      return;
    self->send(target->session, receive_atom::value, std::move(*b));
  }
}

void finish_run(self_ptr self, run_entry& r, const std::string& status) {
  r.finishing = true;
  spdlog::info("dispatcher: run {} of job {} finished ({}): total {} success {} error {}",
               r.identity, r.job_id, status, r.total, r.all.success, r.all.error);
  write_status(self, r, status);
  auto identity = r.identity;
  store(self, [identity](storage::database& db) {
    storage::run_repository(db).remove_running(identity);
    storage::crawl_repository(db).purge_run(identity);
  });
  if (r.consumer)
    self->send(r.consumer, exit_atom::value, identity);
  for (auto& [id, b] : r.blocks)
    if (b.state == block_state::used)
      if (auto n = self->state.nodes.find(b.node_id); n != self->state.nodes.end()) {
        n->second.leases.erase({identity, id});
        self->send(n->second.session, exit_atom::value, identity);
      }
  ++self->state.runs_finished;
  self->state.runs.erase(identity);
}

void maybe_finish(self_ptr self, run_entry& r) {
  if (r.completed && !r.finishing && r.pending.empty() && r.blocks.empty() && r.unacked == 0)
    finish_run(self, r, "Success");
}

run_entry* find_run(self_ptr self, const std::string& identity) {
  auto it = self->state.runs.find(identity);
  return it == self->state.runs.end() || it->second.finishing ? nullptr : &it->second;
}

caf::error unknown_run(const std::string& identity) {
  return app_error("not_found", "unknown or finished run '" + identity + "'");
}

void restore(self_ptr self, std::vector<restored_run>& runs) {
  for (auto& rr : runs) {
    run_entry r;
    r.job_id = rr.running.job_id;
    r.identity = rr.running.identity;
    r.priority = rr.running.priority;
    r.completed = rr.running.worker_completed;
    r.full_class_name = rr.running.full_class_name;
    r.arguments = rr.running.arguments;
    try {
      r.site_settings = decode<site>(json::parse(rr.running.site_json), "site");
      r.site_json = to_json(r.site_settings).dump();
    } catch (const std::exception& e) {
      spdlog::warn("dispatcher: run {} has bad site settings ({}); using defaults", r.identity,
                   e.what());
    }
    r.seen.insert(rr.hashes.begin(), rr.hashes.end());
    r.total = rr.totals.total;
    r.all.success = rr.totals.success;
    r.all.error = rr.totals.error;
    r.unacked = rr.unacked;
    for (auto& st : rr.statuses)
      if (!st.node_id.empty())
        r.per_node[st.node_id] = counters{st.success, st.error};
    // Pending requests go back to the block that holds them (ready again: its lease
    // died with the old process), the rest back to the pending queue.
    std::unordered_map<std::string, std::string> block_of;
    for (auto& brow : rr.blocks) {
      if (brow.state != block_state::ready && brow.state != block_state::used)
        continue;
      std::size_t start = 0;
      while (start < brow.hashes.size()) {
        auto end = brow.hashes.find(',', start);
        if (end == std::string::npos)
          end = brow.hashes.size();
        block_of[brow.hashes.substr(start, end - start)] = brow.id;
        start = end + 1;
      }
      block_entry b;
      b.id = brow.id;
      b.attempts = brow.attempts;
      r.blocks.emplace(b.id, std::move(b));
    }
    for (auto& row : rr.pending) {
      hashed_request h{row.hash, *row.body};
      auto it = block_of.find(row.hash);
      if (it != block_of.end()) {
        auto& b = r.blocks.at(it->second);
        b.outstanding.insert(h.hash);
        b.requests.push_back(std::move(h));
      } else {
        r.pending.push_back(std::move(h));
      }
    }
    for (auto it = r.blocks.begin(); it != r.blocks.end();) {
      if (it->second.requests.empty()) {
        it = r.blocks.erase(it);  // every request of it already has its result
      } else {
        r.ready.push_back(it->first);
        ++it;
      }
    }
    spdlog::info("dispatcher: restored run {} (total {}, {} blocks to lease, {} pending, {} "
                 "unacked results)",
                 r.identity, r.total, r.blocks.size(), r.pending.size(), r.unacked);
    auto identity = r.identity;
    self->state.runs.emplace(identity, std::move(r));
    maybe_finish(self, self->state.runs.at(identity));
  }
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
                  for (auto& row : runs.running()) {
                    restored_run rr;
                    rr.running = row;
                    rr.hashes = crawl.request_hashes(row.identity);
                    rr.blocks = crawl.blocks(row.identity);
                    rr.pending = crawl.pending_requests(row.identity);
                    rr.statuses = runs.statuses_of_run(row.identity);
                    rr.totals = crawl.totals(row.identity);
                    rr.unacked = crawl.count_results(row.identity);
                    out.push_back(std::move(rr));
                  }
                  return caf::make_message(std::make_shared<std::vector<restored_run>>(
                    std::move(out)));
                }))
    .then(
      [=](restored_runs& runs) { restore(self, *runs); },
      [=](const caf::error& err) {
        spdlog::critical("dispatcher: cannot restore runs: {}", caf::to_string(err));
      });
  self->send(self, tick_atom::value);
  return {
    [=](start_run_atom, const run_spec& spec) -> caf::result<bool> {
      if (self->state.runs.count(spec.identity))
        return app_error("conflict", "run " + spec.identity + " already exists");
      run_entry r;
      r.job_id = spec.job_id;
      r.identity = spec.identity;
      r.priority = spec.priority;
      r.full_class_name = spec.full_class_name;
      r.arguments = spec.arguments;
      auto site_json = spec.site_json.empty() ? std::string("{}") : spec.site_json;
      try {
        r.site_settings = decode<site>(json::parse(site_json), "site");
        r.site_json = to_json(r.site_settings).dump();
      } catch (const std::exception& e) {
        return app_error("invalid", std::string("bad site settings: ") + e.what());
      }
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
      std::vector<hashed_request> fresh;
      std::vector<storage::request_row> rows;
      for (auto& req : requests) {
        if (!r->seen.insert(req.hash).second) {
          ++self->state.duplicates;
          continue;
        }
        storage::request_row row;
        row.identity = identity;
        row.hash = req.hash;
        row.body = req.json;
        rows.push_back(std::move(row));
        fresh.push_back(std::move(req));
      }
      auto n = static_cast<std::int32_t>(fresh.size());
      if (n == 0)
        return 0;
      auto rp = self->make_response_promise<std::int32_t>();
      auto shared = std::make_shared<std::vector<hashed_request>>(std::move(fresh));
      store(self,
            [rows = std::move(rows)](storage::database& db) {
              storage::crawl_repository repo(db);
              for (auto& row : rows)
                repo.insert_request(row);
            },
            [=](bool ok) mutable {
              auto* run = find_run(self, identity);
              if (!ok) {
                if (run)
                  for (auto& h : *shared)
                    run->seen.erase(h.hash);
                rp.deliver(caf::make_error(caf::sec::runtime_error,
                                           "requests not stored (storage failure)"));
                return;
              }
              if (run) {
                for (auto& h : *shared)
                  run->pending.push_back(std::move(h));
                run->total += n;
                run->status_dirty = true;
                self->state.requests_accepted += n;
                pump(self);
              }
              rp.deliver(n);
            });
      return rp;
    },
    [=](node_up_atom, const std::string& node_id, caf::actor session) {
      auto& n = self->state.nodes[node_id];
      n.session = session;
      n.capacity = self->state.opts.blocks_per_node;
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
        auto* r = next_run(self);
        if (!r)
          break;
        auto b = lease_one(self, *r, node_id);
        if (!b)
          break;
        if (out.size() > 1)
          out += ',';
        out += *b;
      }
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
        if (b.state == block_state::used && b.node_id == node_id) {
          requeue(self, *r, b, "node " + node_id + " reported: " + resp.exception);
          pump(self);
        }
        return true;
      }
      std::vector<storage::result_row> rows;
      std::vector<std::pair<std::string, bool>> outcomes;  // hash, success
      for (auto& res : resp.results) {
        if (!b.outstanding.erase(res.request_hash))
          continue;  // duplicate from an expired lease, or not ours
        bool ok = res.error.empty() && res.status_code >= 200 && res.status_code < 400;
        outcomes.emplace_back(res.request_hash, ok);
        self->state.result_bytes += res.body.size();
        if (!ok)
          ++self->state.download_errors[error_kind(res.status_code, res.error)];
        storage::result_row row;
        row.identity = resp.identity;
        row.block_id = resp.block_id;
        row.request_hash = res.request_hash;
        row.body = std::move(res.body);  // the node's JSON object, stored as sent
        rows.push_back(std::move(row));
      }
      bool block_done = b.outstanding.empty();
      auto rp = self->make_response_promise<bool>();
      auto identity = resp.identity;
      auto block_id = resp.block_id;
      auto n = static_cast<std::int64_t>(rows.size());
      store(self,
            [rows = std::move(rows), outcomes, block_done, block_id, identity,
             attempts = b.attempts, node_id](storage::database& db) {
              storage::crawl_repository repo(db);
              for (auto& row : rows)
                repo.insert_result(row);
              for (auto& [hash, ok] : outcomes)
                repo.finish_request(identity, hash,
                                    ok ? storage::request_state::success
                                       : storage::request_state::error);
              if (block_done)
                repo.set_block_state(block_id, block_state::success, node_id, 0, attempts);
            },
            [=](bool ok) mutable {
              auto* run = find_run(self, identity);
              if (!ok) {
                // Not stored: put the hashes back so another lease can deliver them.
                if (run)
                  if (auto it = run->blocks.find(block_id); it != run->blocks.end())
                    for (auto& [hash, good] : outcomes)
                      it->second.outstanding.insert(hash);
                rp.deliver(caf::make_error(caf::sec::runtime_error,
                                           "results not stored (storage failure)"));
                return;
              }
              if (run) {
                auto& per = run->per_node[node_id];
                for (auto& [hash, good] : outcomes) {
                  (good ? run->all.success : run->all.error)++;
                  (good ? per.success : per.error)++;
                }
                run->unacked += n;
                run->status_dirty = true;
                self->state.results_stored += n;
                if (auto it = run->blocks.find(block_id);
                    it != run->blocks.end() && it->second.outstanding.empty()) {
                  release_lease(self, *run, it->second);
                  run->blocks.erase(it);
                  ++self->state.blocks_done;
                  pump(self);
                }
              }
              rp.deliver(true);
            });
      return rp;
    },
    [=](poll_atom, const std::string& identity, std::int32_t max,
        caf::actor session) -> caf::result<std::string> {
      auto* r = find_run(self, identity);
      if (!r)
        return unknown_run(identity);
      if (r->consumer != session) {
        // A new consumer (worker reconnected): redeliver everything not acked.
        r->consumer = session;
        r->cursor = 0;
      }
      if (r->poll_in_flight || r->unacked == 0)
        return std::string("[]");
      r->poll_in_flight = true;
      auto limit = std::clamp<std::int32_t>(max, 1, self->state.opts.max_poll);
      auto rp = self->make_response_promise<std::string>();
      auto after = r->cursor;
      self
        ->request(self->state.storage, caf::infinite, read_atom::value,
                  read_fn([identity, after, limit](storage::database& db) {
                    auto rows = storage::crawl_repository(db).results_after(identity, after, limit);
                    // Splice resultId into each stored JSON object: no re-parse needed.
                    std::string out = "[";
                    std::int64_t last = after;
                    for (auto& row : rows) {
                      if (out.size() > 1)
                        out += ',';
                      out += "{\"resultId\":";
                      out += std::to_string(row.id);
                      if (row.body.size() > 2)
                        out += ',';
                      out.append(row.body, 1, std::string::npos);
                      last = row.id;
                    }
                    out += ']';
                    return caf::make_message(std::move(out), last);
                  }))
        .then(
          [=](std::string& text, std::int64_t last) mutable {
            if (auto* run = find_run(self, identity)) {
              run->poll_in_flight = false;
              if (run->consumer == session)
                run->cursor = std::max(run->cursor, last);
            }
            rp.deliver(std::move(text));
          },
          [=](caf::error& err) mutable {
            if (auto* run = find_run(self, identity))
              run->poll_in_flight = false;
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [=](ack_atom, const std::string& identity,
        std::vector<std::int64_t>& ids) -> caf::result<bool> {
      if (!find_run(self, identity))
        return unknown_run(identity);
      auto rp = self->make_response_promise<bool>();
      auto removed = std::make_shared<int>(0);
      store(self,
            [identity, ids = std::move(ids), removed](storage::database& db) {
              *removed = storage::crawl_repository(db).delete_results(identity, ids);
            },
            [=](bool ok) mutable {
              if (!ok) {
                rp.deliver(caf::make_error(caf::sec::runtime_error, "ack not stored"));
                return;
              }
              if (auto* run = find_run(self, identity)) {
                run->unacked -= *removed;
                self->state.results_acked += *removed;
                maybe_finish(self, *run);
              }
              rp.deliver(true);
            });
      return rp;
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
    [=](tick_atom) {
      auto now = now_ms();
      for (auto& [identity, r] : self->state.runs) {
        std::vector<std::string> expired;
        for (auto& [id, b] : r.blocks)
          if (b.state == block_state::used && b.lease_until < now)
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
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      json runs = json::array();
      for (auto& [id, r] : st.runs) {
        std::size_t ready = 0, leased = 0;
        for (auto& [bid, b] : r.blocks)
          (b.state == block_state::used ? leased : ready)++;
        runs.push_back({{"identity", id}, {"jobId", r.job_id}, {"total", r.total},
                        {"success", r.all.success}, {"error", r.all.error},
                        {"pending", r.pending.size()}, {"blocksReady", ready},
                        {"blocksLeased", leased}, {"unacked", r.unacked},
                        {"completed", r.completed}});
      }
      json nodes = json::object();
      for (auto& [id, n] : st.nodes)
        nodes[id] = {{"leases", n.leases.size()}, {"capacity", n.capacity},
                     {"disabled", n.disabled}};
      return json{{"requestsAccepted", st.requests_accepted}, {"duplicates", st.duplicates},
                  {"blocksBuilt", st.blocks_built}, {"blocksLeased", st.blocks_leased},
                  {"blocksDone", st.blocks_done}, {"blocksFailed", st.blocks_failed},
                  {"leasesExpired", st.leases_expired}, {"resultsStored", st.results_stored},
                  {"resultsAcked", st.results_acked}, {"runsFinished", st.runs_finished},
                  {"resultBytes", st.result_bytes}, {"downloadErrors", st.download_errors},
                  {"runs", runs}, {"nodes", nodes}, {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_block_dispatcher(caf::actor_system& sys, caf::actor storage,
                                  dispatch_options opts) {
  return sys.spawn(dispatcher, std::move(storage), opts);
}

} // namespace spiderhub::actors
