#include "actors/runtime/scheduler_settings.hpp"

#include <algorithm>
#include <thread>

#include <caf/atom.hpp>

namespace spiderhub::actors {

std::size_t scheduler_threads(std::int32_t threads) {
  if (threads > 0)
    return static_cast<std::size_t>(threads);
  return std::max<std::size_t>(2, std::thread::hardware_concurrency());
}

void apply_scheduler_settings(const core::actors_config& c, caf::actor_system_config& cfg) {
  cfg.set("scheduler.max-threads", scheduler_threads(c.threads));
  cfg.set("scheduler.policy",
          c.policy == "stealing" ? caf::atom("stealing") : caf::atom("sharing"));
}

} // namespace spiderhub::actors
