#include "actors/scheduler/scheduler.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include "actors/storage/storage_actor.hpp"
#include "core/cron.hpp"
#include "core/digest.hpp"
#include "storage/repositories.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(
  std::shared_ptr<std::vector<spiderhub::storage::run_repository::pending_fire>>)

// How a due time is handled (docs/scheduling.md has the whole story):
//
//  * Every due time of an enabled job is handled exactly once: it either FIRES or is
//    recorded as MISSED. Job.LastFire is the latest due time handled; it only grows.
//  * When the scheduler gets to a job (timer tick, or broker start), all due times in
//    (LastFire, now] are considered together: the latest one fires if it is at most
//    misfire_grace late, every other one is recorded in one 'Missed' JobStatus row.
//    In live operation there is exactly one such due time and it is milliseconds late.
//  * A fire is committed before it is sent: one transaction inserts the Fire ledger row
//    (PRIMARY KEY (JobId, Due): a due time can be recorded only once), raises LastFire and
//    adds the PendingFire row. The job manager gets (fire, job, due, identity) after the
//    commit; the PendingFire row is removed once it answered (its JobStatus row is queued
//    to storage before the answer). After a crash the PendingFire rows are replayed with
//    their identity and the job manager skips identities that already have a JobStatus.
//  * To fire on time although a commit of 1,000 fires takes milliseconds, the timer
//    ticks `arm_lead` before the due time: the tick commits the fires of the due times up
//    to now + arm_lead ("armed"), and a second timer sends them at the due time. A job
//    changed or deleted within arm_lead of a due time still gets that fire (the job
//    manager records it 'Skipped' when the job is disabled or deleted by then).
namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;
using pending_fires = std::vector<storage::run_repository::pending_fire>;

/// Hourly pruning of the Fire ledger.
using prune_atom = caf::atom_constant<caf::atom("fire_prune")>;
constexpr auto prune_interval = std::chrono::hours(1);
constexpr std::int64_t fire_history_s = 7 * 86400;  // Fire rows kept this long
constexpr std::int64_t scan_cap = 100000;           // cron steps before jumping ahead
constexpr std::size_t max_samples = 100000;         // lateness samples kept for stats
constexpr std::int64_t arm_lead_ms = 500;           // fires are committed this long ahead

/// (send_atom, due): the armed fires of that due time are to be sent now.
using send_atom = caf::atom_constant<caf::atom("fire_send")>;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Milliseconds with a fraction, for lateness samples.
double now_ms_exact() {
  using namespace std::chrono;
  return duration<double, std::milli>(system_clock::now().time_since_epoch()).count();
}

std::string iso(std::int64_t unix_s) {
  return core::format_iso8601_utc(core::sys_seconds{std::chrono::seconds{unix_s}});
}

struct entry {
  std::string cron;
  std::shared_ptr<core::cron_schedule> sched;
  std::int64_t next_due = 0;  // unix s of the first due time not handled yet; 0 = never
};

/// One fire to commit: the ledger row and what to send to the job manager.
struct fire_req {
  std::string job_id;
  std::int64_t due = 0;
  std::string identity;
  bool live = true;  // false: a catch-up or replayed fire (not a lateness sample)
};

struct samples {
  std::deque<double> v;
  void add(double x) {
    v.push_back(x);
    if (v.size() > max_samples)
      v.pop_front();
  }
};

struct scheduler_state {
  caf::actor storage;
  caf::actor jobs;
  scheduler_options opts;
  std::map<std::string, entry> table;
  std::uint64_t generation = 0;  // ignores ticks of an older timer
  std::uint64_t fires = 0, missed = 0, fire_errors = 0, duplicates = 0, catch_ups = 0;
  std::uint64_t in_flight = 0;   // fires sent to the job manager, not answered yet
  bool loaded = false;           // the startup load is done
  bool reload_when_loaded = false;  // a job changed before that
  std::uint64_t late_commits = 0;  // fires whose commit ended after their due time
  std::map<std::int64_t, std::vector<fire_req>> armed;  // due -> committed, sent at due
  std::vector<std::pair<std::string, std::int64_t>> answered;  // PendingFire rows to delete
  samples lateness_ms;  // due -> fire sent to the job manager
  samples commit_ms;    // tick -> the tick's fires committed
  static inline const char* name = "scheduler";
};

using self_ptr = caf::stateful_actor<scheduler_state>*;

