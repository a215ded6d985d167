// The dispatcher's result path: stored results handed to the worker consuming a run
// (Poll, long Polls held until results arrive, Ack). Each Poll reply is bounded by a
// count and by bytes, so neither a run of large pages nor a worker reconnecting to a
// backlog makes a reply larger than the worker's connection can take.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "actors/dispatch/dispatcher_state.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors::dispatch {
namespace {

using poll_promise = caf::typed_response_promise<std::string>;

/// The JSON array a Poll answers: each stored result object with its resultId spliced in
/// front (no re-parse). Sized once: a reply holds many bodies, and growing it by
/// doubling would copy them again and again.
std::string poll_reply(const std::vector<storage::result_row>& rows) {
  std::size_t bytes = 2;
  for (const auto& row : rows)
    bytes += row.body.size() + 32;
  std::string out;
  out.reserve(bytes);
  out += '[';
  for (auto& row : rows) {
    if (out.size() > 1)
      out += ',';
    out += "{\"resultId\":";
    out += std::to_string(row.id);
    if (row.body.size() > 2)
      out += ',';
    out.append(row.body, 1, std::string::npos);
  }
  out += ']';
  return out;
}

void read_poll(self_ptr self, run_entry& r, poll_promise rp, std::int32_t limit,
               std::int64_t max_bytes, std::int32_t wait_ms, const caf::actor& session);

/// Holds a Poll of `session` until results arrive for it or `wait_ms` passed.
void hold_poll(self_ptr self, run_entry& r, poll_promise rp, std::int32_t limit,
               std::int64_t max_bytes, std::int32_t wait_ms, const caf::actor& session) {
  auto token = ++self->state.poll_token;
  r.consumers[session].held = run_entry::held_poll{std::move(rp), limit, max_bytes, wait_ms, token};
  self->delayed_send(self, std::chrono::milliseconds(wait_ms), protocol::poll_wake_atom::value,
                     r.identity, token);
}

/// Whether a read may find results no consumer holds: some came back from a worker that
/// went away, or some were stored since the last read that came back short.
bool results_to_hand_out(const run_entry& r) {
  if (!r.returned.empty())
    return true;
  return r.unacked > static_cast<std::int64_t>(r.lease_of.size()) &&
         r.drained_gen != r.stored_gen;
}

/// Serves one held Poll when a read may find something for it (one read at a time: the
/// next one is served when that read is over).
void serve_held(self_ptr self, run_entry& r) {
  if (r.poll_in_flight || !results_to_hand_out(r))
    return;
  for (auto& [session, c] : r.consumers)
    if (auto held = std::exchange(c.held, std::nullopt)) {
      read_poll(self, r, std::move(held->rp), held->limit, held->max_bytes, held->wait_ms,
                session);
      return;
    }
}

/// Reads up to `limit` results (`max_bytes` of them) for `session` — returned ones first,
/// then those after the run's cursor — leases them to it and answers `rp`; an empty read
/// of a long Poll is held instead.
void read_poll(self_ptr self, run_entry& r, poll_promise rp, std::int32_t limit,
               std::int64_t max_bytes, std::int32_t wait_ms, const caf::actor& session) {
  r.poll_in_flight = true;
  auto identity = r.identity;
  auto after = r.cursor;
  auto gen = r.stored_gen;
  std::vector<std::int64_t> again;  // returned results, oldest first
  for (auto id : r.returned) {
    if (static_cast<std::int32_t>(again.size()) >= limit)
      break;
    again.push_back(id);
  }
  self
    ->request(self->state.storage, caf::infinite, protocol::read_atom::value,
              protocol::read_fn([identity, after, limit, max_bytes, again](storage::database& db) {
                bool cut = false;
                storage::crawl_repository crawl(db);
                auto rows = again.empty()
                              ? crawl.results_after(identity, after, limit, max_bytes, &cut)
                              : crawl.results_by_ids(identity, again, max_bytes, &cut);
                std::vector<std::int64_t> ids;
                for (auto& row : rows)
                  ids.push_back(row.id);
                // Drained: the read saw every result stored when it started.
                bool drained = again.empty() && !cut && static_cast<std::int32_t>(rows.size()) < limit;
                return caf::make_message(poll_reply(rows), std::move(ids), cut, drained);
              }))
    .then(
      [=](std::string& text, std::vector<std::int64_t>& ids, bool cut, bool drained) mutable {
        auto* run = find_run(self, identity);
        if (!run) {
          rp.deliver(std::move(text));
          return;
        }
        run->poll_in_flight = false;
        if (run->consumers.count(session)) {
          if (again.empty()) {
            if (!ids.empty())
              run->cursor = std::max(run->cursor, ids.back());
            run->drained_gen = drained ? gen : run_entry::no_gen;
          } else {
            // Every returned id up to the last one read is settled (read now, or acked
            // since: gone from storage); a read the byte budget cut keeps the rest.
            auto upto = cut ? ids.back() : again.back();
            for (auto id : again)
              if (id <= upto)
                run->returned.erase(id);
          }
          for (auto id : ids)
            if (run->unacked_sizes.count(id))
              run->lease_of[id] = session;
          if (ids.empty() && wait_ms > 0 && !run->consumers[session].held) {
            if (results_to_hand_out(*run)) {
              // Counted as stored but not there to read (acked meanwhile, or a store
              // whose rows another read already handed out): look again.
              read_poll(self, *run, std::move(rp), limit, max_bytes, wait_ms, session);
              return;
            }
            if (more_may_come(self, *run)) {
              hold_poll(self, *run, std::move(rp), limit, max_bytes, wait_ms, session);
              serve_held(self, *run);
              return;
            }
          }
        }
        rp.deliver(std::move(text));
        serve_held(self, *run);
      },
      [=](caf::error& err) mutable {
        if (auto* run = find_run(self, identity))
          run->poll_in_flight = false;
        rp.deliver(std::move(err));
      });
}

/// Ends a consumer: answers its held Poll and hands its leases back to the run.
void drop_consumer(self_ptr self, run_entry& r,
                   std::map<caf::actor, run_entry::consumer>::iterator it) {
  if (it->second.held)
    it->second.held->rp.deliver(std::string("[]"));
  for (auto l = r.lease_of.begin(); l != r.lease_of.end();)
    if (l->second == it->first) {
      ++self->state.results_released;
      r.returned.insert(l->first);
      l = r.lease_of.erase(l);
    } else {
      ++l;
    }
  r.consumers.erase(it);
}

} // namespace

