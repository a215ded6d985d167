#include "actors/gateway/api.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>

#include "actors/agent/app_runner.hpp"
#include "actors/console/inspector.hpp"
#include "actors/gateway/dashboard.hpp"
#include "actors/gateway/gateway.hpp"
#include "actors/gateway/metrics.hpp"
#include "actors/gateway/views.hpp"
#include "actors/scheduler/schedulernet.hpp"
#include "core/cron.hpp"
#include "core/digest.hpp"
#include "core/politeness.hpp"
#include "net/http_server.hpp"
#include "protocol/job_site.hpp"
#include "protocol/json_codec.hpp"
#include "actors/storage/storage_actor.hpp"
#include "storage/repositories.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<spiderhub::net::http_responder>)


namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;
using responder_ptr = std::shared_ptr<net::http_responder>;

struct api_state {
  api_options opts;
  auth_gate_ptr auth;  // opts.auth, or an open gate
  api_peers peers;
  std::uint64_t requests = 0, errors = 0;
  static inline const char* name = "api";
};
using self_ptr = caf::stateful_actor<api_state>*;

void reply_json(const responder_ptr& r, int status, const json& body) {
  net::http_response resp;
  resp.status = status;
  resp.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  r->reply(std::move(resp));
}

// 200 with JSON text an actor already rendered.
void reply_body(const responder_ptr& r, std::string body) {
  net::http_response resp;
  resp.body = std::move(body);
  r->reply(std::move(resp));
}

void reply_error(const responder_ptr& r, int status, const std::string& code,
                 const std::string& message) {
  r->reply(error_response(status, code, message));
}

int status_of(const std::string& code) {
  if (code == "not_found")
    return 404;
  if (code == "invalid")
    return 400;
  if (code == "conflict" || code == "run_failed")
    return 409;
  if (code == "not_implemented")
    return 501;
  if (code == "unavailable")
    return 503;
  return 500;
}

void reply_caf_error(const responder_ptr& r, const caf::error& err) {
  auto [code, message] = app_error_parts(err);
  reply_error(r, status_of(code), code, message);
}

// ---- job validation ----------------------------------------------------------

std::vector<std::string> next_fire_times(const std::string& cron, const std::string& tz) {
  std::vector<std::string> out;
  try {
    auto sched = core::cron_schedule::parse(cron, tz);
    auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    for (auto t : sched.next_n(now, 5))
      out.push_back(core::format_iso8601_utc(t));
  } catch (const std::exception&) {
    // A stored job always has a valid cron; a zone change may break it: show none.
  }
  return out;
}

json job_json(const storage::job_row& j, const std::string& tz) {
  return {{"id", j.id},
          {"name", j.name},
          {"jobType", j.job_type},
          {"cron", j.cron},
          {"description", j.description},
          {"isEnabled", j.is_enabled},
          {"creationTime", j.creation_time},
          {"properties", shown_properties(j.properties)},
          {"nextFireTimes", next_fire_times(j.cron, tz)}};
}

