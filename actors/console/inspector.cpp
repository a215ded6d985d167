#include "actors/console/inspector.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <memory>

#include "actors/storage/storage_actor.hpp"
#include "core/auth.hpp"
#include "core/digest.hpp"
#include "protocol/job_site.hpp"
#include "spiderhub/version.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors {

const std::vector<inspector_command>& inspector_commands() {
  static const std::vector<inspector_command> commands = {
    {"actors", "", false, "registered broker actors and live sessions, with their stats"},
    {"mailboxes", "", false, "mailbox size and counter rate per actor family (1 s window)"},
    {"nodes", "", false, "nodes known to the broker (storage)"},
    {"jobs", "", false, "jobs that are not deleted (storage)"},
    {"runs", "JOB", false, "runs, newest first, optionally of one job"},
    {"blocks", "RUN", true, "blocks of a run by state"},
    {"hosts", "RUN", true, "politeness per host of a running run: in flight, delay, robots, pauses"},
    {"trigger", "JOB", true, "fire a job now; prints the new run identity"},
    {"exit", "RUN", true, "stop a running run everywhere"},
    {"disable", "NODE", true, "mark a node disabled"},
    {"enable", "NODE", true, "mark a node enabled again"},
    {"audit", "", false, "the 50 newest audited writes (API and console), newest first"},
    {"version", "", false, "inspector protocol and broker versions"},
  };
  return commands;
}

const inspector_command* find_inspector_command(const std::string& name) {
  for (auto& c : inspector_commands())
    if (c.name == name)
      return &c;
  return nullptr;
}

namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;
using promise = caf::typed_response_promise<std::string>;
using steady = std::chrono::steady_clock;

// ---- reply envelope ------------------------------------------------------------------

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string ok_reply(const std::string& command, json data) {
  return dump({{"version", inspector_protocol_version}, {"broker", version_string},
               {"command", command}, {"ok", true}, {"data", std::move(data)}});
}

std::string error_reply(const std::string& command, const std::string& code,
                        const std::string& message) {
  return dump({{"version", inspector_protocol_version}, {"broker", version_string},
               {"command", command}, {"ok", false},
               {"error", {{"code", code}, {"message", message}}}});
}

// ---- inspector state -------------------------------------------------------------------

struct inspector_state {
  inspector_options opts;
  std::uint64_t requests = 0, refused = 0;
  std::uint64_t next_timer = 0;
  std::map<std::uint64_t, std::function<void()>> timers;  // continuations of delayed work
  static inline const char* name = "inspector";
};

using self_ptr = caf::stateful_actor<inspector_state>*;

// Runs `fn` in the inspector after `delay` (CAF 0.17 event-based actors have no
// run-later: a delayed message to self carries the key of the continuation).
void run_later(self_ptr self, std::chrono::milliseconds delay, std::function<void()> fn) {
  auto key = ++self->state.next_timer;
  self->state.timers.emplace(key, std::move(fn));
  self->delayed_send(self, delay, tick_atom::value, key);
}

// The inspector is reachable from the network: only its own messages may drive it.
bool from_self(self_ptr self) {
  return self->current_sender() == self->ctrl();
}

bool from_local_node(self_ptr self) {
  auto& s = self->current_sender();
  return s && s->node() == self->node();
}

caf::actor peer(self_ptr self, const char* name) {
  return self->system().registry().get<caf::actor>(protocol::registry_key(name));
}

// Answers the console (a void wrapper, so handlers can `return reply(...)`).
void reply(promise& rp, std::string text) { rp.deliver(std::move(text)); }

void deliver_caf_error(promise& rp, const std::string& command, const caf::error& err) {
  auto [code, message] = app_error_parts(err);
  if (err == caf::sec::request_timeout)
    code = "timeout";
  rp.deliver(error_reply(command, code, message));
}

// ---- stats of every actor ---------------------------------------------------------------

// One actor asked for its stats: a registered actor (name = registry name) or a session
// (name = node_session | worker_session).
struct probe {
  std::string name;
  std::string type;     // the actor's own name (stateful state name)
  bool session = false;
  caf::actor actor;
  json stats;           // parsed stats_atom reply, or {"error": ...}
};