bool worker_behind(self_ptr self, const run_entry& r) {
  const auto& o = self->state.opts;
  return (o.max_unacked > 0 && r.unacked >= o.max_unacked) ||
         (o.max_unacked_bytes > 0 && r.unacked_bytes >= o.max_unacked_bytes);
}

void add_unacked(run_entry& r, std::int64_t id, std::int64_t bytes) {
  if (r.unacked_sizes.emplace(id, bytes).second)
    r.unacked_bytes += bytes;
}

bool more_may_come(self_ptr self, const run_entry& r) {
  // Requests wait or are out on nodes, and acks are not what holds new blocks back
  // (worker_behind). A worker waiting in a Poll sends no Ack and no Push (the sample
  // worker's thread waits in it).
  if (worker_behind(self, r))
    return false;
  return r.hosts->waiting() > 0 || !r.blocks.empty() || r.spilled > 0 || r.unspilling;
}

void answer_held_polls(run_entry& r) {
  for (auto& [session, c] : r.consumers)
    if (auto held = std::exchange(c.held, std::nullopt))
      held->rp.deliver(std::string("[]"));
}

void results_stored(self_ptr self, run_entry& r) {
  ++r.stored_gen;
  serve_held(self, r);
}

void consumer_gone(self_ptr self, const caf::actor_addr& session) {
  for (auto& [identity, r] : self->state.runs) {
    for (auto it = r.consumers.begin(); it != r.consumers.end();)
      if (it->first.address() == session)
        drop_consumer(self, r, it++);
      else
        ++it;
    serve_held(self, r);
  }
}

