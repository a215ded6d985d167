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

/// Holds a Poll that found nothing new until results are stored or `wait_ms` passed.
void hold_poll(self_ptr self, run_entry& r, poll_promise rp, std::int32_t limit,
               std::int64_t max_bytes, std::int32_t wait_ms, const caf::actor& session) {
  auto token = ++self->state.poll_token;
  r.held = run_entry::held_poll{std::move(rp), limit, max_bytes, wait_ms, session, token};
  self->delayed_send(self, std::chrono::milliseconds(wait_ms), protocol::poll_wake_atom::value, r.identity,
                     token);
}

/// Reads up to `limit` results (`max_bytes` of them) after the consumer's cursor and
/// answers `rp` with them; an empty read of a long Poll is held instead.
void read_poll(self_ptr self, run_entry& r, poll_promise rp, std::int32_t limit,
               std::int64_t max_bytes, std::int32_t wait_ms, const caf::actor& session) {
  r.poll_in_flight = true;
  auto identity = r.identity;
  auto after = r.cursor;
  auto gen = r.stored_gen;
  self
    ->request(self->state.storage, caf::infinite, protocol::read_atom::value,
              protocol::read_fn([identity, after, limit, max_bytes](storage::database& db) {
                bool cut = false;
                auto rows = storage::crawl_repository(db).results_after(identity, after, limit,
                                                                         max_bytes, &cut);
                auto last = rows.empty() ? after : rows.back().id;
                // Drained: the read saw every result stored when it started.
                bool drained = !cut && static_cast<std::int32_t>(rows.size()) < limit;
                return caf::make_message(poll_reply(rows), last,
                                         static_cast<std::int32_t>(rows.size()), drained);
              }))
    .then(
      [=](std::string& text, std::int64_t last, std::int32_t count, bool drained) mutable {
        auto* run = find_run(self, identity);
        if (run) {
          run->poll_in_flight = false;
          if (run->consumer == session) {
            run->cursor = std::max(run->cursor, last);
            run->drained_gen = drained ? gen : run_entry::no_gen;
            if (count == 0 && wait_ms > 0 && !run->held && more_may_come(self, *run)) {
              // Counted as stored but not there to read (acked meanwhile, or a store
              // whose rows another read already handed out): wait for the next ones.
              if (run->stored_gen != gen)
                read_poll(self, *run, std::move(rp), limit, max_bytes, wait_ms, session);
              else
                hold_poll(self, *run, std::move(rp), limit, max_bytes, wait_ms, session);
              return;
            }
          }
        }
        rp.deliver(std::move(text));
      },
      [=](caf::error& err) mutable {
        if (auto* run = find_run(self, identity))
          run->poll_in_flight = false;
        rp.deliver(std::move(err));
      });
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

void answer_held_poll(run_entry& r) {
  if (auto held = std::exchange(r.held, std::nullopt))
    held->rp.deliver(std::string("[]"));
}

void results_stored(self_ptr self, run_entry& r) {
  ++r.stored_gen;
  if (auto held = std::exchange(r.held, std::nullopt))
    read_poll(self, r, std::move(held->rp), held->limit, held->max_bytes, held->wait_ms,
              held->session);
}

caf::result<std::string> poll(self_ptr self, const std::string& identity, std::int32_t max,
                              std::int32_t wait_ms, std::int64_t max_bytes,
                              const caf::actor& session) {
  auto* r = find_run(self, identity);
  if (!r)
    return unknown_run(identity);
  if (r->consumer != session) {
    // A new consumer (worker reconnected): redeliver everything not acked, from the
    // oldest, a byte budget at a time like any Poll.
    answer_held_poll(*r);
    r->consumer = session;
    r->cursor = 0;
    r->drained_gen = run_entry::no_gen;
  }
  if (r->poll_in_flight || r->held)
    return std::string("[]");
  auto limit = std::clamp<std::int32_t>(max, 1, self->state.opts.max_poll);
  max_bytes = std::clamp<std::int64_t>(max_bytes, 1, self->state.opts.max_poll_bytes);
  bool nothing_new = r->unacked == 0 || r->drained_gen == r->stored_gen;
  if (nothing_new && (wait_ms <= 0 || !more_may_come(self, *r)))
    return std::string("[]");
  auto rp = self->make_response_promise<std::string>();
  if (nothing_new)
    hold_poll(self, *r, rp, limit, max_bytes, wait_ms, session);
  else
    read_poll(self, *r, rp, limit, max_bytes, wait_ms, session);
  return rp;
}

void poll_wait_over(self_ptr self, const std::string& identity, std::uint64_t token) {
  if (auto* r = find_run(self, identity); r && r->held && r->held->token == token)
    answer_held_poll(*r);
}

void session_polls_over(self_ptr self, const caf::actor& session) {
  for (auto& [identity, r] : self->state.runs)
    if (r.held && r.held->session == session)
      answer_held_poll(r);
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
            for (auto id : *acked)
              if (auto it = run->unacked_sizes.find(id); it != run->unacked_sizes.end()) {
                run->unacked_bytes -= it->second;
                run->unacked_sizes.erase(it);
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
