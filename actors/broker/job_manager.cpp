#include "actors/broker/job_manager.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <set>

#include "core/cron.hpp"
#include "core/digest.hpp"
#include "core/politeness.hpp"
#include "protocol/job_site.hpp"
#include "protocol/json_codec.hpp"
#include "actors/storage/storage_actor.hpp"
#include "storage/repositories.hpp"


namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;

using steady = std::chrono::steady_clock;

struct node_entry {
  caf::actor session;
  node_info info;
  heartbeat last;
  steady::time_point up_since = steady::now();
  steady::time_point last_seen = steady::now();
};

// One node's part of an application run.
struct app_node {
  std::string state = "Starting";  // Starting, Running, Exited, Failed, Lost
  std::optional<std::int32_t> exit_code;
  std::string reason;
  std::int32_t pid = 0;
  steady::time_point confirmed = steady::now();  // last sign of life of the process
  std::string out_tail, err_tail;                 // latest output, bounded
  bool open() const { return state == "Starting" || state == "Running"; }
};

struct app_run {
  std::string job_id;
  std::string shortfall;  // why fewer nodes than NodeCount were used
  bool exit_requested = false;
  bool finished = false;
  std::map<std::string, app_node> nodes;
};

constexpr std::size_t log_tail_bytes = 64 << 10;   // per node and stream, at the broker
constexpr std::size_t finished_runs_kept = 200;    // for their log tails and states

struct job_manager_state {
  job_manager_options opts;
  caf::actor storage;
  caf::actor dispatcher;
  std::map<std::string, app_run> app_runs;  // identity -> application run
  std::deque<std::string> finished_apps;    // oldest first; trimmed to finished_runs_kept
  std::map<std::string, std::vector<caf::actor>> workers;  // FullClassName -> sessions
  std::map<std::string, std::size_t> next_worker;          // round robin per class
  std::map<std::string, node_entry> nodes;
  std::uint64_t fires = 0, runs_started = 0, runs_failed = 0, apps_started = 0,
                apps_exited = 0, apps_lost = 0, heartbeats = 0;
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
  std::string site;
  std::int32_t workers_per_run = 1;
  try {
    auto settings = site_of_job(job.properties);
    workers_per_run = settings.workers_per_run;
    site = to_json(settings).dump();
  } catch (const std::exception& e) {
    auto reason = std::string("bad site, politeness or download properties: ") + e.what();
    record_failed_run(self, job.id, identity, reason);
    rp.deliver(app_error("run_failed", "run " + identity + " failed: " + reason));
    return;
  }
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
        // One worker, or (WorkersPerRun) several of the class sharing its results.
        std::vector<caf::actor> to{worker};
        if (workers_per_run != 1) {
          to = self->state.workers[cls];
          if (workers_per_run > 0 && static_cast<std::int32_t>(to.size()) > workers_per_run)
            to.resize(static_cast<std::size_t>(workers_per_run));
          if (to.empty())
            to = {worker};
        }
        spdlog::info("job {} ({}): run {} started on {} worker(s) of class {}", job.id,
                     job.name, identity, to.size(), cls);
        for (auto& w : to)
          self->send(w, run_atom::value, run);
        rp.deliver(identity);
      },
      [=](caf::error& err) mutable {
        record_failed_run(self, job.id, identity, self->system().render(err));
        rp.deliver(std::move(err));
      });
}

// ---- application runs ------------------------------------------------------------

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string prop(const storage::job_row& job, const char* key, std::string fallback = "") {
  auto it = job.properties.find(key);
  return it == job.properties.end() || it->second.empty() ? fallback : it->second;
}

void write_app_node(self_ptr self, const std::string& identity, const std::string& node_id) {
  auto& run = self->state.app_runs.at(identity);
  auto& n = run.nodes.at(node_id);
  storage::job_status_row s;
  s.job_id = run.job_id;
  s.identity = identity;
  s.node_id = node_id;
  s.status = n.state;
  s.left = n.open() ? 1 : 0;
  s.total = 1;
  s.success = n.state == "Exited" && n.exit_code == 0 ? 1 : 0;
  s.error = !n.open() && s.success == 0 ? 1 : 0;
  s.reason = n.reason;
  s.exit_code = n.exit_code;
  caf::anon_send(self->state.storage, write_atom::value, write_fn([s](storage::database& db) {
                   storage::run_repository(db).upsert_status(s);
                 }));
}