// Builds a job from a request body; throws input_error with the first problem found.
storage::job_row parse_job(const std::string& body, const std::string& tz) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded())
    throw core::input_error("body is not valid JSON");
  if (!j.is_object())
    throw core::input_error("body must be a JSON object");
  static const std::set<std::string> known = {"id",          "name",       "jobType",
                                              "cron",        "description", "isEnabled",
                                              "properties",  "creationTime", "nextFireTimes"};
  for (auto& [k, v] : j.items())
    if (!known.count(k))
      throw core::input_error("unknown field '" + k + "'");
  auto str = [&](const char* key, bool required) -> std::string {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required)
        throw core::input_error(std::string("'") + key + "' is required");
      return {};
    }
    if (!it->is_string())
      throw core::input_error(std::string("'") + key + "' must be a string");
    return it->get<std::string>();
  };
  storage::job_row job;
  job.name = str("name", true);
  if (job.name.empty() || job.name.size() > 50)
    throw core::input_error("'name' must be 1-50 characters");
  job.job_type = str("jobType", true);
  if (job.job_type != "block" && job.job_type != "application")
    throw core::input_error("'jobType' must be \"block\" or \"application\"");
  job.cron = str("cron", true);
  try {
    core::cron_schedule::parse(job.cron, tz);
  } catch (const core::input_error& e) {
    // "cron: field 'minute' ..." -> "'cron' is invalid: field 'minute' ..."
    std::string what = e.what();
    if (what.compare(0, 6, "cron: ") == 0)
      what.erase(0, 6);
    throw core::input_error("'cron' is invalid: " + what);
  }
  job.description = str("description", false);
  if (job.description.size() > 500)
    throw core::input_error("'description' must be at most 500 characters");
  if (auto it = j.find("isEnabled"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean())
      throw core::input_error("'isEnabled' must be true or false");
    job.is_enabled = it->get<bool>();
  }
  if (auto it = j.find("properties"); it != j.end() && !it->is_null()) {
    if (!it->is_object())
      throw core::input_error("'properties' must be an object");
    for (auto& [k, v] : it->items()) {
      if (v.is_string())
        job.properties[k] = v.get<std::string>();
      else if (v.is_number_integer())
        job.properties[k] = std::to_string(v.get<std::int64_t>());
      else if (v.is_object() && k == "Site")
        job.properties[k] = v.dump();
      else
        throw core::input_error("property '" + k + "' must be a string or an integer");
      if (job.properties[k].size() > 100000)
        throw core::input_error("property '" + k + "' is too long");
    }
  }
  auto require = [&](const char* key) {
    auto it = job.properties.find(key);
    if (it == job.properties.end() || it->second.empty())
      throw core::input_error(job.job_type + " job needs property '" + key + "'");
  };
  if (job.job_type == "block") {
    require("FullClassName");
    site_of_job(job.properties);  // throws naming the property (Site, politeness, download)
  } else {
    require("Package");
    require("Application");
    if (!valid_package_name(job.properties["Package"]))
      throw core::input_error("property 'Package' is not a valid package name");
    const auto& app = job.properties["Application"];
    if (app.front() == '/' || !core::stays_inside(app))
      throw core::input_error("property 'Application' must be a path inside the package");
    if (auto it = job.properties.find("Arguments"); it != job.properties.end())
      split_arguments(it->second);  // throws on an unterminated quote
    for (const char* key : {"NodeCount"}) {
      auto it = job.properties.find(key);
      if (it != job.properties.end()) {
        char* end = nullptr;
        auto n = std::strtol(it->second.c_str(), &end, 10);
        if (*end != '\0' || n < 1 || n > 10000)
          throw core::input_error(std::string("property '") + key + "' must be 1-10000");
      }
    }
  }
  return job;
}

// ---- handlers -------------------------------------------------------------------

template <class Fn>
void read_then(self_ptr self, const responder_ptr& r, read_fn fn, Fn&& then) {
  self->request(self->state.peers.storage, caf::infinite, read_atom::value, std::move(fn))
    .then(std::forward<Fn>(then), [r](const caf::error& err) {
      reply_error(r, 503, "unavailable", "storage: " + caf::to_string(err));
    });
}

void write_then(self_ptr self, const responder_ptr& r, write_fn fn,
                std::function<void()> then) {
  self->request(self->state.peers.storage, caf::infinite, write_atom::value, std::move(fn))
    .then([then](bool) { then(); },
          [r](const caf::error& err) {
            reply_error(r, 503, "unavailable", "storage: " + caf::to_string(err));
          });
}

// Tells the scheduler (builtin or Scheduler.NET) after the change is committed.
void jobs_changed(self_ptr self, const std::string& id, const char* change) {
  if (self->state.peers.scheduler)
    self->send(self->state.peers.scheduler, jobs_changed_atom::value, id, std::string(change));
}

void list_jobs(self_ptr self, const responder_ptr& r) {
  auto tz = self->state.opts.timezone;
  read_then(self, r, [](storage::database& db) {
    return caf::make_message(storage::job_repository(db).list());
  },
            [r, tz](std::vector<storage::job_row>& jobs) {
              json out = json::array();
              for (auto& j : jobs)
                out.push_back(job_json(j, tz));
              reply_json(r, 200, out);
            });
}

