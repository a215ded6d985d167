#include "actors/broker/job_manager.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "core/cron.hpp"
#include "core/digest.hpp"
#include "protocol/json_codec.hpp"
#include "actors/storage/storage_actor.hpp"
#include "storage/repositories.hpp"


namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;

struct node_entry {
  caf::actor session;
  node_info info;
  heartbeat last;
};

struct job_manager_state {
  caf::actor storage;
  caf::actor dispatcher;
  std::map<std::string, std::vector<caf::actor>> workers;  // FullClassName -> sessions
  std::map<std::string, std::size_t> next_worker;          // round robin per class
  std::map<std::string, node_entry> nodes;
  std::uint64_t fires = 0, runs_started = 0, runs_failed = 0;
  static inline const char* name = "job_manager";
};

using self_ptr = caf::stateful_actor<job_manager_state>*;

void record_failed_run(self_ptr self, const std::string& job_id, const std::string& identity,
                       const std::string& reason) {
  ++self->state.runs_failed;
  spdlog::warn("job {}: run {} failed: {}", job_id, identity, reason);
  storage::job_status_row s;
  s.job_id = job_id;
  s.identity = identity;
  s.status = "Failed";
  s.reason = reason;
  caf::anon_send(self->state.storage, write_atom::value, write_fn([s](storage::database& db) {
               storage::run_repository(db).upsert_status(s);
             }));
}

caf::actor pick_worker(self_ptr self, const std::string& full_class_name) {
  auto it = self->state.workers.find(full_class_name);
  if (it == self->state.workers.end() || it->second.empty())
    return {};
  auto& i = self->state.next_worker[full_class_name];
  return it->second[i++ % it->second.size()];
}

void start_block_run(self_ptr self, const storage::job_row& job, const std::string& identity,
                     caf::response_promise rp) {
  auto cls = job.properties.count("FullClassName") ? job.properties.at("FullClassName") : "";
  auto worker = pick_worker(self, cls);
  if (!worker) {
    auto reason = "no worker of class '" + cls + "' is connected";
    record_failed_run(self, job.id, identity, reason);
    // "run_failed": the fire happened and its run is recorded as Failed (HTTP 409).
    rp.deliver(app_error("run_failed", "run " + identity + " failed: " + reason));
    return;
  }
  auto site = job.properties.count("Site") ? job.properties.at("Site") : "{}";
  std::int32_t priority = 0;
  if (auto p = job.properties.find("Priority"); p != job.properties.end())
    priority = static_cast<std::int32_t>(std::strtol(p->second.c_str(), nullptr, 10));
  worker_run run;
  run.job_id = job.id;
  run.identity = identity;
  run.arguments = job.properties.count("Arguments") ? job.properties.at("Arguments") : "";
  run_spec spec{job.id, identity, site, priority, cls, run.arguments};
  self->request(self->state.dispatcher, caf::infinite, start_run_atom::value, spec)
    .then(
      [=](bool) mutable {
        ++self->state.runs_started;
        spdlog::info("job {} ({}): run {} started on a worker of class {}", job.id, job.name,
                     identity, cls);
        self->send(worker, run_atom::value, run);
        rp.deliver(identity);
      },
      [=](caf::error& err) mutable {
        record_failed_run(self, job.id, identity, self->system().render(err));
        rp.deliver(std::move(err));
      });
}

