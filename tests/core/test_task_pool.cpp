#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/task_pool.hpp"

using spiderhub::core::task_pool;

TEST_CASE("task_pool: every index runs exactly once, spread over the caller and the helpers") {
  task_pool pool(3);
  CHECK(pool.threads() == 4);
  std::mutex mu;
  std::set<std::thread::id> ran_on;
  for (std::size_t n : {0u, 1u, 2u, 3u, 7u, 1000u, 20000u}) {
    std::vector<std::atomic<int>> calls(n);
    pool.run(n, [&](std::size_t i) {
      calls[i].fetch_add(1);
      if (n >= 1000) {
        // Slow enough that every helper gets a share before the caller drains the range.
        std::this_thread::sleep_for(std::chrono::microseconds(5));
        std::lock_guard<std::mutex> lk(mu);
        ran_on.insert(std::this_thread::get_id());
      }
    });
    // run() returned: every call has finished, none twice, none missed.
    for (std::size_t i = 0; i < n; ++i)
      REQUIRE(calls[i].load() == 1);
  }
  CHECK(ran_on.size() == 4);
  CHECK(ran_on.count(std::this_thread::get_id()) == 1);
}

TEST_CASE("task_pool: without helpers the caller runs everything in order; on_start runs per helper") {
  task_pool alone(0);
  std::vector<std::size_t> order;
  alone.run(5, [&](std::size_t i) { order.push_back(i); });
  CHECK(order == std::vector<std::size_t>{0, 1, 2, 3, 4});

  std::atomic<int> started{0};
  {
    task_pool pool(2, [&] { started.fetch_add(1); });
    std::atomic<std::size_t> sum{0};
    for (int round = 0; round < 200; ++round)  // many short rounds: none lost or mixed up
      pool.run(10, [&](std::size_t i) { sum.fetch_add(i); });
    CHECK(sum.load() == 200u * 45u);
  }  // joins the helpers
  CHECK(started.load() == 2);
}