// The run's summary row (NodeId ''): Left = nodes still starting or running, Success =
// nodes that exited 0, Error = failed, lost or non-zero exits. Final once Left is 0.
void write_app_summary(self_ptr self, const std::string& identity) {
  auto& st = self->state;
  auto& run = st.app_runs.at(identity);
  storage::job_status_row s;
  s.job_id = run.job_id;
  s.identity = identity;
  std::vector<std::string> problems;
  for (auto& [node_id, n] : run.nodes) {
    ++s.total;
    if (n.open())
      ++s.left;
    else if (n.state == "Exited" && n.exit_code == 0)
      ++s.success;
    else {
      ++s.error;
      problems.push_back("node " + node_id.substr(0, 8) + ": " + n.state +
                         (n.exit_code ? " with exit code " + std::to_string(*n.exit_code) : "") +
                         (n.reason.empty() ? "" : " (" + n.reason + ")"));
    }
  }
  std::string reason = run.shortfall;
  for (auto& p : problems)
    reason += (reason.empty() ? "" : "; ") + p;
  s.reason = reason;
  if (s.left > 0) {
    s.status = "Running";
  } else {
    s.status = run.exit_requested ? "Exited" : s.error == 0 ? "Success" : "Failed";
    if (!run.finished) {
      run.finished = true;
      st.finished_apps.push_back(identity);
      spdlog::info("job {}: application run {} finished: {} ({} of {} nodes exited 0){}{}",
                   run.job_id, identity, s.status, s.success, s.total,
                   reason.empty() ? "" : ": ", reason);
      while (st.finished_apps.size() > finished_runs_kept) {
        st.app_runs.erase(st.finished_apps.front());
        st.finished_apps.pop_front();
      }
    }
  }
  caf::anon_send(st.storage, write_atom::value, write_fn([s](storage::database& db) {
                   storage::run_repository(db).upsert_status(s);
                 }));
}

void set_app_node(self_ptr self, const std::string& identity, const std::string& node_id,
                  const std::string& state, std::optional<std::int32_t> exit_code,
                  std::string reason) {
  auto it = self->state.app_runs.find(identity);
  if (it == self->state.app_runs.end() || !it->second.nodes.count(node_id))
    return;
  auto& n = it->second.nodes.at(node_id);
  n.state = state;
  n.exit_code = exit_code;
  n.reason = std::move(reason);
  write_app_node(self, identity, node_id);
  write_app_summary(self, identity);
}

// Nodes that may start an application of `job` now, least loaded first; `why_not`
// collects why the others may not.
std::vector<std::string> eligible_nodes(self_ptr self, const storage::job_row& job,
                                        const std::set<std::string>& disabled,
                                        std::map<std::string, int>& why_not) {
  auto& st = self->state;
  auto group = prop(job, "NodeGroup");
  auto os = lower(prop(job, "Os"));
  auto now = steady::now();
  std::map<std::string, int> busy;  // runs this manager has open per node
  for (auto& [id, run] : st.app_runs)
    for (auto& [node_id, n] : run.nodes)
      if (n.open())
        ++busy[node_id];
  struct candidate {
    double load;
    int cpu;
    std::string id;
    bool operator<(const candidate& o) const {
      return std::tie(load, cpu, id) < std::tie(o.load, o.cpu, o.id);
    }
  };
  std::vector<candidate> ok;
  for (auto& [id, n] : st.nodes) {
    auto processes = std::max(n.last.process_count, busy[id]);
    if (disabled.count(id))
      ++why_not["disabled"];
    else if (!group.empty() && n.info.group != group)
      ++why_not["group is not '" + group + "'"];
    else if (!os.empty() && lower(n.info.os).find(os) == std::string::npos)
      ++why_not["os does not match '" + prop(job, "Os") + "'"];
    else if (now - n.last_seen > std::chrono::seconds(st.opts.online_window_s))
      ++why_not["no heartbeat for " + std::to_string(st.opts.online_window_s) + " s"];
    else if (st.opts.max_cpu < 100 && n.last.cpu >= st.opts.max_cpu)
      ++why_not["cpu at or over " + std::to_string(st.opts.max_cpu) + " %"];
    else if (n.last.free_memory <= st.opts.min_free_memory_mb)
      ++why_not["free memory at or under " + std::to_string(st.opts.min_free_memory_mb) + " MB"];
    else if (processes >= n.info.max_process_count)
      ++why_not["maxProcessCount reached"];
    else
      ok.push_back({n.info.max_process_count > 0
                      ? static_cast<double>(processes) / n.info.max_process_count
                      : 1.0,
                    n.last.cpu, id});
  }
  std::sort(ok.begin(), ok.end());
  std::vector<std::string> out;
  for (auto& c : ok)
    out.push_back(c.id);
  return out;
}

