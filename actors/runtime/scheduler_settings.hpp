#pragma once
// How a broker or node sizes and runs CAF's scheduler (the `actors:` config section).
#include <caf/actor_system_config.hpp>

#include "core/config.hpp"

namespace spiderhub::actors {

// Number of scheduler threads for `threads` (0 = one per core, at least 2).
std::size_t scheduler_threads(std::int32_t threads);

// Applies `actors.threads` and `actors.policy` to a CAF configuration before the actor
// system is created. CAF 0.17's default (work stealing, at least 4 threads) keeps idle
// workers polling with 50 µs sleeps; on a crawler host that competes with the download
// and parse work for the same cores, so "sharing" (a shared queue, idle workers block on a
// condition variable) is the default here.
void apply_scheduler_settings(const core::actors_config& c, caf::actor_system_config& cfg);

} // namespace spiderhub::actors
