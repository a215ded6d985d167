#include "actors/scheduler/scheduler.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <map>

#include "actors/storage/storage_actor.hpp"
#include "core/cron.hpp"
#include "core/digest.hpp"
#include "storage/repositories.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(
  std::shared_ptr<std::vector<spiderhub::storage::run_repository::pending_fire>>)

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;
using pending_fires = std::vector<storage::run_repository::pending_fire>;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

struct entry {
  std::string cron;
  std::shared_ptr<core::cron_schedule> sched;
  std::int64_t next_due = 0;  // unix s; 0 = never
};

struct scheduler_state {
  caf::actor storage;
  caf::actor jobs;
  scheduler_options opts;
  std::map<std::string, entry> table;
  std::uint64_t generation = 0;  // ignores ticks of an older timer
  std::uint64_t fires = 0, missed = 0, fire_errors = 0;
  std::deque<double> jitter_ms;  // lateness of recent fires, for stats and bench/cron
  static inline const char* name = "scheduler";
};

using self_ptr = caf::stateful_actor<scheduler_state>*;

core::sys_seconds to_tp(std::int64_t unix_s) { return core::sys_seconds{std::chrono::seconds{unix_s}}; }

std::int64_t next_after(const entry& e, std::int64_t unix_s) {
  auto n = e.sched->next_after(to_tp(unix_s));
  return n ? n->time_since_epoch().count() : 0;
}

void send_fire(self_ptr self, const std::string& job_id, std::int64_t due,
               const std::string& identity) {
  self->request(self->state.jobs, caf::infinite, fire_atom::value, job_id, due, identity)
    .then(
      [=](const std::string&) {},
      [=](const caf::error& err) {
        ++self->state.fire_errors;
        auto [code, message] = app_error_parts(err);
        spdlog::warn("scheduler: fire of job {} for {} failed: {}", job_id, due, message);
      });
  // Whatever the outcome, the fire is handled: the pending record can go.
  caf::anon_send(self->state.storage, write_atom::value,
             write_fn([job_id, due](storage::database& db) {
               storage::run_repository(db).remove_pending_fire(job_id, due);
             }));
}

// Persists LastFire + PendingFire in one transaction, then fires.
void fire(self_ptr self, const std::string& job_id, std::int64_t due) {
  auto lateness = static_cast<double>(now_ms() - due * 1000);
  auto& st = self->state;
  st.jitter_ms.push_back(lateness);
  if (st.jitter_ms.size() > 100000)
    st.jitter_ms.pop_front();
  ++st.fires;
  auto identity = core::new_guid();
  self->request(st.storage, caf::infinite, write_atom::value,
                write_fn([job_id, due, identity](storage::database& db) {
                  storage::job_repository(db).set_last_fire(job_id, due);
                  storage::run_repository(db).add_pending_fire(job_id, due, identity);
                }))
    .then([=](bool) { send_fire(self, job_id, due, identity); },
          [=](const caf::error& err) {
            ++self->state.fire_errors;
            spdlog::error("scheduler: cannot record fire of job {} for {}: {}", job_id, due,
                          caf::to_string(err));
          });
}

void arm(self_ptr self) {
  auto& st = self->state;
  std::int64_t earliest = 0;
  for (auto& [id, e] : st.table)
    if (e.next_due && (!earliest || e.next_due < earliest))
      earliest = e.next_due;
  auto gen = ++st.generation;
  if (!earliest)
    return;
  auto delay = std::max<std::int64_t>(0, earliest * 1000 - now_ms());
  self->delayed_send(self, std::chrono::milliseconds(delay), tick_atom::value, gen);
}

void on_tick(self_ptr self) {
  auto now_s = now_ms() / 1000;
  for (auto& [id, e] : self->state.table) {
    // Live operation: every due time up to now fires (a tick is late by milliseconds).
    int guard = 0;
    while (e.next_due && e.next_due <= now_s && guard++ < 100) {
      fire(self, id, e.next_due);
      e.next_due = next_after(e, e.next_due);
    }
    if (e.next_due && e.next_due <= now_s)
      e.next_due = next_after(e, now_s);  // far behind: skip the rest
  }
  arm(self);
}