void get_job(self_ptr self, const responder_ptr& r, const std::string& id) {
  auto tz = self->state.opts.timezone;
  read_then(self, r, [id](storage::database& db) {
    return caf::make_message(storage::job_repository(db).find(id));
  },
            [r, tz, id](std::optional<storage::job_row>& job) {
              if (!job || job->is_deleted)
                return reply_error(r, 404, "not_found", "job " + id + " not found");
              reply_json(r, 200, job_json(*job, tz));
            });
}

void create_job(self_ptr self, const responder_ptr& r, const std::string& body) {
  auto job = parse_job(body, self->state.opts.timezone);
  job.id = core::new_guid();
  job.creation_time = storage::now_text();
  // A new job fires from now on, never for due times before it existed.
  job.last_fire = static_cast<std::int64_t>(std::time(nullptr));
  auto tz = self->state.opts.timezone;
  write_then(self, r, [job](storage::database& db) { storage::job_repository(db).insert(job); },
             [=] {
               spdlog::info("api: job {} ({}) created", job.id, job.name);
               jobs_changed(self, job.id, "created");
               reply_json(r, 201, job_json(job, tz));
             });
}

void update_job(self_ptr self, const responder_ptr& r, const std::string& id,
                const std::string& body) {
  auto job = parse_job(body, self->state.opts.timezone);
  job.id = id;
  auto found = std::make_shared<bool>(false);
  write_then(self, r,
             [job, found](storage::database& db) {
               *found = storage::job_repository(db).update(job);
             },
             [=] {
               if (!*found)
                 return reply_error(r, 404, "not_found", "job " + id + " not found");
               spdlog::info("api: job {} ({}) updated", id, job.name);
               jobs_changed(self, id, "updated");
               get_job(self, r, id);
             });
}

void delete_job(self_ptr self, const responder_ptr& r, const std::string& id) {
  auto found = std::make_shared<bool>(false);
  write_then(self, r,
             [id, found](storage::database& db) {
               *found = storage::job_repository(db).soft_delete(id);
             },
             [=] {
               if (!*found)
                 return reply_error(r, 404, "not_found", "job " + id + " not found");
               spdlog::info("api: job {} deleted", id);
               jobs_changed(self, id, "deleted");
               reply_json(r, 200, {{"id", id}, {"isDeleted", true}});
             });
}

// `callback`: the call comes from Scheduler.NET (signed URL). The service retries every
// non-2xx answer, so a fire whose run was recorded as Failed is answered 200 there: a
// retry would only record more failed runs.
void trigger_job(self_ptr self, const responder_ptr& r, const std::string& id, bool callback) {
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  self->request(self->state.peers.jobs, caf::infinite, fire_atom::value, id, now,
                std::string{})
    .then([r](const std::string& identity) { reply_json(r, 200, {{"identity", identity}}); },
          [r, callback](const caf::error& err) {
            auto [code, message] = app_error_parts(err);
            if (callback && code == "run_failed")
              return reply_json(r, 200, {{"status", "Failed"}, {"reason", message}});
            reply_caf_error(r, err);
          });
}

// POST /api/v1.0/jobs/{id}/trigger?sig=HMAC: the Scheduler.NET callback, which cannot send
// the bearer token; the signature authorizes triggering that one job only.
bool signed_trigger(self_ptr self, const net::http_request& req,
                    const std::vector<std::string>& seg) {
  if (req.method != "POST" || seg.size() != 3 || seg[0] != "jobs" || seg[2] != "trigger")
    return false;
  auto sig = req.query.find("sig");
  if (sig == req.query.end())
    return false;
  for (auto& c : self->state.auth->keys.credentials())
    if (c.role_ == core::role_admin &&
        core::secure_equals(sig->second, trigger_signature(c.secret, seg[1])))
      return true;
  return false;
}


void list_runs(self_ptr self, const responder_ptr& r, const std::string& job_id) {
  read_then(self, r, [job_id](storage::database& db) {
    return caf::make_message(storage::run_repository(db).statuses(job_id));
  },
            [r](std::vector<storage::job_status_row>& rows) { reply_json(r, 200, runs_json(rows)); });
}

