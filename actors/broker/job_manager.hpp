#pragma once
// Job manager: turns a fire (from the cron scheduler, the trigger API or a
// Scheduler.NET callback) into a run. It keeps the registry of connected workers
// (by FullClassName) and nodes, creates the run identity, the Running and JobStatus
// rows, and hands block jobs to the dispatcher and a worker, application jobs to nodes.
//
//   fire --job missing/disabled/deleted--> refused (error reply, logged)
//        --block job, no worker of the class--> run recorded Failed("no worker ...")
//        --block job--> dispatcher start_run --> worker Run(identity)
//        --application job--> placement on nodes (own issue) / Failed with reason
#include "protocol/messages.hpp"

namespace spiderhub::actors {

caf::actor spawn_job_manager(caf::actor_system& sys, caf::actor storage, caf::actor dispatcher);

} // namespace spiderhub::actors
