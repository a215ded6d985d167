#include "actors/storage/storage_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "storage/database.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;

struct pending_write {
  write_fn fn;
  caf::response_promise promise;
};

struct storage_state {
  std::shared_ptr<storage::database> db;
  std::vector<pending_write> batch;
  bool flush_scheduled = false;
  int batch_max = 5000;
  // Counters for stats_atom.
  std::uint64_t batches = 0, writes = 0, failed_writes = 0, reads = 0;
  double last_batch_ms = 0;
  // Commit latency histogram (Prometheus buckets, upper bounds in ms; last = +Inf).
  static constexpr double bucket_ms[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
  std::uint64_t buckets[std::size(bucket_ms) + 1] = {};
  double batch_ms_sum = 0;
  std::string last_error;
  // False from a write that failed for lack of disk (full, read-only, I/O error) until
  // the next batch commits: shown in /metrics and `console` so operators see why work is
  // being refused.
  bool healthy = true;
  // Called once when a write was fenced off: another broker holds the leadership.
  std::function<void(const std::string&)> on_fenced;
  bool fenced = false;
  static inline const char* name = "storage";
};

using storage_ptr = caf::stateful_actor<storage_state>*;

void deposed(storage_ptr self, const std::string& why) {
  auto& st = self->state;
  spdlog::critical("{}", why);
  if (!st.fenced && st.on_fenced) {
    st.fenced = true;
    st.on_fenced(why);
  }
}

// Commits the open batch: one transaction, a savepoint per write so one failing
// write is rolled back alone and reported to its caller only.
void flush(storage_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.batch.empty())
    return;
  auto started = std::chrono::steady_clock::now();
  auto batch = std::move(st.batch);
  st.batch.clear();
  struct reset_after {
    storage::database& db;
    ~reset_after() { db.reset_statements(); }
  } reset{*st.db};
  std::vector<bool> ok(batch.size(), true);
  auto& db = *st.db;
  try {
    db.begin();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      db.exec("SAVEPOINT w");
      try {
        batch[i].fn(db);
        db.exec("RELEASE w");
      } catch (const std::exception& e) {
        // On a full disk or an I/O error SQLite may have rolled the whole transaction
        // back already (a lost server connection ends it too): then every write of the
        // batch failed, not just this one.
        if (db.autocommit())
          throw;
        ok[i] = false;
        ++st.failed_writes;
        st.last_error = e.what();
        if (db.unavailable(e) && st.healthy) {
          st.healthy = false;
          spdlog::error("storage: the database cannot be written ({}): writes are refused "
                        "until it can; nothing refused was acknowledged", e.what());
        }
        spdlog::error("storage: write rolled back: {}", e.what());
        db.exec("ROLLBACK TO w");
        db.exec("RELEASE w");
      }
    }
    db.commit();
  } catch (const std::exception& e) {
    db.rollback();
    // The whole transaction is gone (disk full, read-only, I/O error, or fenced off: another
    // broker leads): every caller learns its write was not stored, so nothing is
    // acknowledged that was lost.
    bool fenced = dynamic_cast<const storage::fenced_error*>(&e) != nullptr;
    if (!fenced) {
      st.last_error = e.what();
      if (st.healthy)
        spdlog::error("storage: the database cannot be written ({}): writes are refused "
                      "until it can; nothing refused was acknowledged", e.what());
      st.healthy = false;
      spdlog::error("storage: batch of {} writes failed: {}", batch.size(), e.what());
    }
    auto why = fenced ? std::string(e.what()) : "storage failure: " + std::string(e.what());
    for (auto& w : batch)
      w.promise.deliver(caf::make_error(caf::sec::runtime_error, why));
    st.failed_writes += batch.size();
    if (fenced)
      deposed(self, e.what());
    return;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (ok[i])
      batch[i].promise.deliver(true);
    else
      batch[i].promise.deliver(
        caf::make_error(caf::sec::runtime_error, "storage write failed: " + st.last_error));
  }
  ++st.batches;
  st.writes += batch.size();
  bool all_ok = std::all_of(ok.begin(), ok.end(), [](bool b) { return b; });
  if (all_ok && !st.healthy) {
    st.healthy = true;
    spdlog::info("storage: the database is writable again");
  }
  st.last_batch_ms =
    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
      .count();
  st.batch_ms_sum += st.last_batch_ms;
  std::size_t b = 0;
  while (b < std::size(storage_state::bucket_ms) && st.last_batch_ms > storage_state::bucket_ms[b])
    ++b;
  ++st.buckets[b];
}