void exit_run(self_ptr self, const responder_ptr& r, const std::string& identity) {
  self->request(self->state.peers.jobs, caf::infinite, exit_run_atom::value, identity)
    .then(
      [r, identity](bool found) {
        if (!found)
          return reply_error(r, 404, "not_found", "run " + identity + " is not running");
        reply_json(r, 200, {{"identity", identity}, {"exited", true}});
      },
      [r](const caf::error& err) { reply_caf_error(r, err); });
}


void list_brokers(self_ptr self, const responder_ptr& r) {
  read_then(self, r, [](storage::database& db) {
    return caf::make_message(storage::broker_repository(db).list());
  },
            [r](std::vector<storage::broker_row>& brokers) {
              json out = json::array();
              for (auto& b : brokers)
                out.push_back({{"name", b.name}, {"url", b.url}, {"role", b.role},
                               {"lastSeen", b.last_seen}});
              reply_json(r, 200, out);
            });
}

void list_nodes(self_ptr self, const responder_ptr& r) {
  read_then(self, r, [](storage::database& db) {
    return caf::make_message(storage::node_repository(db).list());
  },
            [r](std::vector<storage::node_row>& nodes) {
              json out = json::array();
              for (auto& n : nodes)
                out.push_back(node_json(n));
              reply_json(r, 200, out);
            });
}

void node_status(self_ptr self, const responder_ptr& r, const std::string& id) {
  read_then(self, r, [id](storage::database& db) {
    storage::node_repository repo(db);
    return caf::make_message(repo.find(id).has_value(), repo.statuses(id, 720));
  },
            [r, id](bool exists, std::vector<storage::node_status_row>& rows) {
              if (!exists)
                return reply_error(r, 404, "not_found", "node " + id + " not found");
              json out = json::array();
              for (auto& s : rows)
                out.push_back({{"processCount", s.process_count}, {"cpu", s.cpu},
                               {"freeMemory", s.free_memory}, {"creationTime", s.creation_time}});
              reply_json(r, 200, out);
            });
}

// What a request's method needs: reads a viewer (or admin), writes an admin.
unsigned roles_for(const std::string& method) {
  return method == "GET" || method == "HEAD" ? core::role_viewer | core::role_admin
                                             : core::role_admin;
}

// ---- audit ----------------------------------------------------------------------------

// The audited action of a write route, or "" for reads and unknown routes.
std::string audit_action(const std::string& m, const std::vector<std::string>& seg) {
  if (seg.empty())
    return {};
  if (seg[0] == "jobs") {
    if (seg.size() == 1 && m == "POST")
      return "job.create";
    if (seg.size() == 2 && m == "PUT")
      return "job.update";
    if (seg.size() == 2 && m == "DELETE")
      return "job.delete";
    if (seg.size() == 3 && seg[2] == "trigger" && m == "POST")
      return "job.trigger";
  } else if (seg[0] == "runs" && seg.size() == 3 && seg[2] == "exit" && m == "POST") {
    return "run.exit";
  } else if (seg[0] == "packages" && seg.size() == 2) {
    if (m == "PUT")
      return "package.upload";
    if (m == "DELETE")
      return "package.delete";
  }
  return {};
}

// Records the write when it is answered (with the answer's status; a created job's id
// from the answer), then passes the answer on.
class audited_responder : public net::http_responder {
 public:
  audited_responder(responder_ptr inner, caf::actor storage, storage::audit_row row,
                    std::int64_t max_rows)
    : inner_(std::move(inner)), storage_(std::move(storage)), row_(std::move(row)),
      max_rows_(max_rows) {}
  ~audited_responder() override {
    if (!done_.exchange(true))
      record(500, {});  // never answered: the inner responder answers 500
  }
  void reply(net::http_response r) override {
    if (!done_.exchange(true))
      record(r.status, r.body);
    inner_->reply(std::move(r));
  }

