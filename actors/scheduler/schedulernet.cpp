#include "actors/scheduler/schedulernet.hpp"

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/storage/storage_actor.hpp"
#include "core/digest.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors {

std::string trigger_signature(std::string_view api_token, std::string_view job_id) {
  return core::hmac_sha256_hex(api_token, "trigger\n" + std::string(job_id));
}

namespace {

std::string without_trailing_slash(std::string s) {
  while (!s.empty() && s.back() == '/')
    s.pop_back();
  return s;
}

} // namespace

std::string trigger_callback_url(const schedulernet_options& opts, const std::string& job_id) {
  return without_trailing_slash(opts.callback_base_url) + "/api/v1.0/jobs/" + job_id +
         "/trigger?sig=" + trigger_signature(opts.api_token, job_id);
}

namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;

/// (retry_atom, job_id, generation): the backoff of a failed call is over.
using retry_atom = caf::atom_constant<caf::atom("sn_retry")>;

// ---- HTTP (libcurl easy; one handle, so the connection to the service is reused) ----

struct http_result {
  long status = 0;    // 0: no HTTP answer (connect error, timeout, ...)
  std::string body;
  std::string error;  // transport error text when status == 0
};

class http_client {
 public:
  explicit http_client(const schedulernet_options& o) : opts_(o), h_(curl_easy_init()) {
    if (!h_)
      throw std::runtime_error("schedulernet: curl_easy_init failed");
  }
  ~http_client() { curl_easy_cleanup(h_); }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  http_result call(const std::string& method, const std::string& url, const std::string* body) {
    http_result r;
    curl_easy_reset(h_);  // keeps the connection cache
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (body)
      headers = curl_slist_append(headers, "Content-Type: application/json");
    if (!opts_.token.empty())
      headers = curl_slist_append(headers, (opts_.token_header + ": " + opts_.token).c_str());
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(opts_.connect_timeout.count()));
    curl_easy_setopt(h_, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.timeout.count()));
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h_, CURLOPT_USERAGENT, "spiderhub-broker");
    if (body) {
      curl_easy_setopt(h_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    }
    curl_easy_setopt(h_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, &http_client::on_data);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &r.body);
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, err);
    auto rc = curl_easy_perform(h_);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      r.error = err[0] ? err : curl_easy_strerror(rc);
      return r;
    }
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
  }

 private:
  static size_t on_data(char* p, size_t size, size_t n, void* user) {
    auto* out = static_cast<std::string*>(user);
    auto len = size * n;
    if (out->size() < 64 * 1024)  // enough for a message; the rest is dropped
      out->append(p, std::min(len, 64 * 1024 - out->size()));
    return len;
  }

  schedulernet_options opts_;
  CURL* h_;
};

// ---- what an answer means --------------------------------------------------------

enum class outcome { ok, not_found, conflict, rejected, retry, failed };

/// Scheduler.NET answers 200 with {"Code": 100, ...} on success and another code with a
/// "Message" when it refuses; plain HTTP statuses are honoured as well.
outcome classify(const http_result& r, std::string& why) {
  if (r.status == 0) {
    why = r.error;
    return outcome::retry;
  }
  auto snippet = r.body.substr(0, 300);
  why = "HTTP " + std::to_string(r.status) + (snippet.empty() ? "" : ": " + snippet);
  if (r.status >= 500 || r.status == 408 || r.status == 429)
    return outcome::retry;
  if (r.status == 404)
    return outcome::not_found;
  if (r.status == 409)
    return outcome::conflict;
  if (r.status < 200 || r.status >= 300)
    return outcome::failed;
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_object()) {
    for (const char* key : {"Code", "code"}) {
      auto it = j.find(key);
      if (it != j.end() && it->is_number_integer() && it->get<long>() != 100) {
        for (const char* m : {"Message", "message"})
          if (auto mi = j.find(m); mi != j.end() && mi->is_string())
            why = "rejected: " + mi->get<std::string>();
        return outcome::rejected;
      }
    }
    for (const char* key : {"Success", "success"})
      if (auto it = j.find(key); it != j.end() && it->is_boolean() && !it->get<bool>())
        return outcome::rejected;
  }
  return outcome::ok;
}

