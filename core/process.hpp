#pragma once
// Process-wide plumbing shared by the programs: logging setup and termination signals.
#include <chrono>
#include <string>

#include "core/config.hpp"

namespace spiderhub::core {

/// Configures spdlog: stderr, plus a rotating file when cfg.file is set.
/// Throws input_error for an unknown level or an unwritable log file.
void setup_logging(const log_config& cfg, const std::string& program);

/// Blocks SIGINT/SIGTERM in the calling thread and every thread it starts later, so
/// that wait_for_termination() can take them synchronously. Call first in main().
void block_termination_signals();
/// Waits for SIGINT or SIGTERM; returns the signal number.
int wait_for_termination();
/// The same, giving up after `timeout`: 0 when no signal came.
int wait_for_termination(std::chrono::milliseconds timeout);

} // namespace spiderhub::core