 private:
  void record(int status, const std::string& body) {
    auto row = row_;
    row.status = status;
    if (row.target.empty() && status < 300) {
      auto j = json::parse(body, nullptr, false);
      if (j.is_object() && j.contains("id") && j["id"].is_string())
        row.target = j["id"].get<std::string>();
    }
    record_audit(storage_, std::move(row), max_rows_);
  }
  responder_ptr inner_;
  caf::actor storage_;
  storage::audit_row row_;
  std::int64_t max_rows_;
  std::atomic<bool> done_{false};
};

responder_ptr audited(self_ptr self, const responder_ptr& r, const net::http_request& req,
                      const std::vector<std::string>& seg, const core::principal& who,
                      bool callback) {
  auto action = audit_action(req.method, seg);
  if (action.empty())
    return r;
  storage::audit_row row;
  row.role = callback ? "callback" : who.roles == ~0u ? "" : core::roles_text(who.roles);
  row.name = callback ? "schedulernet" : who.name;
  row.address = req.remote_ip;
  row.action = action;
  row.target = seg.size() >= 2 ? seg[1] : "";
  if (action == "package.upload")
    row.detail = std::to_string(req.body.size()) + " bytes";
  else
    row.detail = req.body.size() > 4096 ? req.body.substr(0, 4096) + "..." : req.body;
  return std::make_shared<audited_responder>(r, self->state.peers.storage, std::move(row),
                                             self->state.opts.audit_max_rows);
}

json audit_json(const storage::audit_row& a) {
  return {{"id", a.id},           {"time", a.time},     {"role", a.role},
          {"name", a.name},       {"address", a.address}, {"action", a.action},
          {"target", a.target},   {"detail", a.detail}, {"status", a.status}};
}

// GET /api/v1.0/audit?limit=N&before=ID: newest first, N at most 1000 (default 100).
void list_audit(self_ptr self, const responder_ptr& r, const net::http_request& req) {
  auto number = [&](const char* name, std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
    auto text = req.param(name);
    if (text.empty())
      return fallback;
    char* end = nullptr;
    auto v = std::strtoll(text.c_str(), &end, 10);
    if (*end != '\0' || v < lo || v > hi)
      throw core::input_error(std::string(name) + " must be an integer from " +
                              std::to_string(lo) + " to " + std::to_string(hi));
    return static_cast<std::int64_t>(v);
  };
  auto limit = number("limit", 100, 1, 1000);
  auto before = number("before", 0, 0, std::numeric_limits<std::int64_t>::max());
  read_then(self, r, [limit, before](storage::database& db) {
    return caf::make_message(storage::audit_repository(db).list(limit, before));
  },
            [r](std::vector<storage::audit_row>& rows) {
              json out = json::array();
              for (auto& a : rows)
                out.push_back(audit_json(a));
              reply_json(r, 200, out);
            });
}

// Splits "/api/v1.0/jobs/ID/trigger" into {"jobs","ID","trigger"}.
std::vector<std::string> api_segments(const std::string& path) {
  static const std::string prefix = "/api/v1.0/";
  std::vector<std::string> out;
  if (path.compare(0, prefix.size(), prefix) != 0)
    return out;
  std::size_t start = prefix.size();
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos)
      end = path.size();
    if (end > start)
      out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// ---- packages and application runs -------------------------------------------------

// GET /packages/{name}: nodes sign with their id (nodeId, ts, sign as on /node, made with
// a node secret); operators may use a viewer or admin bearer token instead.
void serve_package_to_node(self_ptr self, const net::http_request& req, const responder_ptr& r) {
  auto name = req.path.substr(std::string("/packages/").size());
  if (!valid_package_name(name))
    return reply_error(r, 400, "invalid", "bad package name '" + name + "'");
  const auto& auth = *self->state.auth;
  auto refused = req.headers.count("authorization")
                   ? check_bearer(auth, req, roles_for(req.method), false)
                   : check_sign(auth, req, core::role_node, req.param("nodeId"),
                                static_cast<std::int64_t>(std::time(nullptr)));
  if (refused)
    return r->reply(std::move(*refused));
  get_package_file(self->system(), self->state.peers.storage, self->state.opts.packages, name, r);
}

