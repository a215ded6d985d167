// The YAML config loaders of the three programs: any input gives a config or an
// input_error naming the problem, never a crash or another exception.
#include <exception>
#include <string>

#include "common.hpp"
#include "core/config.hpp"
#include "core/error.hpp"

using namespace spiderhub;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string yaml(fuzz::text(data, size));
  try {
    core::parse_broker_config(yaml, "broker.yaml");
  } catch (const core::input_error&) {
  }
  try {
    core::parse_node_config(yaml, "node.yaml");
  } catch (const core::input_error&) {
  }
  try {
    core::parse_worker_config(yaml, "worker.yaml");
  } catch (const core::input_error&) {
  }
  return 0;
}
