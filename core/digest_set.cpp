#include "core/digest_set.hpp"

#include <sys/mman.h>

#include <new>

namespace spiderhub::core {

void* map_slots(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw std::bad_alloc();
  return p;
}

void unmap_slots(void* p, std::size_t bytes) { ::munmap(p, bytes); }

std::optional<std::uint64_t> parse_digest(std::string_view hex16) {
  if (hex16.size() != 16)
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : hex16) {
    int x;
    if (c >= '0' && c <= '9')
      x = c - '0';
    else if (c >= 'a' && c <= 'f')
      x = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      x = c - 'A' + 10;
    else
      return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(x);
  }
  return v;
}

void digest_set::grow(shard& s) {
  decltype(s.slots) old;
  old.swap(s.slots);
  s.slots.assign(old.empty() ? 16 : old.size() * 2, 0);
  const auto mask = s.slots.size() - 1;
  for (auto d : old) {
    if (d == 0)
      continue;
    auto i = static_cast<std::size_t>(d) & mask;
    while (s.slots[i] != 0)
      i = (i + 1) & mask;
    s.slots[i] = d;
  }
}

bool digest_set::insert(std::uint64_t d) {
  if (d == 0) {
    if (has_zero_)
      return false;
    has_zero_ = true;
    ++size_;
    return true;
  }
  auto& s = of(shards_, d);
  if ((s.count + 1) * 4 > s.slots.size() * 3)
    grow(s);
  const auto mask = s.slots.size() - 1;
  for (auto i = static_cast<std::size_t>(d) & mask;; i = (i + 1) & mask) {
    if (s.slots[i] == d)
      return false;
    if (s.slots[i] == 0) {
      s.slots[i] = d;
      ++s.count;
      ++size_;
      return true;
    }
  }
}

bool digest_set::contains(std::uint64_t d) const {
  if (d == 0)
    return has_zero_;
  const auto& s = shards_[d >> 56];
  if (s.slots.empty())
    return false;
  const auto mask = s.slots.size() - 1;
  for (auto i = static_cast<std::size_t>(d) & mask;; i = (i + 1) & mask) {
    if (s.slots[i] == d)
      return true;
    if (s.slots[i] == 0)
      return false;
  }
}

bool digest_set::erase(std::uint64_t d) {
  if (d == 0) {
    if (!has_zero_)
      return false;
    has_zero_ = false;
    --size_;
    return true;
  }
  auto& s = of(shards_, d);
  if (s.slots.empty())
    return false;
  const auto mask = s.slots.size() - 1;
  auto i = static_cast<std::size_t>(d) & mask;
  while (s.slots[i] != d) {
    if (s.slots[i] == 0)
      return false;
    i = (i + 1) & mask;
  }
  // Backward-shift deletion: move later members of the probe run into the hole when
  // their home slot is not between the hole and themselves (no tombstones needed).
  auto hole = i;
  for (auto j = (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask) {
    auto home = static_cast<std::size_t>(s.slots[j]) & mask;
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      s.slots[hole] = s.slots[j];
      hole = j;
    }
  }
  s.slots[hole] = 0;
  --s.count;
  --size_;
  return true;
}

std::size_t digest_set::memory_bytes() const {
  std::size_t n = 0;
  for (auto& s : shards_)
    n += s.slots.capacity() * sizeof(std::uint64_t);
  return n;
}

} // namespace spiderhub::core