void run_logs(self_ptr self, const responder_ptr& r, const std::string& identity,
              const net::http_request& req) {
  std::int64_t bytes = 16384;
  if (auto b = req.param("bytes"); !b.empty()) {
    char* end = nullptr;
    bytes = std::strtoll(b.c_str(), &end, 10);
    if (*end != '\0' || bytes < 0)
      return reply_error(r, 400, "invalid", "bytes must be a non-negative integer");
  }
  self->request(self->state.peers.jobs, caf::infinite, logs_atom::value, identity, bytes)
    .then(
      [r](const std::string& body) { reply_body(r, body); },
      [r](const caf::error& err) { reply_caf_error(r, err); });
}

// GET /api/v1.0/runs/{identity}/hosts: the politeness table of a running block run.
void run_hosts(self_ptr self, const responder_ptr& r, const std::string& identity) {
  self->request(self->state.peers.dispatcher, std::chrono::seconds(10), hosts_atom::value, identity)
    .then(
      [r](const std::string& body) { reply_body(r, body); },
      [r](const caf::error& err) { reply_caf_error(r, err); });
}

// ---- dashboard support ------------------------------------------------------------

// GET /api/v1.0/runs/{identity}/blocks: the run's blocks by state.
void run_blocks(self_ptr self, const responder_ptr& r, const std::string& identity) {
  read_then(self, r, [identity](storage::database& db) {
    auto report = blocks_report(db, identity);
    return caf::make_message(report.has_value(), report.value_or(""));
  },
            [r, identity](bool known, const std::string& body) {
              if (!known)
                return reply_error(r, 404, "not_found", "run " + identity + " not found");
              reply_body(r, body);
            });
}

// GET /api/v1.0/cron?expr=…[&tz=…]: validates an expression and shows its next 5 fires.
void cron_preview(self_ptr self, const responder_ptr& r, const net::http_request& req) {
  auto expr = req.param("expr");
  auto tz = req.param("tz", self->state.opts.timezone);
  if (expr.empty())
    return reply_error(r, 400, "invalid", "query parameter 'expr' is required");
  try {
    auto sched = core::cron_schedule::parse(expr, tz);
    auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    json next = json::array();
    for (auto t : sched.next_n(now, 5))
      next.push_back(core::format_iso8601_utc(t));
    reply_json(r, 200, {{"expr", expr}, {"timezone", tz}, {"next", next}});
  } catch (const core::input_error& e) {
    reply_error(r, 400, "invalid", e.what());
  }
}

