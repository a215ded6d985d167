#pragma once
// Shared by the libFuzzer targets: input as text, and a check that aborts (so libFuzzer
// records a crash) when a property that must hold does not.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace spiderhub::fuzz {

inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

} // namespace spiderhub::fuzz