caf::behavior job_manager(self_ptr self, caf::actor storage, caf::actor dispatcher) {
  self->state.storage = storage;
  self->state.dispatcher = dispatcher;
  return {
    [=](worker_up_atom, const std::string& cls, const caf::actor& session) {
      self->state.workers[cls].push_back(session);
      // Runs of this class still open (worker restarted, broker restarted): resume them.
      self->request(self->state.dispatcher, caf::infinite, orphans_atom::value, cls)
        .then([=](std::vector<worker_run>& runs) {
          for (auto& r : runs) {
            spdlog::info("job {}: resuming run {} on a worker of class {}", r.job_id,
                         r.identity, cls);
            self->send(session, run_atom::value, r);
          }
        });
    },
    [=](worker_down_atom, const std::string& cls, const caf::actor& session) {
      auto& v = self->state.workers[cls];
      v.erase(std::remove(v.begin(), v.end(), session), v.end());
      if (v.empty())
        self->state.workers.erase(cls);
    },
    [=](node_up_atom, const std::string& node_id, const caf::actor& session,
        const node_info& info) { self->state.nodes[node_id] = {session, info, {}}; },
    [=](node_down_atom, const std::string& node_id, const caf::actor& session) {
      auto it = self->state.nodes.find(node_id);
      if (it != self->state.nodes.end() && it->second.session == session)
        self->state.nodes.erase(it);
    },
    [=](heartbeat_atom, const std::string& node_id, const heartbeat& hb) {
      if (auto it = self->state.nodes.find(node_id); it != self->state.nodes.end())
        it->second.last = hb;
    },
    [=](app_exited_atom, const std::string& node_id, const application_exited& e) {
      spdlog::info("node {}: application of run {} exited with {}", node_id, e.identity,
                   e.exit_code);
    },
    [=](fire_atom, const std::string& job_id, std::int64_t due,
        const std::string& given_identity) -> caf::result<std::string> {
      ++self->state.fires;
      auto rp = self->make_response_promise<std::string>();
      // A replayed scheduler fire carries its identity: a run recorded under it means
      // the fire already happened before a restart, so it is not repeated.
      auto identity = given_identity.empty() ? core::new_guid() : given_identity;
      self
        ->request(self->state.storage, caf::infinite, read_atom::value,
                  read_fn([job_id, identity](storage::database& db) {
                    auto done = !storage::run_repository(db).statuses_of_run(identity).empty();
                    return caf::make_message(storage::job_repository(db).find(job_id), done);
                  }))
        .then(
          [=](std::optional<storage::job_row>& job, bool already_fired) mutable {
            if (already_fired) {
              spdlog::info("job {}: fire for due time {} already ran as {}", job_id,
                           core::format_iso8601_utc(core::sys_seconds{std::chrono::seconds{due}}),
                           identity);
              rp.deliver(identity);
              return;
            }
            // A scheduler fire (it carries its ledger identity) that raced with a delete
            // or disable is recorded as Skipped, so every committed fire has one status.
            auto skip = [&](const char* code, const std::string& why) {
              if (!given_identity.empty()) {
                storage::job_status_row s;
                s.job_id = job_id;
                s.identity = identity;
                s.status = "Skipped";
                s.reason = why;
                caf::anon_send(self->state.storage, write_atom::value,
                               write_fn([s](storage::database& db) {
                                 storage::run_repository(db).upsert_status(s);
                               }));
              }
              rp.deliver(app_error(code, why));
            };
            if (!job || job->is_deleted)
              return skip("not_found", "job " + job_id + " not found");
            if (!job->is_enabled)
              return skip("conflict", "job " + job_id + " is disabled");
            spdlog::info("job {} ({}) fired for due time {}: run {}", job->id, job->name,
                         core::format_iso8601_utc(core::sys_seconds{std::chrono::seconds{due}}),
                         identity);
            if (job->job_type == "block") {
              start_block_run(self, *job, identity, rp);
            } else {
              auto reason = std::string("application jobs are not supported yet");
              record_failed_run(self, job->id, identity, reason);
              rp.deliver(app_error("not_implemented", reason));
            }
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](exit_run_atom, const std::string& identity) -> caf::result<bool> {
      auto rp = self->make_response_promise<bool>();
      self->request(self->state.dispatcher, caf::infinite, exit_run_atom::value, identity)
        .then([=](bool found) mutable { rp.deliver(found); },
              [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      json workers = json::object();
      for (auto& [cls, v] : st.workers)
        workers[cls] = v.size();
      return json{{"fires", st.fires}, {"runsStarted", st.runs_started},
                  {"runsFailed", st.runs_failed}, {"workers", workers},
                  {"nodes", st.nodes.size()}, {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_job_manager(caf::actor_system& sys, caf::actor storage, caf::actor dispatcher) {
  return sys.spawn(job_manager, std::move(storage), std::move(dispatcher));
}

} // namespace spiderhub::actors
