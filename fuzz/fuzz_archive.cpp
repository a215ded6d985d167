// Application packages as uploaded: any bytes are either a safe package or an
// input_error; never a crash, a hang or another exception.
#include "common.hpp"
#include "core/archive.hpp"
#include "core/error.hpp"

using namespace spiderhub;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  core::archive_limits limits;
  limits.max_unpacked_bytes = 4 << 20;
  limits.max_entries = 1000;
  try {
    core::check_archive(fuzz::text(data, size), limits);
  } catch (const core::input_error&) {
  }
  return 0;
}