using probes = std::vector<probe>;

// Registry names in the order of the broker's pipeline; others follow alphabetically.
int registry_rank(const std::string& name) {
  static const std::vector<std::string> order = {"gateway", "api",      "jobs",     "scheduler",
                                                 "dispatch", "storage", "sessions", "inspector"};
  auto it = std::find(order.begin(), order.end(), name);
  return static_cast<int>(it - order.begin());
}

std::string type_of(const caf::actor& a) {
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(a);
  if (auto* m = dynamic_cast<caf::monitorable_actor*>(ptr ? ptr->get() : nullptr))
    return m->name();
  return "";
}

probes registered_probes(self_ptr self) {
  probes out;
  // CAF registers its own service actors by name; they are not the broker's.
  static const std::vector<std::string> caf_internal = {"SpawnServ", "ConfigServ", "PeerServ",
                                                        "StreamServ"};
  for (auto& [key, ptr] : self->system().registry().named_actors()) {
    auto a = caf::actor_cast<caf::actor>(ptr);
    auto name = caf::to_string(key);
    if (a && std::find(caf_internal.begin(), caf_internal.end(), name) == caf_internal.end())
      out.push_back({name, type_of(a), false, a, {}});
  }
  std::sort(out.begin(), out.end(), [](const probe& x, const probe& y) {
    auto rx = registry_rank(x.name), ry = registry_rank(y.name);
    return rx != ry ? rx < ry : x.name < y.name;
  });
  return out;
}

// Asks every probe for its stats concurrently; `then` runs once all answered or failed.
void ask_stats(self_ptr self, probes ps, std::function<void(probes&)> then) {
  auto shared = std::make_shared<probes>(std::move(ps));
  auto left = std::make_shared<std::size_t>(shared->size());
  if (*left == 0) {
    then(*shared);
    return;
  }
  auto one_done = [shared, left, then] {
    if (--*left == 0)
      then(*shared);
  };
  for (std::size_t i = 0; i < shared->size(); ++i) {
    self->request((*shared)[i].actor, self->state.opts.ask_timeout, stats_atom::value)
      .then(
        [shared, i, one_done](const std::string& text) {
          auto j = json::parse(text, nullptr, false);
          (*shared)[i].stats = j.is_object() ? j : json{{"error", "stats are not a JSON object"}};
          one_done();
        },
        [self, shared, i, one_done](const caf::error& err) {
          (*shared)[i].stats = {{"error", self->system().render(err)}};
          one_done();
        });
  }
}

// Registered actors plus every live session, each with its stats.
void collect(self_ptr self, std::function<void(probes&)> then) {
  auto ps = registered_probes(self);
  auto sessions = peer(self, "sessions");
  if (!sessions) {
    ask_stats(self, std::move(ps), std::move(then));
    return;
  }
  self->request(sessions, self->state.opts.ask_timeout, sessions_atom::value)
    .then(
      [=](const std::vector<caf::actor>& nodes, const std::vector<caf::actor>& workers) mutable {
        for (auto& n : nodes)
          ps.push_back({"node_session", type_of(n), true, n, {}});
        for (auto& w : workers)
          ps.push_back({"worker_session", type_of(w), true, w, {}});
        ask_stats(self, std::move(ps), then);
      },
      [=](const caf::error& err) mutable {
        spdlog::warn("inspector: session registry did not answer: {}",
                     self->system().render(err));
        ask_stats(self, std::move(ps), then);
      });
}

json mailbox_of(const json& stats) {
  auto it = stats.find("mailbox");
  return it != stats.end() && it->is_number() ? *it : json();
}

void cmd_actors(self_ptr self, promise rp, const std::string& command) {
  collect(self, [=](probes& ps) mutable {
    json registered = json::array(), sessions = json::array();
    json counts = {{"node", 0}, {"worker", 0}};
    for (auto& p : ps) {
      json entry = {{"id", p.actor.id()}, {"type", p.type}, {"mailbox", mailbox_of(p.stats)},
                    {"stats", p.stats}};
      if (p.session) {
        auto kind = p.name == "node_session" ? "node" : "worker";
        entry["kind"] = kind;
        counts[kind] = counts[kind].get<int>() + 1;
        sessions.push_back(std::move(entry));
      } else {
        entry["name"] = p.name;
        registered.push_back(std::move(entry));
      }
    }
    rp.deliver(ok_reply(command, {{"registered", registered},
                                  {"sessions", sessions},
                                  {"sessionCounts", counts}}));
  });
}