std::string describe(const std::map<std::string, int>& why_not, std::size_t connected) {
  std::string out = std::to_string(connected) + " node(s) connected";
  for (auto& [why, count] : why_not)
    out += "; " + std::to_string(count) + " skipped: " + why;
  return out;
}

void start_application_run(self_ptr self, const storage::job_row& job,
                           const std::optional<storage::package_row>& package,
                           const std::set<std::string>& disabled, const std::string& identity,
                           caf::response_promise rp) {
  auto& st = self->state;
  auto package_name = prop(job, "Package");
  auto application = prop(job, "Application");
  auto fail = [&](const std::string& code, const std::string& reason) {
    record_failed_run(self, job.id, identity, reason);
    rp.deliver(app_error(code, "run " + identity + " failed: " + reason));
  };
  if (package_name.empty() || application.empty())
    return fail("run_failed", "application job needs the Package and Application properties");
  if (!package)
    return fail("run_failed", "package '" + package_name + "' has not been uploaded");
  auto count_text = prop(job, "NodeCount", "1");
  char* end = nullptr;
  long wanted = std::strtol(count_text.c_str(), &end, 10);
  if (*end != '\0' || wanted < 1 || wanted > 10000)
    return fail("run_failed", "NodeCount '" + count_text + "' is not a number from 1 to 10000");
  std::map<std::string, int> why_not;
  auto nodes = eligible_nodes(self, job, disabled, why_not);
  if (nodes.empty())
    return fail("run_failed", "no eligible node (" + describe(why_not, st.nodes.size()) + ")");
  if (static_cast<long>(nodes.size()) > wanted)
    nodes.resize(static_cast<std::size_t>(wanted));
  auto& run = st.app_runs[identity];
  run.job_id = job.id;
  if (static_cast<long>(nodes.size()) < wanted)
    run.shortfall = "started on " + std::to_string(nodes.size()) + " of " +
                    std::to_string(wanted) + " nodes (" + describe(why_not, st.nodes.size()) + ")";
  run_application ra;
  ra.job_id = job.id;
  ra.identity = identity;
  ra.package = package_name;
  ra.application = application;
  ra.arguments = prop(job, "Arguments");
  ra.package_sha256 = package->sha256;
  for (auto& node_id : nodes) {
    run.nodes[node_id] = app_node{};
    self->send(st.nodes.at(node_id).session, run_app_atom::value, ra);
    write_app_node(self, identity, node_id);
  }
  write_app_summary(self, identity);
  ++st.runs_started;
  st.apps_started += nodes.size();
  spdlog::info("job {} ({}): application run {} of {} started on {} node(s){}{}", job.id,
               job.name, identity, package_name, nodes.size(), run.shortfall.empty() ? "" : ": ",
               run.shortfall);
  rp.deliver(identity);
}

void app_node_lost(self_ptr self, const std::string& node_id, const std::string& why) {
  std::vector<std::string> lost;
  for (auto& [identity, run] : self->state.app_runs)
    if (auto n = run.nodes.find(node_id); n != run.nodes.end() && n->second.open())
      lost.push_back(identity);
  for (auto& identity : lost) {
    ++self->state.apps_lost;
    spdlog::warn("node {}: application of run {} lost: {}", node_id, identity, why);
    set_app_node(self, identity, node_id, "Lost", std::nullopt, why);
  }
}