caf::result<std::string> poll(self_ptr self, const std::string& identity, std::int32_t max,
                              std::int32_t wait_ms, std::int64_t max_bytes,
                              const caf::actor& session) {
  auto* r = find_run(self, identity);
  if (!r)
    return unknown_run(identity);
  if (!r->consumers.count(session)) {
    if (r->workers_per_run == 1 && !r->consumers.empty()) {
      // The run's one worker reconnected: everything not acked goes out again, from the
      // oldest, a byte budget at a time like any Poll.
      while (!r->consumers.empty())
        drop_consumer(self, *r, r->consumers.begin());
      r->lease_of.clear();
      r->returned.clear();
      r->cursor = 0;
      r->drained_gen = run_entry::no_gen;
    }
    r->consumers[session];
    self->monitor(session);
  }
  if (r->consumers[session].held)
    return std::string("[]");
  auto limit = std::clamp<std::int32_t>(max, 1, self->state.opts.max_poll);
  max_bytes = std::clamp<std::int64_t>(max_bytes, 1, self->state.opts.max_poll_bytes);
  // One read at a time: a Poll meeting another consumer's read waits for its end.
  bool available = results_to_hand_out(*r);
  if (r->poll_in_flight || !available) {
    if (wait_ms <= 0 || !(available || more_may_come(self, *r)))
      return std::string("[]");
    auto rp = self->make_response_promise<std::string>();
    hold_poll(self, *r, rp, limit, max_bytes, wait_ms, session);
    return rp;
  }
  auto rp = self->make_response_promise<std::string>();
  read_poll(self, *r, rp, limit, max_bytes, wait_ms, session);
  return rp;
}

void poll_wait_over(self_ptr self, const std::string& identity, std::uint64_t token) {
  if (auto* r = find_run(self, identity))
    for (auto& [session, c] : r->consumers)
      if (c.held && c.held->token == token) {
        std::exchange(c.held, std::nullopt)->rp.deliver(std::string("[]"));
        return;
      }
}

void session_polls_over(self_ptr self, const caf::actor& session) {
  for (auto& [identity, r] : self->state.runs)
    if (auto it = r.consumers.find(session); it != r.consumers.end())
      if (auto held = std::exchange(it->second.held, std::nullopt))
        held->rp.deliver(std::string("[]"));
}

caf::result<bool> ack(self_ptr self, const std::string& identity, std::vector<std::int64_t> ids) {
  if (!find_run(self, identity))
    return unknown_run(identity);
  auto rp = self->make_response_promise<bool>();
  auto removed = std::make_shared<int>(0);
  auto acked = std::make_shared<std::vector<std::int64_t>>(std::move(ids));
  store(self,
        [identity, acked, removed](storage::database& db) {
          *removed = storage::crawl_repository(db).delete_results(identity, *acked);
        },
        [=](bool ok) mutable {
          if (!ok) {
            rp.deliver(caf::make_error(caf::sec::runtime_error, "ack not stored"));
            return;
          }
          if (auto* run = find_run(self, identity)) {
            bool was_held = worker_behind(self, *run);
            run->unacked -= *removed;
            for (auto id : *acked) {
              if (auto it = run->unacked_sizes.find(id); it != run->unacked_sizes.end()) {
                run->unacked_bytes -= it->second;
                run->unacked_sizes.erase(it);
              }
              run->lease_of.erase(id);
              run->returned.erase(id);
            }
            self->state.results_acked += *removed;
            maybe_finish(self, *run);
            if (was_held)
              pump(self);  // the worker caught up: blocks again
          }
          rp.deliver(true);
        });
  return rp;
}

} // namespace spiderhub::actors::dispatch