// Counters of each family's stats that grow by one (or one item) per message handled;
// `mailboxes` turns their growth into a rate. Actors have no generic message counter in
// CAF 0.17 (the actor profiler is compiled out of Debian's libcaf), so these stand in.
const std::vector<std::string>& activity_counters(const std::string& family) {
  static const std::map<std::string, std::vector<std::string>> table = {
    {"storage", {"reads", "writes"}},
    {"dispatch", {"requestsAccepted", "duplicates", "blocksLeased", "resultsStored",
                  "resultsAcked"}},
    {"jobs", {"fires"}},
    {"scheduler", {"fires"}},
    {"api", {"requests"}},
    {"inspector", {"requests"}},
    {"node_session", {"invocations"}},
    {"worker_session", {"invocations"}},
  };
  static const std::vector<std::string> none;
  auto it = table.find(family);
  return it == table.end() ? none : it->second;
}

double activity(const std::string& family, const json& stats) {
  double sum = 0;
  for (auto& key : activity_counters(family))
    if (auto it = stats.find(key); it != stats.end() && it->is_number())
      sum += it->get<double>();
  return sum;
}

void cmd_mailboxes(self_ptr self, promise rp, const std::string& command) {
  // Two samples one window apart: the rate is the counters' growth over that window.
  collect(self, [=](probes& first) mutable {
    auto before = std::make_shared<std::map<caf::actor_id, double>>();
    for (auto& p : first)
      (*before)[p.actor.id()] = activity(p.name, p.stats);
    auto started = steady::now();
    auto window = self->state.opts.rate_window;
    run_later(self, window, [=]() mutable {
      collect(self, [=](probes& second) mutable {
        auto seconds = std::chrono::duration<double>(steady::now() - started).count();
        struct family {
          std::size_t actors = 0;
          std::uint64_t mailbox = 0, max_mailbox = 0;
          bool has_mailbox = false;
          double delta = 0;
        };
        std::map<std::string, family> families;
        std::vector<std::string> order;
        for (auto& p : second) {
          if (!families.count(p.name))
            order.push_back(p.name);
          auto& f = families[p.name];
          ++f.actors;
          if (auto m = mailbox_of(p.stats); m.is_number()) {
            auto n = m.get<std::uint64_t>();
            f.has_mailbox = true;
            f.mailbox += n;
            f.max_mailbox = std::max(f.max_mailbox, n);
          }
          // Sessions that came or went during the window have no delta.
          if (auto b = before->find(p.actor.id()); b != before->end())
            f.delta += std::max(0.0, activity(p.name, p.stats) - b->second);
        }
        json out = json::array();
        for (auto& name : order) {
          auto& f = families[name];
          std::string counter;
          for (auto& c : activity_counters(name))
            counter += (counter.empty() ? "" : "+") + c;
          out.push_back({{"family", name},
                         {"actors", f.actors},
                         {"mailbox", f.has_mailbox ? json(f.mailbox) : json()},
                         {"maxMailbox", f.has_mailbox ? json(f.max_mailbox) : json()},
                         {"rate", counter.empty() ? json() : json(f.delta / seconds)},
                         {"counter", counter}});
        }
        rp.deliver(ok_reply(command, {{"windowMs", static_cast<std::int64_t>(seconds * 1000)},
                                      {"families", out}}));
      });
    });
  });
}

// ---- storage-backed commands -------------------------------------------------------------

template <class Then>
void read_then(self_ptr self, promise rp, const std::string& command, read_fn fn, Then then) {
  auto storage = peer(self, "storage");
  if (!storage) {
    rp.deliver(error_reply(command, "unavailable", "the storage actor is not running"));
    return;
  }
  self->request(storage, self->state.opts.ask_timeout, read_atom::value, std::move(fn))
    .then(std::move(then),
          [rp, command](const caf::error& err) mutable { deliver_caf_error(rp, command, err); });
}