core::sys_seconds to_tp(std::int64_t unix_s) { return core::sys_seconds{std::chrono::seconds{unix_s}}; }

std::int64_t next_after(const entry& e, std::int64_t unix_s) {
  auto n = e.sched->next_after(to_tp(unix_s));
  return n ? n->time_since_epoch().count() : 0;
}

// ---- storage side (runs inside the storage actor's transaction) -------------------

/// Inserts the ledger row; false when this (job, due) was already recorded.
bool record_fire(storage::database& db, const fire_req& f) {
  auto& ins = db.prepare(
    "INSERT INTO Fire (JobId, Due, Identity, CreationTime) VALUES (?,?,?,?) "
    "ON CONFLICT DO NOTHING");
  ins.bind(1, f.job_id);
  ins.bind(2, static_cast<std::int64_t>(f.due));
  ins.bind(3, f.identity);
  ins.bind(4, storage::now_text());
  if (ins.exec() == 0)
    return false;
  storage::job_repository(db).raise_last_fire(f.job_id, f.due);
  storage::run_repository(db).add_pending_fire(f.job_id, f.due, f.identity);
  return true;
}

// ---- firing -----------------------------------------------------------------------

void send_fire(self_ptr self, const std::string& job_id, std::int64_t due,
               const std::string& identity) {
  ++self->state.in_flight;
  auto done = [self, job_id, due] {
    auto& st = self->state;
    --st.in_flight;
    // The job manager answered, so the run (or its Failed status) is queued to storage
    // ahead of this removal: the fire is handled and is not replayed after a restart.
    // Removals are written in batches: the flush is queued behind the answers already
    // in the mailbox.
    if (st.answered.empty())
      self->send(self, flush_atom::value);
    st.answered.emplace_back(job_id, due);
  };
  self->request(self->state.jobs, caf::infinite, fire_atom::value, job_id, due, identity)
    .then([done](const std::string&) { done(); },
          [self, job_id, due, done](const caf::error& err) {
            // Refused (job gone or disabled meanwhile, run failed): handled all the same.
            auto [code, message] = app_error_parts(err);
            if (code != "run_failed") {
              ++self->state.fire_errors;
              spdlog::warn("scheduler: fire of job {} for {} refused: {}", job_id, iso(due),
                           message);
            }
            done();
          });
}

/// Sends the armed fires of `due` (their due time has come).
void send_armed(self_ptr self, std::int64_t due) {
  auto& st = self->state;
  auto it = st.armed.find(due);
  if (it == st.armed.end())
    return;
  auto fires = std::move(it->second);
  st.armed.erase(it);
  for (auto& f : fires) {
    if (f.live)
      st.lateness_ms.add(now_ms_exact() - static_cast<double>(f.due) * 1000.0);
    send_fire(self, f.job_id, f.due, f.identity);
  }
}

/// Deletes the PendingFire rows of the fires the job manager has answered.
void flush_answered(self_ptr self) {
  auto done = std::move(self->state.answered);
  self->state.answered.clear();
  if (done.empty())
    return;
  caf::anon_send(self->state.storage, write_atom::value,
                 write_fn([done](storage::database& db) {
                   storage::run_repository runs(db);
                   for (auto& [job_id, due] : done)
                     runs.remove_pending_fire(job_id, due);
                 }));
}

/// Queues a committed fire for its due time; true when that has come already (the caller
/// sends it), otherwise the send timer of that due time is running.
bool arm_fire(self_ptr self, const fire_req& f, std::int64_t now) {
  auto& slot = self->state.armed[f.due];
  bool first = slot.empty();
  slot.push_back(f);
  if (f.due * 1000 <= now)
    return true;
  if (first)
    self->delayed_send(self, std::chrono::milliseconds(f.due * 1000 - now), send_atom::value,
                       f.due);
  return false;
}