// Node parts still open whose node went away for good: restored after a broker restart
// but never reconnected, or reconnected without re-announcing the process.
void check_app_nodes(self_ptr self) {
  auto& st = self->state;
  auto now = steady::now();
  std::vector<std::pair<std::string, std::string>> lost;
  for (auto& [identity, run] : st.app_runs)
    for (auto& [node_id, n] : run.nodes) {
      if (!n.open())
        continue;
      auto node = st.nodes.find(node_id);
      if (node == st.nodes.end()) {
        if (now - n.confirmed > std::chrono::seconds(st.opts.online_window_s))
          lost.emplace_back(identity, node_id);
      } else if (n.state == "Running" && n.confirmed < node->second.up_since &&
                 now - node->second.up_since > st.opts.announce_wait) {
        lost.emplace_back(identity, node_id);
      }
    }
  for (auto& [identity, node_id] : lost) {
    ++st.apps_lost;
    spdlog::warn("node {}: application of run {} lost: the node did not report it again",
                 node_id, identity);
    set_app_node(self, identity, node_id, "Lost", std::nullopt,
                 "node did not report the process after reconnecting");
  }
}

json logs_json(const std::string& identity, const app_run& run, std::size_t max_bytes) {
  auto tail = [&](const std::string& t) {
    return t.size() <= max_bytes ? t : t.substr(t.size() - max_bytes);
  };
  json nodes = json::array();
  for (auto& [node_id, n] : run.nodes)
    nodes.push_back({{"nodeId", node_id},
                     {"state", lower(n.state)},
                     {"exitCode", n.exit_code ? json(*n.exit_code) : json(nullptr)},
                     {"reason", n.reason},
                     {"pid", n.pid},
                     {"stdout", tail(n.out_tail)},
                     {"stderr", tail(n.err_tail)}});
  return {{"identity", identity}, {"jobId", run.job_id}, {"nodes", nodes}};
}