json node_json(const storage::node_row& n) {
  return {{"id", n.id},         {"nodeType", n.node_type},
          {"ipAddress", n.ip},  {"processorCount", n.processor_count},
          {"group", n.group},   {"operatingSystem", n.os},
          {"memory", n.memory}, {"isEnabled", n.is_enabled},
          {"isOnline", n.is_online}, {"creationTime", n.creation_time},
          {"lastSeen", n.last_seen}};
}

void cmd_nodes(self_ptr self, promise rp, const std::string& command) {
  read_then(self, rp, command,
            [](storage::database& db) {
              return caf::make_message(storage::node_repository(db).list());
            },
            [rp, command](std::vector<storage::node_row>& nodes) mutable {
              // Nodes refused at connect (sign, clock skew, replay) join the list: a node
              // that never got in has no row.
              std::map<std::string, json> refused;
              for (auto& f : core::node_refusals())
                refused[f.node_id] = {{"reason", f.reason}, {"address", f.address},
                                      {"count", f.count}, {"lastMs", f.last_ms}};
              json out = json::array();
              for (auto& n : nodes) {
                auto j = node_json(n);
                if (auto it = refused.find(n.id); it != refused.end()) {
                  j["refused"] = it->second;
                  refused.erase(it);
                }
                out.push_back(std::move(j));
              }
              for (auto& [id, f] : refused)
                out.push_back({{"id", id}, {"ipAddress", f["address"]}, {"isOnline", false},
                               {"refused", f}});
              rp.deliver(ok_reply(command, out));
            });
}

void cmd_jobs(self_ptr self, promise rp, const std::string& command) {
  read_then(self, rp, command,
            [](storage::database& db) {
              return caf::make_message(storage::job_repository(db).list());
            },
            [rp, command](std::vector<storage::job_row>& jobs) mutable {
              json out = json::array();
              for (auto& j : jobs)
                out.push_back({{"id", j.id}, {"name", j.name}, {"jobType", j.job_type},
                               {"cron", j.cron}, {"description", j.description},
                               {"isEnabled", j.is_enabled}, {"creationTime", j.creation_time},
                               {"lastFire", j.last_fire},
                               {"properties", protocol::shown_properties(j.properties)}});
              rp.deliver(ok_reply(command, out));
            });
}

void cmd_runs(self_ptr self, promise rp, const std::string& command, const std::string& job) {
  read_then(
    self, rp, command,
    [job](storage::database& db) {
      return caf::make_message(storage::run_repository(db).statuses(job));
    },
    [self, rp, command](std::vector<storage::job_status_row>& rows) mutable {
      // The NodeId "" row is the run as a whole; per-node rows are in the API.
      json out = json::array();
      for (auto& s : rows)
        if (s.node_id.empty())
          out.push_back({{"identity", s.identity}, {"jobId", s.job_id}, {"status", s.status},
                         {"total", s.total}, {"success", s.success}, {"error", s.error},
                         {"skipped", s.skipped}, {"left", s.left}, {"reason", s.reason},
                         {"updateTime", s.update_time}});
      // Live block counters of open runs come from the dispatcher, when it answers.
      auto dispatcher = peer(self, "dispatch");
      if (!dispatcher) {
        rp.deliver(ok_reply(command, out));
        return;
      }
      self->request(dispatcher, self->state.opts.ask_timeout, stats_atom::value)
        .then(
          [rp, command, out](const std::string& text) mutable {
            auto stats = json::parse(text, nullptr, false);
            if (stats.is_object() && stats.contains("runs") && stats["runs"].is_array())
              for (auto& live : stats["runs"])
                for (auto& r : out)
                  if (r["identity"] == live.value("identity", ""))
                    r["live"] = {{"pending", live.value("pending", 0)},
                                 {"blocksReady", live.value("blocksReady", 0)},
                                 {"blocksLeased", live.value("blocksLeased", 0)},
                                 {"unacked", live.value("unacked", 0)}};
            rp.deliver(ok_reply(command, out));
          },
          [rp, command, out](const caf::error&) mutable { rp.deliver(ok_reply(command, out)); });
    });
}

