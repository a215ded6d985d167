#include "core/host_stats.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace spiderhub::core {
namespace {

int meminfo_mb(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> name >> kb >> unit)
    if (name == key + ":")
      return static_cast<int>(kb / 1024);
  return 0;
}

} // namespace

int cpu_meter::sample() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal))
    return 0;
  auto idle_all = idle + iowait;
  auto total = user + nice + system + idle + iowait + irq + softirq + steal;
  auto d_total = total - last_total_;
  auto d_idle = idle_all - last_idle_;
  last_total_ = total;
  last_idle_ = idle_all;
  if (d_total == 0)
    return 0;
  auto busy = static_cast<int>(100 * (d_total - d_idle) / d_total);
  return busy < 0 ? 0 : (busy > 100 ? 100 : busy);
}

int free_memory_mb() { return meminfo_mb("MemAvailable"); }
int total_memory_mb() { return meminfo_mb("MemTotal"); }

int processor_count() {
  auto n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

} // namespace spiderhub::core