caf::behavior storage_behavior(storage_ptr self, std::shared_ptr<storage::database> db,
                               int batch_max,
                               std::function<void(const std::string&)> on_fenced) {
  self->state.db = std::move(db);
  self->state.batch_max = batch_max;
  self->state.on_fenced = std::move(on_fenced);
  // On shutdown commit what is queued so every acknowledged write is on disk.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    flush(self);
    self->quit(msg.reason);
  });
  return {
    [=](write_atom, write_fn& fn) -> caf::result<bool> {
      auto& st = self->state;
      auto rp = self->make_response_promise();
      st.batch.push_back({std::move(fn), rp});
      if (static_cast<int>(st.batch.size()) >= st.batch_max)
        flush(self);
      else if (!st.flush_scheduled) {
        // Queued behind everything already in the mailbox: the batch grows with load.
        st.flush_scheduled = true;
        self->send(self, flush_atom::value);
      }
      return caf::delegated<bool>();
    },
    [=](flush_atom) { flush(self); },
    [=](read_atom, read_fn& fn) -> caf::result<caf::message> {
      flush(self);
      ++self->state.reads;
      struct reset_after {
        storage::database& db;
        ~reset_after() { db.reset_statements(); }
      } reset{*self->state.db};
      auto& db = *self->state.db;
      // A shared server: a read runs in a transaction too, so the few reads that also
      // write (the frontier read-back) are fenced like every write.
      bool tx = db.backend() == storage::database::kind::postgresql;
      try {
        if (!tx)
          return fn(db);
        db.begin();
        auto out = fn(db);
        db.commit();
        return out;
      } catch (const std::exception& e) {
        if (tx)
          db.rollback();
        if (dynamic_cast<const storage::fenced_error*>(&e))
          deposed(self, e.what());
        spdlog::error("storage: read failed: {}", e.what());
        return caf::make_error(caf::sec::runtime_error, std::string("storage read: ") + e.what());
      }
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      return "{\"batches\":" + std::to_string(st.batches) +
             ",\"writes\":" + std::to_string(st.writes) +
             ",\"failedWrites\":" + std::to_string(st.failed_writes) +
             ",\"reads\":" + std::to_string(st.reads) +
             ",\"queued\":" + std::to_string(st.batch.size()) +
             ",\"lastBatchMs\":" + std::to_string(st.last_batch_ms) +
             ",\"healthy\":" + (st.healthy ? "true" : "false") +
             ",\"batchMsSum\":" + std::to_string(st.batch_ms_sum) + ",\"batchMsBounds\":[" +
             [&] {
               std::string out;
               for (std::size_t i = 0; i < std::size(storage_state::bucket_ms); ++i)
                 out += (i ? "," : "") + std::to_string(storage_state::bucket_ms[i]);
               return out;
             }() + "],\"batchMsBuckets\":[" +
             [&] {
               std::string out;
               for (std::size_t i = 0; i < std::size(st.buckets); ++i)
                 out += (i ? "," : "") + std::to_string(st.buckets[i]);
               return out;
             }() + "]" +
             [&]() -> std::string {
               auto* spool = st.db->spool();
               if (!spool)
                 return "";
               return ",\"spoolBytes\":" + std::to_string(spool->bytes_on_disk()) +
                      ",\"spoolSegments\":" + std::to_string(spool->segments());
             }() +
             ",\"mailbox\":" + std::to_string(self->mailbox().size()) + "}";
    },
  };
}

} // namespace

caf::actor spawn_storage(caf::actor_system& sys, const storage_options& opts) {
  std::shared_ptr<storage::database> db = storage::open_database(opts.open);
  spdlog::info("storage: {} ready (schema version {})", db->describe(), storage::schema_version);
  return sys.spawn<caf::detached>(storage_behavior, std::move(db), opts.batch_max,
                                  opts.on_fenced);
}

void record_audit(const caf::actor& storage, storage::audit_row row, std::int64_t max_rows) {
  caf::anon_send(storage, protocol::write_atom::value,
                 protocol::write_fn([row = std::move(row), max_rows](storage::database& db) {
                   storage::audit_repository(db).add(row, max_rows);
                 }));
}

} // namespace spiderhub::actors
