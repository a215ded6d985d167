#include "storage/packed_body.hpp"

#include <lz4.h>

#include <cstdint>
#include <stdexcept>

namespace spiderhub::storage {
namespace {
constexpr char marker = '\x01';
constexpr std::size_t header = 5;
} // namespace

bool is_packed(std::string_view stored) { return !stored.empty() && stored[0] == marker; }

std::string pack_body(std::string text) {
  if (text.size() < 256 || text.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE))
    return text;
  auto n = static_cast<int>(text.size());
  std::string out(header + static_cast<std::size_t>(LZ4_compressBound(n)), '\0');
  int packed = LZ4_compress_default(text.data(), out.data() + header, n, LZ4_compressBound(n));
  if (packed <= 0 || header + static_cast<std::size_t>(packed) >= text.size())
    return text;
  out[0] = marker;
  auto size = static_cast<std::uint32_t>(n);
  for (int i = 0; i < 4; ++i)
    out[1 + i] = static_cast<char>((size >> (8 * i)) & 0xff);
  out.resize(header + static_cast<std::size_t>(packed));
  return out;
}

std::string unpack_body(std::string stored) {
  if (!is_packed(stored))
    return stored;
  if (stored.size() < header)
    throw std::runtime_error("stored result body damaged: packed header cut short");
  std::uint32_t size = 0;
  for (int i = 0; i < 4; ++i)
    size |= static_cast<std::uint32_t>(static_cast<unsigned char>(stored[1 + i])) << (8 * i);
  if (size > static_cast<std::uint32_t>(LZ4_MAX_INPUT_SIZE))
    throw std::runtime_error("stored result body damaged: packed size out of range");
  std::string out(size, '\0');
  int got = LZ4_decompress_safe(stored.data() + header, out.data(),
                                static_cast<int>(stored.size() - header), static_cast<int>(size));
  if (got != static_cast<int>(size))
    throw std::runtime_error("stored result body damaged: LZ4 block does not decode to " +
                             std::to_string(size) + " bytes");
  return out;
}

} // namespace spiderhub::storage