void route(self_ptr self, const std::shared_ptr<const net::http_request>& call_request,
           responder_ptr r) {
  const auto& req = *call_request;
  const auto& m = req.method;
  if (req.path == "/metrics" && m == "GET") {
    if (auto refused = check_bearer(*self->state.auth, req, roles_for(m), false))
      return r->reply(std::move(*refused));
    return serve_metrics(self->system(), r);
  }
  if (m == "GET" || m == "HEAD")
    if (auto file = dashboard_file(req.path))
      return r->reply(std::move(*file));
  bool package_upload = m == "PUT" && req.path.rfind("/api/v1.0/packages/", 0) == 0;
  if (!package_upload && static_cast<std::int64_t>(req.body.size()) > self->state.opts.max_body_bytes)
    return reply_error(r, 413, "body_too_large",
                       "request body over " + std::to_string(self->state.opts.max_body_bytes) +
                         " bytes (http.max_body_bytes)");
  if (req.path.rfind("/packages/", 0) == 0) {
    if (m != "GET" && m != "HEAD")
      return reply_error(r, 405, "method_not_allowed", m + " is not allowed on " + req.path);
    return serve_package_to_node(self, req, r);
  }
  auto seg = api_segments(req.path);
  if (seg.empty())
    return reply_error(r, 404, "not_found", "no route for " + req.path);
  bool callback = signed_trigger(self, req, seg);
  core::principal who;
  bool audit_route = seg[0] == "audit";  // addresses and bodies of writes: admins only
  if (!callback)
    if (auto refused = check_bearer(*self->state.auth, req,
                                    audit_route ? core::role_admin : roles_for(m), false, &who))
      return r->reply(std::move(*refused));
  r = audited(self, r, req, seg, who, callback);
  auto method_not_allowed = [&] {
    reply_error(r, 405, "method_not_allowed", m + " is not allowed on " + req.path);
  };
  if (seg[0] == "jobs") {
    if (seg.size() == 1) {
      if (m == "GET")
        return list_jobs(self, r);
      if (m == "POST")
        return create_job(self, r, req.body);
      return method_not_allowed();
    }
    if (seg.size() == 2) {
      if (m == "GET")
        return get_job(self, r, seg[1]);
      if (m == "PUT")
        return update_job(self, r, seg[1], req.body);
      if (m == "DELETE")
        return delete_job(self, r, seg[1]);
      return method_not_allowed();
    }
    if (seg.size() == 3 && seg[2] == "trigger")
      return m == "POST" ? trigger_job(self, r, seg[1], callback) : method_not_allowed();
  } else if (seg[0] == "runs") {
    if (seg.size() == 1) {
      auto it = req.query.find("jobId");
      return m == "GET" ? list_runs(self, r, it == req.query.end() ? "" : it->second)
                        : method_not_allowed();
    }
    if (seg.size() == 3 && seg[2] == "exit")
      return m == "POST" ? exit_run(self, r, seg[1]) : method_not_allowed();
    if (seg.size() == 3 && seg[2] == "logs")
      return m == "GET" ? run_logs(self, r, seg[1], req) : method_not_allowed();
    if (seg.size() == 3 && seg[2] == "blocks")
      return m == "GET" ? run_blocks(self, r, seg[1]) : method_not_allowed();
    if (seg.size() == 3 && seg[2] == "hosts")
      return m == "GET" ? run_hosts(self, r, seg[1]) : method_not_allowed();
  } else if (audit_route && seg.size() == 1) {
    return m == "GET" ? list_audit(self, r, req) : method_not_allowed();
  } else if (seg[0] == "cron" && seg.size() == 1) {
    return m == "GET" ? cron_preview(self, r, req) : method_not_allowed();
  } else if (seg[0] == "packages") {
    auto& sys = self->system();
    auto& storage = self->state.peers.storage;
    const auto& popts = self->state.opts.packages;
    if (seg.size() == 1)
      return m == "GET" ? list_packages(sys, storage, r) : method_not_allowed();
    if (seg.size() == 2) {
      if (m == "PUT")
        return put_package(sys, storage, popts, seg[1], call_request, r);
      if (m == "GET")
        return get_package_info(sys, storage, seg[1], r);
      if (m == "DELETE")
        return delete_package(sys, storage, popts, seg[1], r);
      return method_not_allowed();
    }
  } else if (seg[0] == "brokers" && seg.size() == 1) {
    return m == "GET" ? list_brokers(self, r) : method_not_allowed();
  } else if (seg[0] == "nodes") {
    if (seg.size() == 1)
      return m == "GET" ? list_nodes(self, r) : method_not_allowed();
    if (seg.size() == 3 && seg[2] == "status")
      return m == "GET" ? node_status(self, r, seg[1]) : method_not_allowed();
  }
  reply_error(r, 404, "not_found", "no route for " + m + " " + req.path);
}

caf::behavior api(self_ptr self, api_options opts, api_peers peers) {
  self->state.opts = std::move(opts);
  self->state.auth = self->state.opts.auth ? self->state.opts.auth
                                           : std::make_shared<const auth_gate>();
  self->state.peers = std::move(peers);
  return {
    [=](http_atom, const http_call& call) {
      ++self->state.requests;
      try {
        route(self, call.request, call.responder);
      } catch (const core::input_error& e) {
        ++self->state.errors;
        reply_error(call.responder, 400, "invalid", e.what());
      } catch (const std::exception& e) {
        ++self->state.errors;
        spdlog::error("api: {} {} failed: {}", call.request->method, call.request->path,
                      e.what());
        reply_error(call.responder, 500, "internal", e.what());
      }
    },
    [=](stats_atom) -> std::string {
      return json{{"requests", self->state.requests}, {"errors", self->state.errors},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_api(caf::actor_system& sys, api_options opts, api_peers peers) {
  return sys.spawn(api, std::move(opts), std::move(peers));
}

} // namespace spiderhub::actors
