// bench_cron: the builtin scheduler under load, in process.
//
// A real storage actor on a temporary SQLite file, the real scheduler
// (actors/scheduler/scheduler.hpp) and a stub job manager that answers every fire at once.
// N jobs (default 1,000) fire every second for S seconds (default 20). Prints fires/s,
// the lateness of fires in milliseconds:
//   send     due time -> the scheduler sent the fire (its stats: jitterP50Ms, ...)
//   receipt  due time -> the stub job manager received it (measured here)
// the duration of the per-tick ledger commit (the scheduler commits arm_lead = 500 ms
// ahead of the due time; "late commits" counts fires whose commit ended after their due
// time), and checks that no (job, due) was fired twice and none was skipped.
//
//   bench_cron [--jobs N] [--seconds S] [--cron EXPR]
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/scheduler/scheduler.hpp"
#include "actors/storage/storage_actor.hpp"
#include "core/digest.hpp"
#include "storage/repositories.hpp"

using namespace spiderhub;
using namespace spiderhub::protocol;
using json = nlohmann::json;

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

struct stub_state {
  std::vector<double> lateness_ms;
  std::set<std::pair<std::string, std::int64_t>> seen;
  std::map<std::string, std::vector<std::int64_t>> dues;  // per job, in arrival order
  std::uint64_t duplicates = 0;
  static inline const char* name = "stub_job_manager";
};

caf::behavior stub_job_manager(caf::stateful_actor<stub_state>* self) {
  return {
    [=](fire_atom, const std::string& job_id, std::int64_t due,
        const std::string& identity) -> std::string {
      auto& st = self->state;
      st.lateness_ms.push_back(
        std::chrono::duration<double, std::milli>(
          std::chrono::system_clock::now().time_since_epoch())
          .count() -
        static_cast<double>(due) * 1000.0);
      if (!st.seen.emplace(job_id, due).second)
        ++st.duplicates;
      st.dues[job_id].push_back(due);
      return identity;
    },
    [=](stats_atom) -> std::string {
      auto& st = self->state;
      auto v = st.lateness_ms;
      std::sort(v.begin(), v.end());
      auto at = [&](double p) {
        return v.empty() ? 0.0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
      };
      // Skipped due times: gaps in a job's sequence (every-second schedules only).
      std::uint64_t gaps = 0;
      for (auto& [id, d] : st.dues)
        for (std::size_t i = 1; i < d.size(); ++i)
          if (d[i] != d[i - 1] + 1)
            ++gaps;
      return json{{"fires", v.size()},
                  {"p50", at(0.5)},
                  {"p99", at(0.99)},
                  {"max", v.empty() ? 0.0 : v.back()},
                  {"duplicates", st.duplicates},
                  {"gaps", gaps}}
        .dump();
    },
  };
}

std::string ask(caf::scoped_actor& self, const caf::actor& a) {
  std::string out;
  self->request(a, std::chrono::seconds(30), stats_atom::value)
    .receive([&](const std::string& s) { out = s; },
             [&](const caf::error& e) { out = "{\"error\":\"" + caf::to_string(e) + "\"}"; });
  return out;
}

int usage() {
  std::cerr << "usage: bench_cron [--jobs N] [--seconds S] [--cron EXPR]\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  int jobs = 1000;
  int seconds = 20;
  std::string cron = "* * * * * *";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc)
      return usage();
    if (a == "--jobs")
      jobs = std::atoi(argv[++i]);
    else if (a == "--seconds")
      seconds = std::atoi(argv[++i]);
    else if (a == "--cron")
      cron = argv[++i];
    else
      return usage();
  }
  if (jobs < 1 || seconds < 1)
    return usage();
  spdlog::set_level(spdlog::level::warn);

  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("bench_cron_" + core::new_guid());
  fs::create_directories(dir);
  int rc = 0;
  {
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto storage = actors::spawn_storage(sys, actors::sqlite_storage((dir / "bench.db").string()));
    caf::scoped_actor self{sys};
    // The jobs, created "now" as the API would (LastFire = creation time).
    auto created = now_ms() / 1000;
    self->request(storage, caf::infinite, write_atom::value,
                  write_fn([jobs, cron, created](storage::database& db) {
                    storage::job_repository repo(db);
                    for (int i = 0; i < jobs; ++i) {
                      storage::job_row j;
                      j.id = core::new_guid();
                      j.name = "bench-" + std::to_string(i);
                      j.job_type = "block";
                      j.cron = cron;
                      j.last_fire = created;
                      j.properties["FullClassName"] = "bench.Nobody";
                      repo.insert(j);
                    }
                  }))
      .receive([](bool) {},
               [&](const caf::error& e) {
                 std::cerr << "cannot create jobs: " << caf::to_string(e) << "\n";
                 rc = 1;
               });
    if (rc == 0) {
      auto stub = sys.spawn(stub_job_manager);
      actors::scheduler_options opts;
      auto scheduler = actors::spawn_scheduler(sys, storage, stub, opts);
      auto started = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(std::chrono::seconds(seconds));
      // Let the last second's fires arrive (they are milliseconds behind).
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      auto elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      auto s = json::parse(ask(self, scheduler));
      auto r = json::parse(ask(self, stub));
      auto st = json::parse(ask(self, storage));
      double fires = r.value("fires", 0.0);
      std::printf("bench_cron: %d jobs, cron '%s', %.1f s\n", jobs, cron.c_str(), elapsed);
      std::printf("  fires        %.0f (%.0f fires/s), scheduler counted %s, missed %s, "
                  "duplicates %s, skipped %s, errors %s\n",
                  fires, fires / elapsed, s["fires"].dump().c_str(), s["missed"].dump().c_str(),
                  r["duplicates"].dump().c_str(), r["gaps"].dump().c_str(),
                  s["fireErrors"].dump().c_str());
      std::printf("  lateness ms  send     p50 %6.2f  p99 %6.2f  max %6.2f\n",
                  s.value("jitterP50Ms", 0.0), s.value("jitterP99Ms", 0.0),
                  s.value("jitterMaxMs", 0.0));
      std::printf("  lateness ms  receipt  p50 %6.2f  p99 %6.2f  max %6.2f\n",
                  r.value("p50", 0.0), r.value("p99", 0.0), r.value("max", 0.0));
      auto& c = s["commitMs"];
      std::printf("  commit ms             p50 %6.2f  p99 %6.2f  max %6.2f  (%s late commits)\n",
                  c.value("p50", 0.0), c.value("p99", 0.0), c.value("max", 0.0),
                  s["lateCommits"].dump().c_str());
      std::printf("  storage      %s\n", st.dump().c_str());
      if (r.value("duplicates", 0) != 0 || r.value("gaps", 0) != 0)
        rc = 1;
      for (auto& a : {scheduler, stub})
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
    self->send_exit(storage, caf::exit_reason::user_shutdown);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return rc;
}
