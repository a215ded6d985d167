#pragma once
// Host figures a node reports in every heartbeat, read from /proc.
#include <cstdint>

namespace spiderhub::core {

class cpu_meter {
 public:
  /// Busy percentage (0-100) of all CPUs since the previous call (first call: since boot).
  int sample();

 private:
  std::uint64_t last_idle_ = 0, last_total_ = 0;
};

/// MemAvailable in MB (0 when unknown).
int free_memory_mb();
/// MemTotal in MB (0 when unknown).
int total_memory_mb();
int processor_count();

} // namespace spiderhub::core