void cmd_blocks(self_ptr self, promise rp, const std::string& command, const std::string& run) {
  read_then(self, rp, command,
            [run](storage::database& db) {
              auto report = blocks_report(db, run);
              return caf::make_message(report.has_value(), report.value_or(""));
            },
            [rp, command, run](bool known, const std::string& data) mutable {
              if (!known)
                return reply(rp, error_reply(command, "not_found", "run " + run + " not found"));
              rp.deliver(ok_reply(command, json::parse(data)));
            });
}

// Records a console write in the audit trail (role "console": the inspector's clients
// are not told apart).
void audit(self_ptr self, const std::string& action, const std::string& target, int status) {
  auto storage = peer(self, "storage");
  if (!storage)
    return;
  storage::audit_row row;
  row.role = "console";
  row.name = "inspector";
  row.action = action;
  row.target = target;
  row.status = status;
  record_audit(storage, std::move(row), self->state.opts.audit_max_rows);
}

void cmd_audit(self_ptr self, promise rp, const std::string& command) {
  read_then(self, rp, command,
            [](storage::database& db) {
              return caf::make_message(storage::audit_repository(db).list(50));
            },
            [rp, command](std::vector<storage::audit_row>& rows) mutable {
              json out = json::array();
              for (auto& a : rows)
                out.push_back({{"id", a.id}, {"time", a.time}, {"role", a.role},
                               {"name", a.name}, {"address", a.address},
                               {"action", a.action}, {"target", a.target},
                               {"status", a.status}});
              rp.deliver(ok_reply(command, out));
            });
}

void cmd_set_enabled(self_ptr self, promise rp, const std::string& command,
                     const std::string& node, bool enabled) {
  auto storage = peer(self, "storage");
  if (!storage)
    return reply(rp, error_reply(command, "unavailable", "the storage actor is not running"));
  auto found = std::make_shared<bool>(false);
  self
    ->request(storage, self->state.opts.ask_timeout, write_atom::value,
              write_fn([node, enabled, found](storage::database& db) {
                storage::node_repository repo(db);
                *found = repo.find(node).has_value();
                if (*found)
                  repo.set_enabled(node, enabled);
              }))
    .then(
      [self, rp, command, node, enabled, found](bool) mutable {
        audit(self, enabled ? "node.enable" : "node.disable", node, *found ? 200 : 404);
        if (!*found)
          return reply(rp, error_reply(command, "not_found", "node " + node + " not found"));
        spdlog::info("inspector: node {} {}", node, enabled ? "enabled" : "disabled");
        if (auto dispatcher = peer(self, "dispatch"))
          self->send(dispatcher, node_enabled_atom::value, node, enabled);
        rp.deliver(ok_reply(command, {{"id", node}, {"isEnabled", enabled}}));
      },
      [rp, command](const caf::error& err) mutable { deliver_caf_error(rp, command, err); });
}

// ---- job manager commands -------------------------------------------------------------

void cmd_trigger(self_ptr self, promise rp, const std::string& command, const std::string& job) {
  auto jobs = peer(self, "jobs");
  if (!jobs)
    return reply(rp, error_reply(command, "unavailable", "the job manager is not running"));
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  // A timeout here only means the reply was late: the fire itself may still happen.
  self->request(jobs, self->state.opts.ask_timeout, fire_atom::value, job, now, std::string{})
    .then(
      [self, rp, command, job](const std::string& identity) mutable {
        audit(self, "job.trigger", job, 200);
        spdlog::info("inspector: job {} triggered: run {}", job, identity);
        rp.deliver(ok_reply(command, {{"jobId", job}, {"identity", identity}}));
      },
      [rp, command](const caf::error& err) mutable { deliver_caf_error(rp, command, err); });
}

void cmd_exit(self_ptr self, promise rp, const std::string& command, const std::string& run) {
  auto jobs = peer(self, "jobs");
  if (!jobs)
    return reply(rp, error_reply(command, "unavailable", "the job manager is not running"));
  self->request(jobs, self->state.opts.ask_timeout, exit_run_atom::value, run)
    .then(
      [self, rp, command, run](bool found) mutable {
        audit(self, "run.exit", run, found ? 200 : 404);
        if (!found)
          return reply(rp, error_reply(command, "not_found", "run " + run + " is not running"));
        spdlog::info("inspector: run {} exited", run);
        rp.deliver(ok_reply(command, {{"identity", run}, {"exited", true}}));
      },
      [rp, command](const caf::error& err) mutable { deliver_caf_error(rp, command, err); });
}