/// Commits the ledger rows of `fires` in one transaction; then each new one is sent at
/// its due time (at once when that has passed).
void commit_fires(self_ptr self, std::vector<fire_req> fires) {
  if (fires.empty())
    return;
  auto batch = std::make_shared<const std::vector<fire_req>>(std::move(fires));
  auto fresh = std::make_shared<std::vector<char>>(batch->size(), 0);
  auto started = now_ms();
  self
    ->request(self->state.storage, caf::infinite, write_atom::value,
              write_fn([batch, fresh](storage::database& db) {
                for (std::size_t i = 0; i < batch->size(); ++i)
                  (*fresh)[i] = record_fire(db, (*batch)[i]) ? 1 : 0;
              }))
    .then(
      [self, batch, fresh, started](bool) {
        auto& st = self->state;
        auto now = now_ms();
        st.commit_ms.add(static_cast<double>(now - started));
        std::set<std::int64_t> now_due;
        for (std::size_t i = 0; i < batch->size(); ++i) {
          const auto& f = (*batch)[i];
          if (!(*fresh)[i]) {
            ++st.duplicates;
            spdlog::warn("scheduler: job {} already fired for {}; not firing again", f.job_id,
                         iso(f.due));
            continue;
          }
          ++st.fires;
          if (f.due * 1000 < now && f.live)
            ++st.late_commits;
          if (arm_fire(self, f, now))
            now_due.insert(f.due);
        }
        for (auto due : now_due)
          send_armed(self, due);
      },
      [self, batch](const caf::error& err) {
        self->state.fire_errors += batch->size();
        spdlog::error("scheduler: cannot record {} fire(s) (first: job {} for {}): {}",
                      batch->size(), batch->front().job_id, iso(batch->front().due),
                      caf::to_string(err));
      });
}

/// Records `count` due times of a job in [first, last] as missed: one 'Missed' JobStatus
/// row, and LastFire raised to `last` so that they are never considered again.
void record_missed(self_ptr self, const std::string& job_id, std::int64_t count, bool exact,
                   std::int64_t first, std::int64_t last, const char* why) {
  auto& st = self->state;
  st.missed += static_cast<std::uint64_t>(count);
  storage::job_status_row s;
  s.job_id = job_id;
  s.identity = core::new_guid();
  s.status = "Missed";
  s.reason = (exact ? "" : "more than ") + std::to_string(count) + " fire(s) from " +
             iso(first) + " to " + iso(last) + " missed: " + why + " (misfire grace " +
             std::to_string(st.opts.misfire_grace.count()) + " s)";
  spdlog::warn("scheduler: job {}: {}", job_id, s.reason);
  caf::anon_send(st.storage, write_atom::value, write_fn([s, last](storage::database& db) {
                   storage::run_repository(db).upsert_status(s);
                   storage::job_repository(db).raise_last_fire(s.job_id, last);
                 }));
}

/// The due times of `e` in (from, until]: how many, the first, the latest and the one
/// before it. Very frequent schedules far behind jump to the grace window (inexact count).
struct overdue {
  std::int64_t count = 0;
  bool exact = true;
  std::int64_t first = 0, last = 0, before_last = 0;
};

overdue scan_overdue(const entry& e, std::int64_t from, std::int64_t until,
                     std::int64_t grace_start) {
  overdue o;
  std::int64_t steps = 0;
  for (auto due = next_after(e, from); due && due <= until;) {
    if (!o.first)
      o.first = due;
    o.before_last = o.last;
    o.last = due;
    ++o.count;
    if (++steps == scan_cap && grace_start - 1 > due) {
      o.exact = false;
      due = next_after(e, grace_start - 1);
      continue;
    }
    due = next_after(e, due);
  }
  return o;
}

/// Handles the due times of job `id` in (from, until]: the latest fires if it is at most
/// the grace before now_s, the others are recorded as missed. Appends the fire to `out`.
/// Returns the due time that fires (0 if none).
std::int64_t handle_due(self_ptr self, const std::string& id, const entry& e, std::int64_t from,
                        std::int64_t until, std::int64_t now_s, const char* why, bool live,
                        std::vector<fire_req>& out) {
  auto& st = self->state;
  auto grace = st.opts.misfire_grace.count();
  auto o = scan_overdue(e, from, until, now_s - grace);
  if (!o.count)
    return 0;
  std::int64_t fired = 0;
  if (now_s - o.last <= grace) {
    fired = o.last;
    out.push_back({id, o.last, core::new_guid(), live});
  }
  auto missed = o.count - (fired ? 1 : 0);
  if (missed > 0)
    record_missed(self, id, missed, o.exact, o.first, fired ? o.before_last : o.last, why);
  return fired;
}

