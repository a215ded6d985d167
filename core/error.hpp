#pragma once
// Error vocabulary of the framework-free core. Pure code throws input_error for bad
// input (config, frames, API bodies, cron expressions); the actor layer converts it
// into caf::error or an HTTP 4xx before it crosses an actor boundary.
#include <stdexcept>
#include <string>

namespace spiderhub::core {

/// Bad input from outside the process; the message is shown to the user as is.
struct input_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

} // namespace spiderhub::core
