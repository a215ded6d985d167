#include "core/text_pattern.hpp"

namespace spiderhub::core {

std::string pattern_problem(const std::string& pattern) {
  text_pattern p;
  return p.compile(pattern);
}

} // namespace spiderhub::core