// The tick comes arm_lead before the earliest due time.
void arm(self_ptr self) {
  auto& st = self->state;
  std::int64_t earliest = 0;
  for (auto& [id, e] : st.table)
    if (e.next_due && (!earliest || e.next_due < earliest))
      earliest = e.next_due;
  auto gen = ++st.generation;
  if (!earliest)
    return;
  auto delay = std::max<std::int64_t>(0, earliest * 1000 - arm_lead_ms - now_ms());
  self->delayed_send(self, std::chrono::milliseconds(delay), tick_atom::value, gen);
}

// Commits the fires of every due time up to now + arm_lead (normally exactly one per due
// job, still ahead; more only if the scheduler was stalled longer than a period).
void on_tick(self_ptr self) {
  auto& st = self->state;
  auto now = now_ms();
  auto now_s = now / 1000;
  auto horizon = (now + arm_lead_ms) / 1000;
  std::vector<fire_req> batch;
  for (auto& [id, e] : st.table) {
    if (!e.next_due || e.next_due > horizon)
      continue;
    handle_due(self, id, e, e.next_due - 1, horizon, now_s, "the scheduler was late", true,
               batch);
    e.next_due = next_after(e, horizon);
  }
  commit_fires(self, std::move(batch));
  arm(self);
}

void reload(self_ptr self, bool startup);

// Rebuilds the table from the jobs in storage; at startup handles the due times that
// passed while the broker was down.
void load(self_ptr self, std::vector<storage::job_row>& jobs, bool startup) {
  auto& st = self->state;
  std::map<std::string, entry> table;
  std::vector<fire_req> catch_up;
  auto now_s = now_ms() / 1000;
  for (auto& j : jobs) {
    if (!j.is_enabled || j.is_deleted)
      continue;
    entry e;
    e.cron = j.cron;
    auto old = st.table.find(j.id);
    bool unchanged = old != st.table.end() && old->second.cron == j.cron;
    try {
      e.sched = unchanged ? old->second.sched
                          : std::make_shared<core::cron_schedule>(
                              core::cron_schedule::parse(j.cron, st.opts.timezone));
    } catch (const std::exception& ex) {
      spdlog::error("scheduler: job {} has an unusable cron '{}': {}", j.id, j.cron, ex.what());
      continue;
    }
    if (unchanged && !startup) {
      e.next_due = old->second.next_due;  // unchanged job keeps its place
    } else if (startup) {
      // Due times in (LastFire, now] were not handled: the broker was down.
      auto from = std::max<std::int64_t>(j.last_fire, 0);
      auto fired =
        handle_due(self, j.id, e, from, now_s, now_s, "the broker was down", false, catch_up);
      if (fired)
        spdlog::info("scheduler: job {} fires once for {}, missed while the broker was down",
                     j.id, iso(fired));
      e.next_due = next_after(e, std::max(now_s, from));
    } else {
      // New, re-enabled or re-scheduled job: fires from now on (a disabled period or the
      // old schedule's due times are not "missed").
      e.next_due = next_after(e, std::max(now_s, j.last_fire));
    }
    table.emplace(j.id, std::move(e));
  }
  st.table = std::move(table);
  st.catch_ups += catch_up.size();
  commit_fires(self, std::move(catch_up));
  arm(self);
  if (startup) {
    st.loaded = true;
    spdlog::info("scheduler: {} job(s) scheduled (zone {}, misfire grace {} s)",
                 st.table.size(), st.opts.timezone, st.opts.misfire_grace.count());
    if (st.reload_when_loaded) {
      st.reload_when_loaded = false;
      reload(self, false);
    }
  }
}

void reload(self_ptr self, bool startup) {
  if (!startup && !self->state.loaded) {
    // The startup load decides about the due times missed while down; a change that
    // arrives before it is applied right after it.
    self->state.reload_when_loaded = true;
    return;
  }
  self
    ->request(self->state.storage, caf::infinite, read_atom::value,
              read_fn([](storage::database& db) {
                return caf::make_message(storage::job_repository(db).list());
              }))
    .then([=](std::vector<storage::job_row>& jobs) { load(self, jobs, startup); },
          [=](const caf::error& err) {
            spdlog::critical("scheduler: cannot load jobs: {}", caf::to_string(err));
          });
}

void prune(self_ptr self) {
  auto before = now_ms() / 1000 - fire_history_s;
  caf::anon_send(self->state.storage, write_atom::value,
                 write_fn([before](storage::database& db) {
                   auto& q = db.prepare("DELETE FROM Fire WHERE Due < ?");
                   q.bind(1, static_cast<std::int64_t>(before));
                   q.exec();
                 }));
  self->delayed_send(self, prune_interval, prune_atom::value);
}