// Rebuilds the table from the jobs in storage; handles fires missed while down.
void load(self_ptr self, std::vector<storage::job_row>& jobs, bool startup) {
  auto& st = self->state;
  std::map<std::string, entry> table;
  auto now_s = now_ms() / 1000;
  for (auto& j : jobs) {
    if (!j.is_enabled || j.is_deleted)
      continue;
    entry e;
    e.cron = j.cron;
    auto old = st.table.find(j.id);
    try {
      if (old != st.table.end() && old->second.cron == j.cron) {
        e.sched = old->second.sched;
      } else {
        e.sched = std::make_shared<core::cron_schedule>(
          core::cron_schedule::parse(j.cron, st.opts.timezone));
      }
    } catch (const std::exception& ex) {
      spdlog::error("scheduler: job {} has an unusable cron '{}': {}", j.id, j.cron, ex.what());
      continue;
    }
    if (old != st.table.end() && old->second.cron == j.cron && !startup) {
      e.next_due = old->second.next_due;  // unchanged job keeps its place
    } else {
      auto from = std::max<std::int64_t>(j.last_fire, 0);
      auto due = next_after(e, from);
      // Due times that passed while the broker was down (or before a cron change).
      std::int64_t latest_missed = 0;
      std::int64_t missed = 0;
      while (due && due <= now_s && missed < 1000000) {
        latest_missed = due;
        ++missed;
        due = next_after(e, due);
      }
      if (missed > 0 && startup) {
        if (now_s - latest_missed <= st.opts.misfire_grace.count()) {
          spdlog::info("scheduler: job {} missed {} fire(s) while down; firing once for {}",
                       j.id, missed, latest_missed);
          fire(self, j.id, latest_missed);
          --missed;
        }
        if (missed > 0) {
          st.missed += static_cast<std::uint64_t>(missed);
          spdlog::warn("scheduler: job {} missed {} fire(s) outside the {} s grace", j.id,
                       missed, st.opts.misfire_grace.count());
          storage::job_status_row s;
          s.job_id = j.id;
          s.identity = core::new_guid();
          s.status = "Missed";
          s.reason = std::to_string(missed) + " fire(s) missed while the broker was down";
          caf::anon_send(st.storage, write_atom::value, write_fn([s](storage::database& db) {
                       storage::run_repository(db).upsert_status(s);
                     }));
        }
      }
      e.next_due = due && due <= now_s ? next_after(e, now_s) : due;
    }
    table.emplace(j.id, std::move(e));
  }
  st.table = std::move(table);
  arm(self);
}

void reload(self_ptr self, bool startup) {
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

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[idx];
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
        for (auto& p : *pending) {
          spdlog::info("scheduler: replaying fire of job {} for {} (run {})", p.job_id, p.due,
                       p.identity);
          send_fire(self, p.job_id, p.due, p.identity);
        }
        reload(self, true);
      },
      [=](const caf::error& err) {
        spdlog::critical("scheduler: cannot read pending fires: {}", caf::to_string(err));
        reload(self, true);
      });
  return {
    [=](tick_atom, std::uint64_t gen) {
      if (gen == self->state.generation)
        on_tick(self);
    },
    [=](jobs_changed_atom) { reload(self, false); },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      std::vector<double> v(st.jitter_ms.begin(), st.jitter_ms.end());
      return json{{"jobs", st.table.size()},
                  {"fires", st.fires},
                  {"missed", st.missed},
                  {"fireErrors", st.fire_errors},
                  {"jitterP50Ms", percentile(v, 0.50)},
                  {"jitterP99Ms", percentile(v, 0.99)},
                  {"jitterMaxMs", v.empty() ? 0.0 : *std::max_element(v.begin(), v.end())},
                  {"samples", v.size()}}
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