void cmd_hosts(self_ptr self, promise rp, const std::string& command, const std::string& run) {
  auto dispatcher = peer(self, "dispatch");
  if (!dispatcher)
    return reply(rp, error_reply(command, "unavailable", "the dispatcher is not running"));
  self->request(dispatcher, self->state.opts.ask_timeout, hosts_atom::value, run)
    .then([rp, command](const std::string& body) mutable {
            rp.deliver(ok_reply(command, json::parse(body)));
          },
          [rp, command](const caf::error& err) mutable { deliver_caf_error(rp, command, err); });
}

// ---- the actor --------------------------------------------------------------------------

void dispatch(self_ptr self, promise rp, const std::string& command, const std::string& arg) {
  const auto* c = find_inspector_command(command);
  if (!c)
    return reply(rp, error_reply(command, "unknown_command", "unknown command '" + command +
                                                                "' (try 'help')"));
  if (c->argument.empty() && !arg.empty())
    return reply(rp, error_reply(command, "invalid", command + " takes no argument"));
  if (c->argument_required && arg.empty())
    return reply(rp, error_reply(command, "invalid", command + " needs " + c->argument));
  if (arg.size() > 200)
    return reply(rp, error_reply(command, "invalid", "argument is too long"));
  if (command == "actors")
    return cmd_actors(self, rp, command);
  if (command == "mailboxes")
    return cmd_mailboxes(self, rp, command);
  if (command == "nodes")
    return cmd_nodes(self, rp, command);
  if (command == "jobs")
    return cmd_jobs(self, rp, command);
  if (command == "runs")
    return cmd_runs(self, rp, command, arg);
  if (command == "blocks")
    return cmd_blocks(self, rp, command, arg);
  if (command == "hosts")
    return cmd_hosts(self, rp, command, arg);
  if (command == "trigger")
    return cmd_trigger(self, rp, command, arg);
  if (command == "exit")
    return cmd_exit(self, rp, command, arg);
  if (command == "disable" || command == "enable")
    return cmd_set_enabled(self, rp, command, arg, command == "enable");
  if (command == "audit")
    return cmd_audit(self, rp, command);
  json names = json::array();
  for (auto& cmd : inspector_commands())
    names.push_back(cmd.name);
  rp.deliver(ok_reply(command, {{"protocol", inspector_protocol_version},
                                {"broker", version_string},
                                {"commands", names}}));
}

caf::behavior inspector(self_ptr self, inspector_options opts) {
  self->state.opts = std::move(opts);
  return {
    [=](inspect_atom, const std::string& secret, const std::string& command,
        const std::string& arg) -> caf::result<std::string> {
      auto& st = self->state;
      ++st.requests;
      if (!st.opts.secret.empty() && !core::secure_equals(secret, st.opts.secret)) {
        ++st.refused;
        auto& sender = self->current_sender();
        spdlog::warn("inspector: refused '{}' from {}: wrong or missing secret", command,
                     sender ? caf::to_string(sender->node()) : std::string("anonymous"));
        return error_reply(command, "unauthorized", "wrong or missing inspector secret");
      }
      auto rp = self->make_response_promise<std::string>();
      dispatch(self, rp, command, arg);
      return rp;
    },
    [=](tick_atom, std::uint64_t key) {
      if (!from_self(self))
        return;
      auto it = self->state.timers.find(key);
      if (it == self->state.timers.end())
        return;
      auto fn = std::move(it->second);
      self->state.timers.erase(it);
      fn();
    },
    [=](stats_atom) -> caf::result<std::string> {
      // Stats carry no secret: answered to actors of this broker only.
      if (!from_local_node(self))
        return caf::make_error(caf::sec::unexpected_message);
      auto& st = self->state;
      return dump({{"requests", st.requests}, {"refused", st.refused},
                   {"mailbox", self->mailbox().size()}});
    },
  };
}