json percentiles(const samples& s) {
  std::vector<double> v(s.v.begin(), s.v.end());
  std::sort(v.begin(), v.end());
  auto at = [&](double p) {
    return v.empty() ? 0.0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
  };
  return {{"p50", at(0.50)}, {"p99", at(0.99)}, {"max", v.empty() ? 0.0 : v.back()},
          {"samples", v.size()}};
}

// A fire committed before the broker stopped whose due time is now beyond the grace:
// it is not run but recorded 'Missed' under its identity, unless the job manager had run
// it (a JobStatus row exists) before the stop.
void expire_pending(self_ptr self, const storage::run_repository::pending_fire& p) {
  auto& st = self->state;
  ++st.missed;
  storage::job_status_row s;
  s.job_id = p.job_id;
  s.identity = p.identity;
  s.status = "Missed";
  s.reason = "fire for " + iso(p.due) +
             " committed before the broker stopped was not run: the misfire grace (" +
             std::to_string(st.opts.misfire_grace.count()) + " s) has passed";
  spdlog::warn("scheduler: job {}: {}", p.job_id, s.reason);
  caf::anon_send(st.storage, write_atom::value, write_fn([s, due = p.due](storage::database& db) {
                   storage::run_repository runs(db);
                   if (runs.statuses_of_run(s.identity).empty())
                     runs.upsert_status(s);
                   runs.remove_pending_fire(s.job_id, due);
                 }));
}

caf::behavior scheduler(self_ptr self, caf::actor storage, caf::actor jobs,
                        scheduler_options opts) {
  self->state.storage = storage;
  self->state.jobs = jobs;
  self->state.opts = opts;
  // Replay fires committed before a crash, then build the table.
  self
    ->request(storage, caf::infinite, read_atom::value, read_fn([](storage::database& db) {
                return caf::make_message(std::make_shared<pending_fires>(
                  storage::run_repository(db).pending_fires()));
              }))
    .then(
      [=](std::shared_ptr<pending_fires>& pending) {
        auto now = now_ms();
        auto grace = self->state.opts.misfire_grace.count();
        std::set<std::int64_t> now_due;
        for (auto& p : *pending) {
          if (now / 1000 - p.due > grace) {
            expire_pending(self, p);
            continue;
          }
          spdlog::info("scheduler: replaying fire of job {} for {} (run {})", p.job_id,
                       iso(p.due), p.identity);
          if (arm_fire(self, {p.job_id, p.due, p.identity, false}, now))
            now_due.insert(p.due);
        }
        for (auto due : now_due)
          send_armed(self, due);
        reload(self, true);
      },
      [=](const caf::error& err) {
        spdlog::critical("scheduler: cannot read pending fires: {}", caf::to_string(err));
        reload(self, true);
      });
  prune(self);
  return {
    [=](tick_atom, std::uint64_t gen) {
      if (gen == self->state.generation)
        on_tick(self);
    },
    [=](send_atom, std::int64_t due) { send_armed(self, due); },
    [=](flush_atom) { flush_answered(self); },
    [=](prune_atom) { prune(self); },
    [=](jobs_changed_atom) { reload(self, false); },
    [=](jobs_changed_atom, const std::string& job_id, const std::string& change) {
      // A deleted job stops at once; any other change takes effect when the reload
      // (a few milliseconds) has read the committed job.
      if (change == "deleted")
        self->state.table.erase(job_id);
      reload(self, false);
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      auto late = percentiles(st.lateness_ms);
      return json{{"jobs", st.table.size()},
                  {"fires", st.fires},
                  {"catchUps", st.catch_ups},
                  {"missed", st.missed},
                  {"duplicates", st.duplicates},
                  {"fireErrors", st.fire_errors},
                  {"inFlight", st.in_flight},
                  {"jitterP50Ms", late["p50"]},
                  {"jitterP99Ms", late["p99"]},
                  {"jitterMaxMs", late["max"]},
                  {"samples", late["samples"]},
                  {"lateCommits", st.late_commits},
                  {"armed", st.armed.size()},
                  {"commitMs", percentiles(st.commit_ms)},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_scheduler(caf::actor_system& sys, caf::actor storage, caf::actor jobs,
                           scheduler_options opts) {
  return sys.spawn(scheduler, std::move(storage), std::move(jobs), std::move(opts));
}

} // namespace spiderhub::actors
