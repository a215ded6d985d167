#pragma once
// The dedup set of a run: 64-bit request digests (a request hash is 16 hex digits of MD5,
// so the number itself is well mixed) in open addressing with linear probing, split into
// 256 shards by the top byte. A shard doubles on its own at 3/4 load, so growing never
// holds two full-size tables at once; 10.7 to 21 bytes per digest (about 13 at 10 M),
// against ~70 for an unordered_set of strings.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace spiderhub::core {

/// Memory for the slot arrays of a digest_set. Arrays of 64 KiB and more are mapped and
/// unmapped directly: digests are uniform, so all 256 shards pass 3/4 load and double
/// within moments of each other, and the old arrays (half the new size in all) must leave
/// the process then. Freed to the allocator they waited in its free lists (jemalloc gives
/// them back over ~10 s): +20 MB on the broker's peak at 10 M digests.
void* map_slots(std::size_t bytes);
void unmap_slots(void* p, std::size_t bytes);
inline constexpr std::size_t mapped_slots_min = 64 << 10;

template <class T> struct slot_allocator {
  using value_type = T;
  slot_allocator() = default;
  template <class U> slot_allocator(const slot_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    const auto bytes = n * sizeof(T);
    return static_cast<T*>(bytes >= mapped_slots_min ? map_slots(bytes) : ::operator new(bytes));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const auto bytes = n * sizeof(T);
    if (bytes >= mapped_slots_min)
      unmap_slots(p, bytes);
    else
      ::operator delete(p);
  }
  template <class U> bool operator==(const slot_allocator<U>&) const noexcept { return true; }
};

/// 16 hex digits (either case) -> their value; nullopt for anything else.
std::optional<std::uint64_t> parse_digest(std::string_view hex16);

class digest_set {
 public:
  /// True when `d` was not in the set.
  bool insert(std::uint64_t d);
  /// True when `d` was in the set.
  bool erase(std::uint64_t d);
  bool contains(std::uint64_t d) const;
  std::size_t size() const { return size_; }
  /// Bytes held by the slot arrays.
  std::size_t memory_bytes() const;

 private:
  struct shard {
    // 0 = empty; the digest 0 lives in has_zero_
    std::vector<std::uint64_t, slot_allocator<std::uint64_t>> slots;
    std::size_t count = 0;
  };
  static shard& of(std::array<shard, 256>& s, std::uint64_t d) { return s[d >> 56]; }
  static void grow(shard& s);
  std::array<shard, 256> shards_;
  std::size_t size_ = 0;
  bool has_zero_ = false;
};

} // namespace spiderhub::core
