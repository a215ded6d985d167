#include <doctest/doctest.h>

#include <string>

#include "core/text_pattern.hpp"

using spiderhub::core::pattern_problem;
using spiderhub::core::text_pattern;

TEST_CASE("text pattern: literals, alternatives and regexes; unusable ones say why") {
  text_pattern p;
  CHECK(p.compile("").empty());
  CHECK(p.empty());
  CHECK(p.compile("blocked|captcha").empty());
  CHECK(p.matches("<p>please solve the captcha</p>"));
  CHECK(!p.matches("<p>welcome</p>"));
  CHECK(p.compile("access (denied|refused)").empty());
  CHECK(p.matches("Access refused? no: access refused"));
  CHECK(!p.matches("Access Denied"));  // case-sensitive, as the seed's Regex was
  CHECK(pattern_problem("").empty());
  CHECK(pattern_problem("You are blocked").empty());
  CHECK(!pattern_problem("(unclosed").empty());
  CHECK(!pattern_problem("[z-a]").empty());
  CHECK(!pattern_problem("(a)\\1").empty());  // back-references: no bounded-stack executor
}