// ---- actor ------------------------------------------------------------------------

struct change {
  std::string kind;        // created | updated | deleted
  int attempts = 0;
  std::uint64_t gen = 0;   // bumped by every new change: older retries are dropped
};

struct sn_state {
  caf::actor storage;
  schedulernet_options opts;
  std::unique_ptr<http_client> http;
  std::map<std::string, change> pending;  // job id -> change not yet accepted by the service
  std::uint64_t next_gen = 0;
  std::uint64_t calls = 0, accepted = 0, retries = 0, dropped = 0;
  static inline const char* name = "schedulernet";
};

using self_ptr = caf::stateful_actor<sn_state>*;

void process(self_ptr self, const std::string& id, std::uint64_t gen);

/// One call, logged; returns its outcome.
outcome call(self_ptr self, const std::string& method, const std::string& url,
             const std::string* body, const std::string& what, std::string& why) {
  ++self->state.calls;
  auto started = std::chrono::steady_clock::now();
  auto r = self->state.http->call(method, url, body);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - started)
              .count();
  auto o = classify(r, why);
  if (o == outcome::ok)
    spdlog::info("schedulernet: {} {} ({}): accepted in {} ms", method, url, what, ms);
  else
    spdlog::debug("schedulernet: {} {} ({}): {}", method, url, what, why);
  return o;
}

/// Makes the service's callback job match `job` (nullopt: it must not exist).
/// Returns ok, retry or failed.
outcome apply(self_ptr self, const std::string& id, const change& c,
              const std::optional<storage::job_row>& job, std::string& why) {
  auto& o = self->state.opts;
  auto base = without_trailing_slash(o.url) + "/api/v1.0/callbackjob";
  bool present = job && !job->is_deleted && job->is_enabled && c.kind != "deleted";
  if (!present) {
    auto what = !job || job->is_deleted || c.kind == "deleted" ? "job deleted" : "job disabled";
    auto r = call(self, "DELETE", base + "/" + id, nullptr, what, why);
    if (r == outcome::not_found || r == outcome::rejected) {
      spdlog::info("schedulernet: callback job {} was not there ({}): nothing to delete", id,
                   why);
      return outcome::ok;
    }
    return r == outcome::ok || r == outcome::retry ? r : outcome::failed;
  }
  json body = {{"Id", job->id},
               {"Group", o.group},
               {"Name", job->name},
               {"Cron", job->cron},
               {"Content", ""},
               {"Url", trigger_callback_url(o, job->id)},
               {"Method", "POST"}};
  auto text = body.dump();
  auto what = "job " + job->name + ", cron '" + job->cron + "'";
  // Create for a new job, update otherwise; each falls back to the other once when the
  // service says the job exists / does not exist.
  bool create = c.kind == "created";
  auto first = create ? "POST" : "PUT";
  auto r = call(self, first, base, &text, what, why);
  bool fallback = create ? (r == outcome::conflict || r == outcome::rejected)
                         : (r == outcome::not_found || r == outcome::rejected);
  if (fallback) {
    spdlog::info("schedulernet: {} of callback job {} refused ({}); trying {}", first, id, why,
                 create ? "PUT" : "POST");
    r = call(self, create ? "PUT" : "POST", base, &text, what, why);
  }
  return r == outcome::ok || r == outcome::retry ? r : outcome::failed;
}

void settle(self_ptr self, const std::string& id, std::uint64_t gen,
            const std::optional<storage::job_row>& job) {
  auto& st = self->state;
  auto it = st.pending.find(id);
  if (it == st.pending.end() || it->second.gen != gen)
    return;  // superseded by a newer change, which is (or will be) processed itself
  auto& c = it->second;
  std::string why;
  auto r = apply(self, id, c, job, why);
  if (r == outcome::ok) {
    ++st.accepted;
    st.pending.erase(it);
    return;
  }
  ++c.attempts;
  if (r == outcome::failed || c.attempts >= st.opts.max_attempts) {
    ++st.dropped;
    spdlog::error("schedulernet: giving up on the {} change of job {} after {} attempt(s): {} "
                  "(Scheduler.NET at {} is out of step until the job changes again or the "
                  "broker restarts)",
                  c.kind, id, c.attempts, why, st.opts.url);
    st.pending.erase(it);
    return;
  }
  ++st.retries;
  std::chrono::milliseconds backoff =
    std::min(st.opts.initial_backoff * (1 << std::min(c.attempts - 1, 16)), st.opts.max_backoff);
  spdlog::warn("schedulernet: {} change of job {} failed (attempt {}/{}): {}; retrying in {} ms",
               c.kind, id, c.attempts, st.opts.max_attempts, why, backoff.count());
  self->delayed_send(self, backoff, retry_atom::value, id, gen);
}

