#pragma once
// A fixed set of helper threads that run one indexed loop at a time together with the
// calling thread: run(n, fn) calls fn(0) .. fn(n - 1), each exactly once, spread over the
// caller and the helpers, and returns when all are done. Used to parse a worker's Poll
// batch on several cores; fn must not throw.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace spiderhub::core {

class task_pool {
 public:
  /// `helpers` threads besides the caller of run(); `on_start` runs first on each helper.
  explicit task_pool(unsigned helpers, std::function<void()> on_start = {}) {
    threads_.reserve(helpers);
    for (unsigned i = 0; i < helpers; ++i)
      threads_.emplace_back([this, on_start] {
        if (on_start)
          on_start();
        loop();
      });
  }

  ~task_pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  task_pool(const task_pool&) = delete;
  task_pool& operator=(const task_pool&) = delete;

  /// Threads that take part in run(): the helpers and the caller.
  std::size_t threads() const { return threads_.size() + 1; }

  /// Calls fn(i) for every i in [0, n) and returns when every call has returned. Not
  /// reentrant: one run() at a time.
  void run(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (threads_.empty() || n < 2) {
      for (std::size_t i = 0; i < n; ++i)
        fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      next_.store(0, std::memory_order_relaxed);
      busy_ = threads_.size();
      ++round_;
    }
    wake_.notify_all();
    work(fn, n);
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return busy_ == 0; });
    fn_ = nullptr;
  }

 private:
  void work(const std::function<void(std::size_t)>& fn, std::size_t n) {
    for (;;) {
      auto i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n)
        return;
      fn(i);
    }
  }

  void loop() {
    std::uint64_t seen = 0;
    for (;;) {
      const std::function<void(std::size_t)>* fn;
      std::size_t n;
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_.wait(lk, [&] { return stop_ || round_ != seen; });
        if (stop_)
          return;
        seen = round_;
        fn = fn_;
        n = n_;
      }
      work(*fn, n);
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0)
        done_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(std::size_t)>* fn_ = nullptr;
  std::size_t n_ = 0;
  std::atomic<std::size_t> next_{0};
  std::size_t busy_ = 0;     // helpers still working on the current round
  std::uint64_t round_ = 0;  // bumped by every run() that uses the helpers
  bool stop_ = false;
};

} // namespace spiderhub::core
