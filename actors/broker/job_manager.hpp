#pragma once
// Job manager: turns a fire (from the cron scheduler, the trigger API or a
// Scheduler.NET callback) into a run. It keeps the registry of connected workers
// (by FullClassName) and nodes, creates the run identity, the Running and JobStatus
// rows, and hands block jobs to the dispatcher and a worker, application jobs to nodes.
//
//   fire --job missing/disabled/deleted--> refused (error reply, logged)
//        --block job, no worker of the class--> run recorded Failed("no worker ...")
//        --block job--> dispatcher start_run --> worker Run(identity)
//        --application job--> placement: eligible nodes (enabled, group, os, heartbeat
//          age, cpu, free memory, processes < maxProcessCount), least loaded first, up to
//          NodeCount --> RunApplication on each; none eligible --> Failed with the reason
//
// Application run per node: Starting --ApplicationStarted--> Running --ApplicationExited-->
// Exited(exit code) | Failed(never started: reason from the node); node gone --> Lost
// (revived if the node reports the process again). The run's summary JobStatus row is
// Running while any node is, then Success, Failed or Exited (after an exit request).
#include <chrono>

#include "protocol/messages.hpp"

namespace spiderhub::actors {

struct job_manager_options {
  std::int32_t max_cpu = 90;             // placement: nodes at or over it are skipped; 100 = off
  std::int32_t min_free_memory_mb = 150;
  std::int32_t online_window_s = 60;     // last heartbeat at most this old
  /// A reconnected node must re-announce its running applications within this time,
  /// else they are marked lost.
  std::chrono::milliseconds announce_wait{10000};
};

caf::actor spawn_job_manager(caf::actor_system& sys, caf::actor storage, caf::actor dispatcher,
                             job_manager_options opts = {});

} // namespace spiderhub::actors