caf::behavior job_manager(self_ptr self, caf::actor storage, caf::actor dispatcher,
                          job_manager_options opts) {
  self->state.opts = opts;
  self->state.storage = storage;
  self->state.dispatcher = dispatcher;
  // Application runs open before a restart: their nodes report them again when they
  // reconnect, or they are marked lost.
  self
    ->request(storage, caf::infinite, read_atom::value, read_fn([](storage::database& db) {
                return caf::make_message(storage::package_repository(db).open_application_nodes());
              }))
    .then([=](std::vector<storage::job_status_row>& rows) {
      for (auto& r : rows) {
        auto& run = self->state.app_runs[r.identity];
        run.job_id = r.job_id;
        auto& n = run.nodes[r.node_id];
        n.state = r.status;
        n.reason = r.reason;
      }
      if (!rows.empty())
        spdlog::info("job manager: {} application process(es) were running before the restart",
                     rows.size());
    });
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
  return {
    [=](tick_atom) {
      check_app_nodes(self);
      self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
    },
    [=](app_started_atom, const std::string& node_id, const application_started& a) {
      auto it = self->state.app_runs.find(a.identity);
      if (it == self->state.app_runs.end() || !it->second.nodes.count(node_id)) {
        spdlog::warn("node {} runs application of unknown run {} (pid {}): stopping it",
                     node_id, a.identity, a.pid);
        if (auto n = self->state.nodes.find(node_id); n != self->state.nodes.end())
          self->send(n->second.session, exit_atom::value, a.identity);
        return;
      }
      auto& n = it->second.nodes.at(node_id);
      n.confirmed = steady::now();
      n.pid = a.pid;
      if (n.state != "Running") {
        set_app_node(self, a.identity, node_id, "Running", std::nullopt, "");
        if (it->second.exit_requested)  // Exit asked while it was starting or away
          if (auto s = self->state.nodes.find(node_id); s != self->state.nodes.end())
            self->send(s->second.session, exit_atom::value, a.identity);
      }
    },
    [=](app_log_atom, const std::string& node_id, const application_log& l) {
      auto it = self->state.app_runs.find(l.identity);
      if (it == self->state.app_runs.end())
        return;
      auto n = it->second.nodes.find(node_id);
      if (n == it->second.nodes.end())
        return;
      auto& t = l.stream == "stderr" ? n->second.err_tail : n->second.out_tail;
      t += l.text;
      if (t.size() > log_tail_bytes)
        t.erase(0, t.size() - log_tail_bytes);
    },
    [=](logs_atom, const std::string& identity, std::int64_t max_bytes) -> caf::result<std::string> {
      auto it = self->state.app_runs.find(identity);
      if (it == self->state.app_runs.end())
        return app_error("not_found", "no application run " + identity +
                                        " is known to this broker (log tails are kept for the "
                                        "last " + std::to_string(finished_runs_kept) +
                                        " finished runs since it started)");
      return logs_json(identity, it->second,
                       static_cast<std::size_t>(std::clamp<std::int64_t>(max_bytes, 0, log_tail_bytes)))
        .dump();
    },
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
        const node_info& info) {
      node_entry e;
      e.session = session;
      e.info = info;
      self->state.nodes[node_id] = e;
    },
    [=](node_down_atom, const std::string& node_id, const caf::actor& session) {
      auto it = self->state.nodes.find(node_id);
      if (it != self->state.nodes.end() && it->second.session == session) {
        self->state.nodes.erase(it);
        app_node_lost(self, node_id, "node disconnected");
      }
    },
    [=](heartbeat_atom, const std::string& node_id, const heartbeat& hb) {
      ++self->state.heartbeats;
      if (auto it = self->state.nodes.find(node_id); it != self->state.nodes.end()) {
        it->second.last = hb;
        it->second.last_seen = steady::now();
      }
    },
    [=](app_exited_atom, const std::string& node_id, const application_exited& e) {
      auto it = self->state.app_runs.find(e.identity);
      if (it == self->state.app_runs.end() || !it->second.nodes.count(node_id)) {
        spdlog::warn("node {}: exit of unknown application run {} ({}) ignored", node_id,
                     e.identity, e.exit_code);
        return;
      }
      ++self->state.apps_exited;
      spdlog::info("node {}: application of run {} exited with {}{}{}", node_id, e.identity,
                   e.exit_code, e.reason.empty() ? "" : ": ", e.reason);
      if (e.exit_code == -1 && !e.reason.empty())
        set_app_node(self, e.identity, node_id, "Failed", std::nullopt, e.reason);
      else
        set_app_node(self, e.identity, node_id, "Exited", e.exit_code, e.reason);
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
                    auto job = storage::job_repository(db).find(job_id);
                    // Application jobs also need their package and the disabled nodes.
                    std::optional<storage::package_row> package;
                    std::set<std::string> disabled;
                    if (job && job->job_type == "application") {
                      auto it = job->properties.find("Package");
                      if (it != job->properties.end())
                        package = storage::package_repository(db).find(it->second);
                      for (auto& n : storage::node_repository(db).list())
                        if (!n.is_enabled)
                          disabled.insert(n.id);
                    }
                    return caf::make_message(job, done, package, disabled);
                  }))
        .then(
          [=](std::optional<storage::job_row>& job, bool already_fired,
              std::optional<storage::package_row>& package,
              std::set<std::string>& disabled) mutable {
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
            if (job->job_type == "block")
              start_block_run(self, *job, identity, rp);
            else
              start_application_run(self, *job, package, disabled, identity, rp);
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](exit_run_atom, const std::string& identity) -> caf::result<bool> {
      if (auto it = self->state.app_runs.find(identity); it != self->state.app_runs.end()) {
        auto& run = it->second;
        run.exit_requested = true;
        int asked = 0;
        for (auto& [node_id, n] : run.nodes)
          if (n.open())
            if (auto s = self->state.nodes.find(node_id); s != self->state.nodes.end()) {
              self->send(s->second.session, exit_atom::value, identity);
              ++asked;
            }
        spdlog::info("application run {}: Exit sent to {} node(s)", identity, asked);
        if (asked == 0)
          write_app_summary(self, identity);
        return true;
      }
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
                  {"heartbeats", st.heartbeats},
                  {"applicationsStarted", st.apps_started},
                  {"applicationsExited", st.apps_exited},
                  {"applicationsLost", st.apps_lost}, {"applicationRuns", st.app_runs.size()},
                  {"nodes", st.nodes.size()}, {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_job_manager(caf::actor_system& sys, caf::actor storage, caf::actor dispatcher,
                             job_manager_options opts) {
  return sys.spawn(job_manager, std::move(storage), std::move(dispatcher), std::move(opts));
}

} // namespace spiderhub::actors
