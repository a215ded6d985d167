// bench_dedup_push: the worker side of the dedup benchmark (bench/dedup.py runs it).
//
// Connects to the broker's /worker hub under --class with a signed URL, waits for the
// broker to start a run of that class, then pushes --unique distinct request URLs followed
// by --repeat URLs already pushed (drawn from the unique ones), --chunk per Push with
// --in-flight Pushes outstanding. Prints one line of figures: requests pushed, accepted as
// new by the broker (must equal --unique), seconds and requests/s. Exit code 0 when every
// Push was answered, 1 otherwise, 2 for bad options.
//
//   bench_dedup_push --url http://127.0.0.1:PORT/ --token T --class C --unique 10000000
//                    --repeat 10000000 [--chunk 1000] [--in-flight 8]
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

#include "core/digest.hpp"
#include "core/url.hpp"
#include "net/hub_client.hpp"

namespace {

struct options {
  std::string url, token, cls;
  std::uint64_t unique = 1000000, repeat = 1000000;
  std::size_t chunk = 1000, in_flight = 8;
};

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url") o.url = v;
    else if (k == "--token") o.token = v;
    else if (k == "--class") o.cls = v;
    else if (k == "--unique") o.unique = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--repeat") o.repeat = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--chunk") o.chunk = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--in-flight") o.in_flight = std::strtoull(v.c_str(), nullptr, 10);
    else return false;
  }
  return !o.url.empty() && !o.cls.empty() && o.chunk > 0 && o.in_flight > 0 && argc % 2 == 1;
}

// URL number i: unique ones are 0..unique-1; repeats walk them again with a stride so
// they hit every part of the set, not only the newest entries.
std::string url_of(std::uint64_t i) {
  return "http://dedup.test/item/" + std::to_string(i) + "?sort=asc&page=" + std::to_string(i % 97);
}

} // namespace

int main(int argc, char** argv) {
  using namespace spiderhub;
  using clock = std::chrono::steady_clock;
  options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: bench_dedup_push --url URL --token T --class C [--unique N] "
                         "[--repeat M] [--chunk K] [--in-flight F]\n");
    return 2;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::string identity;
  std::size_t outstanding = 0;
  std::uint64_t accepted = 0, answered = 0, failed = 0;

  net::hub_client::options ho;
  ho.name = "dedup bench";
  ho.url = [&o] {
    auto ts = static_cast<std::int64_t>(std::time(nullptr));
    return core::hub_url(o.url, "/worker",
                         {{"fullClassName", o.cls}, {"ts", std::to_string(ts)},
                          {"sign", core::connection_sign(o.token, o.cls, ts)}});
  };
  ho.invoke_timeout = std::chrono::minutes(10);
  net::hub_client hub(ho);
  hub.on("Run", [&](const nlohmann::json& args) {
    std::lock_guard<std::mutex> lk(mu);
    if (identity.empty() && args.is_array() && !args.empty() && args[0].contains("identity"))
      identity = args[0]["identity"].get<std::string>();
    cv.notify_all();
  });
  hub.start();
  {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, std::chrono::seconds(60), [&] { return !identity.empty(); })) {
      std::fprintf(stderr, "bench_dedup_push: no run started within 60 s\n");
      return 1;
    }
  }
  const std::uint64_t total = o.unique + o.repeat;
  const std::uint64_t stride = 7919;  // prime: the repeats visit the unique URLs spread out
  auto t0 = clock::now();
  auto last_print = t0;
  std::uint64_t next = 0;
  while (next < total) {
    std::string args = "[\"" + identity + "\",[";
    auto end = std::min<std::uint64_t>(total, next + o.chunk);
    for (auto i = next; i < end; ++i) {
      auto n = i < o.unique ? i : ((i - o.unique) * stride) % o.unique;
      if (i > next)
        args += ',';
      args += "{\"url\":\"" + url_of(n) + "\"}";
    }
    args += "]]";
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return outstanding < o.in_flight; });
      ++outstanding;
    }
    hub.invoke_raw("Push", std::move(args), [&](std::string result, std::string error) {
      std::lock_guard<std::mutex> lk(mu);
      --outstanding;
      ++answered;
      if (!error.empty()) {
        ++failed;
        std::fprintf(stderr, "bench_dedup_push: Push failed: %s\n", error.c_str());
      } else {
        accepted += std::strtoull(result.c_str(), nullptr, 10);
      }
      cv.notify_all();
    });
    next = end;
    auto now = clock::now();
    if (now - last_print > std::chrono::seconds(10)) {
      last_print = now;
      double s = std::chrono::duration<double>(now - t0).count();
      std::fprintf(stderr, "bench_dedup_push: %llu/%llu pushed, %.0f requests/s\n",
                   static_cast<unsigned long long>(next), static_cast<unsigned long long>(total),
                   next / s);
    }
  }
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return outstanding == 0; });
  }
  double secs = std::chrono::duration<double>(clock::now() - t0).count();
  hub.stop();
  std::printf("pushed %llu (unique %llu, repeated %llu), accepted as new %llu, failed pushes %llu, "
              "%.1f s, %.0f requests/s\n",
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(o.unique),
              static_cast<unsigned long long>(o.repeat), static_cast<unsigned long long>(accepted),
              static_cast<unsigned long long>(failed), secs, total / secs);
  return failed == 0 && accepted == o.unique ? 0 : 1;
}