/// Reads the job's committed state, then calls the service.
void process(self_ptr self, const std::string& id, std::uint64_t gen) {
  self
    ->request(self->state.storage, caf::infinite, read_atom::value,
              read_fn([id](storage::database& db) {
                return caf::make_message(storage::job_repository(db).find(id));
              }))
    .then([self, id, gen](std::optional<storage::job_row>& job) { settle(self, id, gen, job); },
          [self, id, gen](const caf::error& err) {
            spdlog::error("schedulernet: cannot read job {}: {}", id, caf::to_string(err));
            auto it = self->state.pending.find(id);
            if (it != self->state.pending.end() && it->second.gen == gen)
              self->delayed_send(self, self->state.opts.initial_backoff, retry_atom::value, id,
                                 gen);
          });
}

void enqueue(self_ptr self, const std::string& id, const std::string& kind) {
  auto& st = self->state;
  auto& c = st.pending[id];
  // A job created and then updated before the service accepted it is still a creation.
  if (!(c.kind == "created" && kind == "updated"))
    c.kind = kind;
  c.attempts = 0;
  c.gen = ++st.next_gen;
  process(self, id, c.gen);
}

/// Sends every job once (update, or delete when disabled).
void sync_all(self_ptr self) {
  self
    ->request(self->state.storage, caf::infinite, read_atom::value,
              read_fn([](storage::database& db) {
                return caf::make_message(storage::job_repository(db).list());
              }))
    .then(
      [self](std::vector<storage::job_row>& jobs) {
        spdlog::info("schedulernet: sending {} job(s) to Scheduler.NET at {}", jobs.size(),
                     self->state.opts.url);
        for (auto& j : jobs) {
          auto& c = self->state.pending[j.id];
          c.kind = "updated";
          c.attempts = 0;
          c.gen = ++self->state.next_gen;
          settle(self, j.id, c.gen, j);
        }
      },
      [](const caf::error& err) {
        spdlog::error("schedulernet: cannot list jobs: {}", caf::to_string(err));
      });
}

caf::behavior schedulernet(self_ptr self, caf::actor storage, schedulernet_options opts) {
  auto& st = self->state;
  st.storage = std::move(storage);
  st.opts = std::move(opts);
  st.http = std::make_unique<http_client>(st.opts);
  spdlog::info("schedulernet: jobs are scheduled by Scheduler.NET at {}; callbacks to {}",
               st.opts.url, without_trailing_slash(st.opts.callback_base_url));
  if (st.opts.sync_on_start)
    sync_all(self);
  return {
    [=](jobs_changed_atom, const std::string& id, const std::string& kind) {
      enqueue(self, id, kind);
    },
    [=](jobs_changed_atom) { sync_all(self); },
    [=](retry_atom, const std::string& id, std::uint64_t gen) {
      auto it = self->state.pending.find(id);
      if (it != self->state.pending.end() && it->second.gen == gen)
        process(self, id, gen);
    },
    [=](stats_atom) -> std::string {
      auto& s = self->state;
      return json{{"calls", s.calls},     {"accepted", s.accepted}, {"retries", s.retries},
                  {"dropped", s.dropped}, {"pending", s.pending.size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_schedulernet(caf::actor_system& sys, caf::actor storage,
                              schedulernet_options opts) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return sys.spawn<caf::detached>(schedulernet, std::move(storage), std::move(opts));
}

} // namespace spiderhub::actors
