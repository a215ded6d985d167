#pragma once
// ASCII text helpers shared by URL, robots.txt and HTTP header code (locale-free).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace spiderhub::core {

inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

/// Case-insensitive ASCII comparison.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i]))
      return false;
  return true;
}

/// Eight bytes at p as one word (any alignment), for the word-at-a-time scans below.
inline std::uint64_t load_word(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline constexpr std::uint64_t word_ones = 0x0101010101010101ULL;
inline constexpr std::uint64_t word_highs = 0x8080808080808080ULL;

/// True when none of the eight bytes of `v` has its high bit set (all ASCII).
inline bool word_is_ascii(std::uint64_t v) { return (v & word_highs) == 0; }

/// True when all eight bytes of `v` go into a JSON string as they are: printable ASCII
/// other than '"' and '\\' (no control byte, no byte >= 0x80). The borrow tricks can
/// misplace which byte matched but never whether one did.
inline bool word_is_plain_json(std::uint64_t v) {
  auto has_zero = [](std::uint64_t x) { return (x - word_ones) & ~x & word_highs; };
  std::uint64_t below_space = (v - word_ones * 0x20) & ~v & word_highs;
  return ((below_space | has_zero(v ^ (word_ones * '"')) | has_zero(v ^ (word_ones * '\\')) |
           (v & word_highs))) == 0;
}

/// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong
/// forms, no surrogates, nothing past U+10FFFF), or 0 when the bytes there are not one.
inline std::size_t utf8_sequence_at(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80)
    return 1;
  std::size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size())
    return 0;
  for (std::size_t k = 1; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
      return 0;
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (len == 2 && c < 0xC2)
    return 0;  // overlong
  if (len == 3 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)))
    return 0;  // overlong, surrogate
  if (len == 4 && (c > 0xF4 || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)))
    return 0;  // overlong, past U+10FFFF
  return len;
}

/// `s` with every byte that starts no well-formed UTF-8 sequence replaced by U+FFFD
/// (NUL bytes too when `drop_nul`).
inline std::string sanitize_utf8(std::string_view s, bool drop_nul = false) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto len = utf8_sequence_at(s, i);
    if (len > 0 && !(drop_nul && s[i] == '\0')) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

/// Appends "%XX" (upper-case hex) for one byte.
inline void append_percent_escape(std::string& out, unsigned char c) {
  static constexpr char hex[] = "0123456789ABCDEF";
  out += '%';
  out += hex[c >> 4];
  out += hex[c & 15];
}

} // namespace spiderhub::core
