// The run dedup set against std::unordered_set under random inserts and erases.
#include "core/digest_set.hpp"

#include <doctest/doctest.h>

#include <random>
#include <unordered_set>

using spiderhub::core::digest_set;
using spiderhub::core::parse_digest;

TEST_CASE("digest set: agrees with std::unordered_set under random inserts and erases") {
  digest_set s;
  std::unordered_set<std::uint64_t> ref;
  std::mt19937_64 rng(12345);
  // A small universe makes collisions, repeats and erase-then-insert common; a few
  // values share low bits so probe runs wrap and backward shifts are exercised.
  std::vector<std::uint64_t> universe;
  for (int i = 0; i < 5000; ++i)
    universe.push_back(i % 7 == 0 ? (rng() & 0xff00000000000000ULL) | (rng() & 0xf) : rng());
  universe.push_back(0);
  for (int step = 0; step < 300000; ++step) {
    auto d = universe[rng() % universe.size()];
    switch (rng() % 3) {
      case 0: CHECK(s.insert(d) == ref.insert(d).second); break;
      case 1: CHECK(s.erase(d) == (ref.erase(d) == 1)); break;
      default: CHECK(s.contains(d) == (ref.count(d) == 1)); break;
    }
    if (step % 1000 == 0)
      REQUIRE(s.size() == ref.size());
  }
  for (auto d : universe)
    CHECK(s.contains(d) == (ref.count(d) == 1));
}

TEST_CASE("digest set: a million digests in at most 21 bytes each") {
  digest_set s;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000000; ++i)
    s.insert(rng());
  CHECK(s.size() == 1000000);
  CHECK(s.memory_bytes() <= 21u * 1000000);
  std::mt19937_64 again(7);
  for (int i = 0; i < 1000; ++i)
    CHECK_FALSE(s.insert(again()));
}

TEST_CASE("digest set: request hashes as numbers") {
  CHECK(parse_digest("0123456789abcdef") == 0x0123456789abcdefULL);
  CHECK(parse_digest("FFFFFFFFFFFFFFFF") == ~0ULL);
  CHECK_FALSE(parse_digest("0123456789abcde"));
  CHECK_FALSE(parse_digest("0123456789abcdeg"));
  CHECK_FALSE(parse_digest(""));
}