// ---- session registry -------------------------------------------------------------------

struct session_registry_state {
  caf::actor jobs;
  std::vector<caf::actor> nodes, workers;
  static inline const char* name = "session_registry";
};

using registry_ptr = caf::stateful_actor<session_registry_state>*;

void remember(registry_ptr self, std::vector<caf::actor>& v, const caf::actor& session) {
  if (std::find(v.begin(), v.end(), session) == v.end()) {
    v.push_back(session);
    // A session that dies without saying goodbye must not linger in the list.
    self->monitor(session);
  }
}

void forget(std::vector<caf::actor>& v, const caf::actor_addr& session) {
  v.erase(std::remove_if(v.begin(), v.end(),
                         [&](const caf::actor& a) { return a.address() == session; }),
          v.end());
}

caf::behavior session_registry(registry_ptr self, caf::actor jobs) {
  self->state.jobs = jobs;
  // Whatever else the sessions send the job manager passes through untouched.
  self->set_default_handler(
    [jobs](caf::scheduled_actor* s, caf::message_view& x) -> caf::result<caf::message> {
      return s->delegate(jobs, x.move_content_to_message());
    });
  self->set_down_handler([=](caf::down_msg& dm) {
    forget(self->state.nodes, dm.source);
    forget(self->state.workers, dm.source);
  });
  return {
    [=](node_up_atom a, const std::string& id, const caf::actor& session, const node_info& info) {
      remember(self, self->state.nodes, session);
      return self->delegate(self->state.jobs, a, id, session, info);
    },
    [=](node_down_atom a, const std::string& id, const caf::actor& session) {
      forget(self->state.nodes, session.address());
      return self->delegate(self->state.jobs, a, id, session);
    },
    [=](worker_up_atom a, const std::string& cls, const caf::actor& session) {
      remember(self, self->state.workers, session);
      return self->delegate(self->state.jobs, a, cls, session);
    },
    [=](worker_down_atom a, const std::string& cls, const caf::actor& session) {
      forget(self->state.workers, session.address());
      return self->delegate(self->state.jobs, a, cls, session);
    },
    [=](sessions_atom) { return caf::make_message(self->state.nodes, self->state.workers); },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      return dump({{"nodes", st.nodes.size()}, {"workers", st.workers.size()},
                   {"mailbox", self->mailbox().size()}});
    },
  };
}

} // namespace

caf::actor spawn_inspector(caf::actor_system& sys, inspector_options opts) {
  return sys.spawn(inspector, std::move(opts));
}

caf::actor spawn_session_registry(caf::actor_system& sys, caf::actor jobs) {
  return sys.spawn(session_registry, std::move(jobs));
}

namespace {
const char* block_state_name(storage::block_state s) {
  switch (s) {
    case storage::block_state::ready:
      return "ready";
    case storage::block_state::used:
      return "leased";
    case storage::block_state::success:
      return "success";
    case storage::block_state::failed:
      return "failed";
  }
  return "unknown";
}
} // namespace

std::optional<std::string> blocks_report(storage::database& db, const std::string& run) {
  auto blocks = storage::crawl_repository(db).blocks(run);
  auto statuses = storage::run_repository(db).statuses_of_run(run);
  if (blocks.empty() && statuses.empty())
    return std::nullopt;
  // A finished run's Block rows are purged with its results; its status row counts them.
  std::int64_t purged = 0;
  for (auto& s : statuses)
    if (s.node_id.empty())
      purged += s.blocks;
  json counts = {{"ready", 0}, {"leased", 0}, {"success", purged}, {"failed", 0}};
  json list = json::array();
  for (auto& b : blocks) {
    auto state = block_state_name(b.state);
    if (counts.contains(state))
      counts[state] = counts[state].get<int>() + 1;
    list.push_back({{"id", b.id}, {"state", state}, {"nodeId", b.node_id},
                    {"attempts", b.attempts}, {"leaseUntil", b.lease_until},
                    {"creationTime", b.creation_time}});
  }
  return json{{"identity", run}, {"counts", counts}, {"blocks", list}, {"purged", purged}}.dump();
}

} // namespace spiderhub::actors
