#include "core/encoding.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <utility>

#include <iconv.h>
#include <uchardet/uchardet.h>
#include <unicode/ucnv.h>
#include <unicode/ucnv_cb.h>
#include <unicode/ucnv_err.h>

#include "core/error.hpp"
#include "core/text.hpp"

namespace spiderhub::core {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}


// Every encoding of the standard, in the order of its table.
// clang-format off
enum class enc : std::uint8_t {
  utf_8, ibm866, iso_8859_2, iso_8859_3, iso_8859_4, iso_8859_5, iso_8859_6, iso_8859_7,
  iso_8859_8, iso_8859_8_i, iso_8859_10, iso_8859_13, iso_8859_14, iso_8859_15, iso_8859_16,
  koi8_r, koi8_u, macintosh, windows_874, windows_1250, windows_1251, windows_1252,
  windows_1253, windows_1254, windows_1255, windows_1256, windows_1257, windows_1258,
  x_mac_cyrillic, gbk, gb18030, big5, euc_jp, iso_2022_jp, shift_jis, euc_kr, replacement,
  utf_16be, utf_16le, x_user_defined, count
};
// clang-format on

struct encoding_info {
  enc id;
  std::string_view name; // the standard's spelling
  const char* decoder;   // ICU converter (canonical name); nullptr: decoded here
  const char* encoder;   // ICU converter for the other direction; nullptr: encoded here
  char16_t lone_0x80;    // what a lone 0x80 byte decodes to where ICU rejects it, 0: U+FFFD
  bool ibm_controls;     // ICU's IBM table swaps 0x1A/0x1C/0x7F; swapped back here
  bool ascii_trail;      // double-byte: an unmapped pair ending in ASCII keeps that ASCII
};

// Converter names were checked byte by byte against the standard's indexes (differences:
// a few rare gb18030/Big5 code points, KOI8-U 0xAE/0xBE, windows-874/1253/1255 holes).
// ICU has no ISO-8859-16; glibc iconv builds its table (iso_8859_16_table).
constexpr std::array<encoding_info, static_cast<std::size_t>(enc::count)> encodings{{
  {enc::utf_8, "UTF-8", nullptr, nullptr, 0, false, false},
  {enc::ibm866, "IBM866", "ibm-866_P100-1995", "ibm-866_P100-1995", 0, true, false},
  {enc::iso_8859_2, "ISO-8859-2", "ibm-912_P100-1995", "ibm-912_P100-1995", 0, false, false},
  {enc::iso_8859_3, "ISO-8859-3", "ibm-913_P100-2000", "ibm-913_P100-2000", 0, false, false},
  {enc::iso_8859_4, "ISO-8859-4", "ibm-914_P100-1995", "ibm-914_P100-1995", 0, false, false},
  {enc::iso_8859_5, "ISO-8859-5", "ibm-915_P100-1995", "ibm-915_P100-1995", 0, false, false},
  {enc::iso_8859_6, "ISO-8859-6", "ibm-1089_P100-1995", "ibm-1089_P100-1995", 0, false, false},
  {enc::iso_8859_7, "ISO-8859-7", "ibm-9005_X110-2007", "ibm-9005_X110-2007", 0, false, false},
  {enc::iso_8859_8, "ISO-8859-8", "ibm-5012_P100-1999", "ibm-5012_P100-1999", 0, false, false},
  {enc::iso_8859_8_i, "ISO-8859-8-I", "ibm-5012_P100-1999", "ibm-5012_P100-1999", 0, false, false},
  {enc::iso_8859_10, "ISO-8859-10", "iso-8859_10-1998", "iso-8859_10-1998", 0, false, false},
  {enc::iso_8859_13, "ISO-8859-13", "ibm-921_P100-1995", "ibm-921_P100-1995", 0, false, false},
  {enc::iso_8859_14, "ISO-8859-14", "iso-8859_14-1998", "iso-8859_14-1998", 0, false, false},
  {enc::iso_8859_15, "ISO-8859-15", "ibm-923_P100-1998", "ibm-923_P100-1998", 0, false, false},
  {enc::iso_8859_16, "ISO-8859-16", nullptr, nullptr, 0, false, false},
  {enc::koi8_r, "KOI8-R", "ibm-878_P100-1996", "ibm-878_P100-1996", 0, false, false},
  {enc::koi8_u, "KOI8-U", "ibm-1168_P100-2002", "ibm-1168_P100-2002", 0, false, false},
  {enc::macintosh, "macintosh", "macos-0_2-10.2", "macos-0_2-10.2", 0, false, false},
  {enc::windows_874, "windows-874", "windows-874-2000", "windows-874-2000", 0, false, false},
  {enc::windows_1250, "windows-1250", "ibm-5346_P100-1998", "ibm-5346_P100-1998", 0, false, false},
  {enc::windows_1251, "windows-1251", "ibm-5347_P100-1998", "ibm-5347_P100-1998", 0, false, false},
  {enc::windows_1252, "windows-1252", "ibm-5348_P100-1997", "ibm-5348_P100-1997", 0, false, false},
  {enc::windows_1253, "windows-1253", "ibm-5349_P100-1998", "ibm-5349_P100-1998", 0, false, false},
  {enc::windows_1254, "windows-1254", "ibm-5350_P100-1998", "ibm-5350_P100-1998", 0, false, false},
  {enc::windows_1255, "windows-1255", "ibm-9447_P100-2002", "ibm-9447_P100-2002", 0, false, false},
  {enc::windows_1256, "windows-1256", "ibm-9448_X100-2005", "ibm-9448_X100-2005", 0, false, false},
  {enc::windows_1257, "windows-1257", "ibm-9449_P100-2002", "ibm-9449_P100-2002", 0, false, false},
  {enc::windows_1258, "windows-1258", "ibm-5354_P100-1998", "ibm-5354_P100-1998", 0, false, false},
  {enc::x_mac_cyrillic, "x-mac-cyrillic", "macos-7_3-10.2", "macos-7_3-10.2", 0, false, false},
  // GBK decodes as gb18030 (standard); its encoder is gb18030's without four-byte forms.
  {enc::gbk, "GBK", "gb18030", "windows-936-2000", u'\u20AC', false, true},
  {enc::gb18030, "gb18030", "gb18030", "gb18030", u'\u20AC', false, true},
  {enc::big5, "Big5", "ibm-1375_P100-2008", "ibm-1375_P100-2008", 0, false, true},
  {enc::euc_jp, "EUC-JP", "euc-jp-2007", "euc-jp-2007", 0, false, true},
  {enc::iso_2022_jp, "ISO-2022-JP", "ISO_2022,locale=ja,version=0", "ISO_2022,locale=ja,version=0",
   0, false, false},
  {enc::shift_jis, "Shift_JIS", "ibm-943_P15A-2003", "ibm-943_P15A-2003", u'\u0080', true, true},
  {enc::euc_kr, "EUC-KR", "windows-949-2000", "windows-949-2000", 0, false, true},
  {enc::replacement, "replacement", nullptr, nullptr, 0, false, false},
  {enc::utf_16be, "UTF-16BE", "UTF-16BE", nullptr, 0, false, false},
  {enc::utf_16le, "UTF-16LE", "UTF-16LE", nullptr, 0, false, false},
  {enc::x_user_defined, "x-user-defined", nullptr, nullptr, 0, false, false},
}};

constexpr bool encodings_in_enum_order() {
  for (std::size_t i = 0; i < encodings.size(); ++i)
    if (static_cast<std::size_t>(encodings[i].id) != i)
      return false;
  return true;
}
static_assert(encodings_in_enum_order());

const encoding_info& info(enc e) {
  return encodings[static_cast<std::size_t>(e)];
}

struct label_row {
  std::string_view label;
  enc encoding;
};

// The standard's label table (encodings.json), sorted by label for binary search.
// clang-format off
constexpr label_row labels[] = {
    {"866", enc::ibm866}, {"ansi_x3.4-1968", enc::windows_1252}, {"arabic", enc::iso_8859_6},
    {"ascii", enc::windows_1252}, {"asmo-708", enc::iso_8859_6}, {"big5", enc::big5},
    {"big5-hkscs", enc::big5}, {"chinese", enc::gbk}, {"cn-big5", enc::big5},
    {"cp1250", enc::windows_1250}, {"cp1251", enc::windows_1251}, {"cp1252", enc::windows_1252},
    {"cp1253", enc::windows_1253}, {"cp1254", enc::windows_1254}, {"cp1255", enc::windows_1255},
    {"cp1256", enc::windows_1256}, {"cp1257", enc::windows_1257}, {"cp1258", enc::windows_1258},
    {"cp819", enc::windows_1252}, {"cp866", enc::ibm866}, {"csbig5", enc::big5},
    {"cseuckr", enc::euc_kr}, {"cseucpkdfmtjapanese", enc::euc_jp}, {"csgb2312", enc::gbk},
    {"csibm866", enc::ibm866}, {"csiso2022jp", enc::iso_2022_jp}, {"csiso2022kr", enc::replacement},
    {"csiso58gb231280", enc::gbk}, {"csiso88596e", enc::iso_8859_6},
    {"csiso88596i", enc::iso_8859_6}, {"csiso88598e", enc::iso_8859_8},
    {"csiso88598i", enc::iso_8859_8_i}, {"csisolatin1", enc::windows_1252},
    {"csisolatin2", enc::iso_8859_2}, {"csisolatin3", enc::iso_8859_3},
    {"csisolatin4", enc::iso_8859_4}, {"csisolatin5", enc::windows_1254},
    {"csisolatin6", enc::iso_8859_10}, {"csisolatin9", enc::iso_8859_15},
    {"csisolatinarabic", enc::iso_8859_6}, {"csisolatincyrillic", enc::iso_8859_5},
    {"csisolatingreek", enc::iso_8859_7}, {"csisolatinhebrew", enc::iso_8859_8},
    {"cskoi8r", enc::koi8_r}, {"csksc56011987", enc::euc_kr}, {"csmacintosh", enc::macintosh},
    {"csshiftjis", enc::shift_jis}, {"csunicode", enc::utf_16le}, {"cyrillic", enc::iso_8859_5},
    {"dos-874", enc::windows_874}, {"ecma-114", enc::iso_8859_6}, {"ecma-118", enc::iso_8859_7},
    {"elot_928", enc::iso_8859_7}, {"euc-jp", enc::euc_jp}, {"euc-kr", enc::euc_kr},
    {"gb18030", enc::gb18030}, {"gb2312", enc::gbk}, {"gb_2312", enc::gbk},
    {"gb_2312-80", enc::gbk}, {"gbk", enc::gbk}, {"greek", enc::iso_8859_7},
    {"greek8", enc::iso_8859_7}, {"hebrew", enc::iso_8859_8}, {"hz-gb-2312", enc::replacement},
    {"ibm819", enc::windows_1252}, {"ibm866", enc::ibm866}, {"iso-10646-ucs-2", enc::utf_16le},
    {"iso-2022-cn", enc::replacement}, {"iso-2022-cn-ext", enc::replacement},
    {"iso-2022-jp", enc::iso_2022_jp}, {"iso-2022-kr", enc::replacement},
    {"iso-8859-1", enc::windows_1252}, {"iso-8859-10", enc::iso_8859_10},
    {"iso-8859-11", enc::windows_874}, {"iso-8859-13", enc::iso_8859_13},
    {"iso-8859-14", enc::iso_8859_14}, {"iso-8859-15", enc::iso_8859_15},
    {"iso-8859-16", enc::iso_8859_16}, {"iso-8859-2", enc::iso_8859_2},
    {"iso-8859-3", enc::iso_8859_3}, {"iso-8859-4", enc::iso_8859_4},
    {"iso-8859-5", enc::iso_8859_5}, {"iso-8859-6", enc::iso_8859_6},
    {"iso-8859-6-e", enc::iso_8859_6}, {"iso-8859-6-i", enc::iso_8859_6},
    {"iso-8859-7", enc::iso_8859_7}, {"iso-8859-8", enc::iso_8859_8},
    {"iso-8859-8-e", enc::iso_8859_8}, {"iso-8859-8-i", enc::iso_8859_8_i},
    {"iso-8859-9", enc::windows_1254}, {"iso-ir-100", enc::windows_1252},
    {"iso-ir-101", enc::iso_8859_2}, {"iso-ir-109", enc::iso_8859_3},
    {"iso-ir-110", enc::iso_8859_4}, {"iso-ir-126", enc::iso_8859_7},
    {"iso-ir-127", enc::iso_8859_6}, {"iso-ir-138", enc::iso_8859_8},
    {"iso-ir-144", enc::iso_8859_5}, {"iso-ir-148", enc::windows_1254}, {"iso-ir-149", enc::euc_kr},
    {"iso-ir-157", enc::iso_8859_10}, {"iso-ir-58", enc::gbk}, {"iso8859-1", enc::windows_1252},
    {"iso8859-10", enc::iso_8859_10}, {"iso8859-11", enc::windows_874},
    {"iso8859-13", enc::iso_8859_13}, {"iso8859-14", enc::iso_8859_14},
    {"iso8859-15", enc::iso_8859_15}, {"iso8859-2", enc::iso_8859_2},
    {"iso8859-3", enc::iso_8859_3}, {"iso8859-4", enc::iso_8859_4}, {"iso8859-5", enc::iso_8859_5},
    {"iso8859-6", enc::iso_8859_6}, {"iso8859-7", enc::iso_8859_7}, {"iso8859-8", enc::iso_8859_8},
    {"iso8859-9", enc::windows_1254}, {"iso88591", enc::windows_1252},
    {"iso885910", enc::iso_8859_10}, {"iso885911", enc::windows_874},
    {"iso885913", enc::iso_8859_13}, {"iso885914", enc::iso_8859_14},
    {"iso885915", enc::iso_8859_15}, {"iso88592", enc::iso_8859_2}, {"iso88593", enc::iso_8859_3},
    {"iso88594", enc::iso_8859_4}, {"iso88595", enc::iso_8859_5}, {"iso88596", enc::iso_8859_6},
    {"iso88597", enc::iso_8859_7}, {"iso88598", enc::iso_8859_8}, {"iso88599", enc::windows_1254},
    {"iso_8859-1", enc::windows_1252}, {"iso_8859-15", enc::iso_8859_15},
    {"iso_8859-1:1987", enc::windows_1252}, {"iso_8859-2", enc::iso_8859_2},
    {"iso_8859-2:1987", enc::iso_8859_2}, {"iso_8859-3", enc::iso_8859_3},
    {"iso_8859-3:1988", enc::iso_8859_3}, {"iso_8859-4", enc::iso_8859_4},
    {"iso_8859-4:1988", enc::iso_8859_4}, {"iso_8859-5", enc::iso_8859_5},
    {"iso_8859-5:1988", enc::iso_8859_5}, {"iso_8859-6", enc::iso_8859_6},
    {"iso_8859-6:1987", enc::iso_8859_6}, {"iso_8859-7", enc::iso_8859_7},
    {"iso_8859-7:1987", enc::iso_8859_7}, {"iso_8859-8", enc::iso_8859_8},
    {"iso_8859-8:1988", enc::iso_8859_8}, {"iso_8859-9", enc::windows_1254},
    {"iso_8859-9:1989", enc::windows_1254}, {"koi", enc::koi8_r}, {"koi8", enc::koi8_r},
    {"koi8-r", enc::koi8_r}, {"koi8-ru", enc::koi8_u}, {"koi8-u", enc::koi8_u},
    {"koi8_r", enc::koi8_r}, {"korean", enc::euc_kr}, {"ks_c_5601-1987", enc::euc_kr},
    {"ks_c_5601-1989", enc::euc_kr}, {"ksc5601", enc::euc_kr}, {"ksc_5601", enc::euc_kr},
    {"l1", enc::windows_1252}, {"l2", enc::iso_8859_2}, {"l3", enc::iso_8859_3},
    {"l4", enc::iso_8859_4}, {"l5", enc::windows_1254}, {"l6", enc::iso_8859_10},
    {"l9", enc::iso_8859_15}, {"latin1", enc::windows_1252}, {"latin2", enc::iso_8859_2},
    {"latin3", enc::iso_8859_3}, {"latin4", enc::iso_8859_4}, {"latin5", enc::windows_1254},
    {"latin6", enc::iso_8859_10}, {"logical", enc::iso_8859_8_i}, {"mac", enc::macintosh},
    {"macintosh", enc::macintosh}, {"ms932", enc::shift_jis}, {"ms_kanji", enc::shift_jis},
    {"replacement", enc::replacement}, {"shift-jis", enc::shift_jis}, {"shift_jis", enc::shift_jis},
    {"sjis", enc::shift_jis}, {"sun_eu_greek", enc::iso_8859_7}, {"tis-620", enc::windows_874},
    {"ucs-2", enc::utf_16le}, {"unicode", enc::utf_16le}, {"unicode-1-1-utf-8", enc::utf_8},
    {"unicode11utf8", enc::utf_8}, {"unicode20utf8", enc::utf_8}, {"unicodefeff", enc::utf_16le},
    {"unicodefffe", enc::utf_16be}, {"us-ascii", enc::windows_1252}, {"utf-16", enc::utf_16le},
    {"utf-16be", enc::utf_16be}, {"utf-16le", enc::utf_16le}, {"utf-8", enc::utf_8},
    {"utf8", enc::utf_8}, {"visual", enc::iso_8859_8}, {"windows-1250", enc::windows_1250},
    {"windows-1251", enc::windows_1251}, {"windows-1252", enc::windows_1252},
    {"windows-1253", enc::windows_1253}, {"windows-1254", enc::windows_1254},
    {"windows-1255", enc::windows_1255}, {"windows-1256", enc::windows_1256},
    {"windows-1257", enc::windows_1257}, {"windows-1258", enc::windows_1258},
    {"windows-31j", enc::shift_jis}, {"windows-874", enc::windows_874},
    {"windows-949", enc::euc_kr}, {"x-cp1250", enc::windows_1250}, {"x-cp1251", enc::windows_1251},
    {"x-cp1252", enc::windows_1252}, {"x-cp1253", enc::windows_1253},
    {"x-cp1254", enc::windows_1254}, {"x-cp1255", enc::windows_1255},
    {"x-cp1256", enc::windows_1256}, {"x-cp1257", enc::windows_1257},
    {"x-cp1258", enc::windows_1258}, {"x-euc-jp", enc::euc_jp}, {"x-gbk", enc::gbk},
    {"x-mac-cyrillic", enc::x_mac_cyrillic}, {"x-mac-roman", enc::macintosh},
    {"x-mac-ukrainian", enc::x_mac_cyrillic}, {"x-sjis", enc::shift_jis},
    {"x-unicode20utf8", enc::utf_8}, {"x-user-defined", enc::x_user_defined},
    {"x-x-big5", enc::big5},
};
// clang-format on
// Sorted by label for binary search (checked once, at the first look-up).

// ASCII whitespace of the Encoding and HTML standards.
bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

std::string_view trim_ascii_space(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back()))
    s.remove_suffix(1);
  return s;
}

// "get an encoding" without allocating: the table row of a label, nullptr when unknown.
const encoding_info* find_encoding(std::string_view label) {
  label = trim_ascii_space(label);
  char lowered[24]; // longer than every label
  if (label.empty() || label.size() > sizeof lowered)
    return nullptr;
  for (std::size_t i = 0; i < label.size(); ++i)
    lowered[i] = ascii_lower(label[i]);
  std::string_view key(lowered, label.size());
  static const bool sorted = std::is_sorted(
    std::begin(labels), std::end(labels), [](auto& a, auto& b) { return a.label < b.label; });
  if (!sorted)
    throw std::logic_error("core/encoding.cpp: the label table is not sorted");
  auto it =
    std::lower_bound(std::begin(labels), std::end(labels), key,
                     [](const label_row& row, std::string_view k) { return row.label < k; });
  if (it == std::end(labels) || it->label != key)
    return nullptr;
  return &info(it->encoding);
}

const encoding_info& require_encoding(const std::string& name) {
  auto e = find_encoding(name);
  if (!e)
    throw input_error("unknown character encoding '" + name + "'");
  return *e;
}

// --- UTF-8 -----------------------------------------------------------------------------

// The standard's UTF-8 decoder: feeds bytes, says when a sequence ends or breaks.
struct utf8_decoder {
  enum class step { complete, more, error, error_reprocess };
  int needed = 0, seen = 0;
  unsigned char lower = 0x80, upper = 0xBF;

  step feed(unsigned char b) {
    if (needed == 0) {
      if (b < 0x80)
        return step::complete;
      if (b >= 0xC2 && b <= 0xDF)
        needed = 1;
      else if (b >= 0xE0 && b <= 0xEF) {
        lower = b == 0xE0 ? 0xA0 : 0x80;
        upper = b == 0xED ? 0x9F : 0xBF;
        needed = 2;
      } else if (b >= 0xF0 && b <= 0xF4) {
        lower = b == 0xF0 ? 0x90 : 0x80;
        upper = b == 0xF4 ? 0x8F : 0xBF;
        needed = 3;
      } else
        return step::error;
      return step::more;
    }
    if (b < lower || b > upper) {
      *this = {};
      return step::error_reprocess; // the byte starts afresh
    }
    lower = 0x80;
    upper = 0xBF;
    if (++seen < needed)
      return step::more;
    *this = {};
    return step::complete;
  }
};

// Whether the body is UTF-8 and where its first non-ASCII byte is (size when none). A
// sequence cut off by the end still counts as valid (a truncated download) but not complete.
struct utf8_scan_result {
  bool valid;
  bool complete;
  std::size_t first_non_ascii;
};

utf8_scan_result scan_utf8(std::string_view s) {
  std::size_t i = 0, n = s.size(), first = n;
  while (i < n) {
    while (i + 8 <= n && word_is_ascii(load_word(s.data() + i)))
      i += 8;
    if (i == n)
      break;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    first = std::min(first, i);
    if (auto len = utf8_sequence_at(s, i)) {
      i += len;
      continue;
    }
    utf8_decoder d; // broken here, or just cut off?
    for (; i < n; ++i)
      if (d.feed(static_cast<unsigned char>(s[i])) != utf8_decoder::step::more)
        return {false, false, first};
    return {true, false, first};
  }
  return {true, true, first};
}

// UTF-8 with each maximal invalid subpart as one U+FFFD (the standard's decoder).
std::string repair_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  utf8_decoder d;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    switch (d.feed(static_cast<unsigned char>(s[i]))) {
    case utf8_decoder::step::complete:
      out.append(s.substr(start, i + 1 - start));
      start = i + 1;
      break;
    case utf8_decoder::step::more:
      break;
    case utf8_decoder::step::error:
      out += "\xEF\xBF\xBD";
      start = i + 1;
      break;
    case utf8_decoder::step::error_reprocess:
      out += "\xEF\xBF\xBD";
      start = i--;
      break;
    }
  }
  if (start < s.size())
    out += "\xEF\xBF\xBD"; // cut off by the end
  return out;
}

std::string utf8_copy(std::string_view s) {
  if (scan_utf8(s).complete)
    return std::string(s); // the usual case: a validating copy
  return repair_utf8(s);
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Calls f(code point) for each character of UTF-8 `s`, U+FFFD for broken sequences.
template <class F> void for_each_code_point(std::string_view s, F f) {
  auto repaired = scan_utf8(s).complete ? std::string() : repair_utf8(s);
  std::string_view text = repaired.empty() ? s : std::string_view(repaired);
  for (std::size_t i = 0; i < text.size();) { // well-formed from here on
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (std::size_t k = 1; k < len; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    f(cp);
    i += len;
  }
}

void append_char_reference(std::string& out, char32_t c) {
  out += "&#";
  out += std::to_string(static_cast<std::uint32_t>(c));
  out += ';';
}

// --- encodings decoded here ------------------------------------------------------------

std::string decode_x_user_defined(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 3);
  for (unsigned char b : bytes)
    append_utf8(out, b < 0x80 ? char32_t{b} : char32_t{0xF780u + b - 0x80});
  return out;
}

std::string encode_x_user_defined(std::string_view utf8) {
  std::string out;
  for_each_code_point(utf8, [&](char32_t c) {
    if (c < 0x80)
      out += static_cast<char>(c);
    else if (c >= 0xF780 && c <= 0xF7FF)
      out += static_cast<char>(c - 0xF780 + 0x80);
    else
      append_char_reference(out, c);
  });
  return out;
}

// ISO-8859-16's upper half (bytes 0x80-0xFF), from glibc iconv since ICU lacks it.
const std::array<char32_t, 128>& iso_8859_16_table() {
  static const std::array<char32_t, 128> table = [] {
    std::array<char32_t, 128> t{};
    iconv_t cd = iconv_open("UTF-32LE", "ISO-8859-16");
    if (cd == reinterpret_cast<iconv_t>(-1))
      throw std::runtime_error("iconv has no ISO-8859-16");
    for (std::size_t i = 0; i < t.size(); ++i) {
      char in = static_cast<char>(0x80 + i);
      unsigned char out[4] = {};
      char* inp = &in;
      auto* outp = reinterpret_cast<char*>(out);
      std::size_t inleft = 1, outleft = sizeof out;
      iconv(cd, nullptr, nullptr, nullptr, nullptr);
      bool ok =
        iconv(cd, &inp, &inleft, &outp, &outleft) != static_cast<std::size_t>(-1) && outleft == 0;
      t[i] = ok ? char32_t{out[0]} | char32_t{out[1]} << 8 | char32_t{out[2]} << 16 : U'\uFFFD';
    }
    iconv_close(cd);
    return t;
  }();
  return table;
}

std::string decode_iso_8859_16(std::string_view bytes) {
  auto& table = iso_8859_16_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes)
    append_utf8(out, b < 0x80 ? char32_t{b} : table[b - 0x80]);
  return out;
}

std::string encode_iso_8859_16(std::string_view utf8) {
  auto& table = iso_8859_16_table();
  std::string out;
  for_each_code_point(utf8, [&](char32_t c) {
    if (c < 0x80) {
      out += static_cast<char>(c);
      return;
    }
    auto it = std::find(table.begin(), table.end(), c);
    if (it != table.end() && c != U'\uFFFD')
      out += static_cast<char>(0x80 + (it - table.begin()));
    else
      append_char_reference(out, c);
  });
  return out;
}

// --- ICU -------------------------------------------------------------------------------

// Invalid input becomes U+FFFD (ICU's own substitute is U+001A for some tables). As in the
// standard, a lone 0x80 decodes in GBK/gb18030 (U+20AC) and Shift_JIS (U+0080), and an
// unmapped double-byte pair whose second byte is ASCII gives U+FFFD and then that
// character (ICU would swallow it; that byte alone always decodes to itself there).
void to_unicode_replacement(const void* context, UConverterToUnicodeArgs* args,
                            const char* code_units, int32_t length, UConverterCallbackReason reason,
                            UErrorCode* err) {
  if (reason > UCNV_IRREGULAR)
    return; // reset, close, clone: nothing to write
  auto* e = static_cast<const encoding_info*>(context);
  UChar out[2] = {0xFFFD, 0};
  int32_t n = 1;
  auto last = length > 0 ? static_cast<unsigned char>(code_units[length - 1]) : 0xFF;
  if (e && e->lone_0x80 && length == 1 && last == 0x80)
    out[0] = static_cast<UChar>(e->lone_0x80);
  else if (e && e->ascii_trail && length == 2 && last < 0x80)
    out[n++] = last;
  *err = U_ZERO_ERROR;
  ucnv_cbToUWriteUChars(args, out, n, 0, err);
}

struct converter_closer {
  void operator()(UConverter* c) const { ucnv_close(c); }
};
using converter_ptr = std::unique_ptr<UConverter, converter_closer>;

// Converters of one thread, opened on first use (a UConverter is not thread-safe).
struct thread_converters {
  std::array<converter_ptr, encodings.size()> decoders, encoders;
  converter_ptr utf8;
};

thread_converters& this_thread_converters() {
  thread_local thread_converters converters;
  return converters;
}

converter_ptr open_converter(const char* name) {
  UErrorCode err = U_ZERO_ERROR;
  converter_ptr c(ucnv_open(name, &err));
  if (U_FAILURE(err) || !c)
    throw std::runtime_error(std::string("ICU has no converter ") + name + ": " + u_errorName(err));
  return c;
}

UConverter& utf8_converter() {
  auto& c = this_thread_converters().utf8;
  if (!c) {
    c = open_converter("UTF-8");
    UErrorCode err = U_ZERO_ERROR;
    ucnv_setToUCallBack(c.get(), to_unicode_replacement, nullptr, nullptr, nullptr, &err);
  }
  return *c;
}

UConverter& decoder_for(const encoding_info& e) {
  auto& c = this_thread_converters().decoders[static_cast<std::size_t>(e.id)];
  if (!c) {
    c = open_converter(e.decoder);
    UErrorCode err = U_ZERO_ERROR;
    ucnv_setToUCallBack(c.get(), to_unicode_replacement, &e, nullptr, nullptr, &err);
  }
  return *c;
}

UConverter& encoder_for(const encoding_info& e) {
  auto& c = this_thread_converters().encoders[static_cast<std::size_t>(e.id)];
  if (!c) {
    c = open_converter(e.encoder);
    UErrorCode err = U_ZERO_ERROR;
    ucnv_setFromUCallBack(c.get(), UCNV_FROM_U_CALLBACK_ESCAPE, UCNV_ESCAPE_XML_DEC, nullptr,
                          nullptr, &err); // "&#NNNN;", decimal
  }
  return *c;
}

// All of `in` from one converter to the other, the output grown as needed.
std::string convert(UConverter& to, UConverter& from, std::string_view in, std::size_t guess) {
  std::string out(std::max<std::size_t>(guess, 64), '\0');
  char* target = out.data();
  const char* source = in.data();
  UChar pivot[2048];
  UChar* pivot_source = pivot;
  UChar* pivot_target = pivot;
  bool reset = true;
  for (;;) {
    UErrorCode err = U_ZERO_ERROR;
    ucnv_convertEx(&to, &from, &target, out.data() + out.size(), &source, in.data() + in.size(),
                   pivot, &pivot_source, &pivot_target, pivot + std::size(pivot), reset, true,
                   &err);
    reset = false;
    if (err == U_BUFFER_OVERFLOW_ERROR) {
      auto used = static_cast<std::size_t>(target - out.data());
      out.resize(out.size() * 2);
      target = out.data() + used;
      continue;
    }
    if (U_FAILURE(err))
      throw std::runtime_error(std::string("character conversion failed: ") + u_errorName(err));
    break;
  }
  out.resize(static_cast<std::size_t>(target - out.data()));
  return out;
}

// ICU's IBM tables map bytes 0x1A, 0x1C, 0x7F to U+001C, U+007F, U+001A; the standard keeps
// ASCII as it is. Bytes below 0x80 in UTF-8 are always those code points, so swap in place.
void unswap_ibm_controls_after_decode(std::string& utf8) {
  for (auto& ch : utf8)
    ch = ch == '\x1C' ? '\x1A' : ch == '\x7F' ? '\x1C' : ch == '\x1A' ? '\x7F' : ch;
}
void swap_ibm_controls_before_encode(std::string& utf8) {
  for (auto& ch : utf8)
    ch = ch == '\x1A' ? '\x1C' : ch == '\x1C' ? '\x7F' : ch == '\x7F' ? '\x1A' : ch;
}

std::string_view bom_of(enc e) {
  switch (e) {
  case enc::utf_8:
    return "\xEF\xBB\xBF";
  case enc::utf_16be:
    return "\xFE\xFF";
  case enc::utf_16le:
    return "\xFF\xFE";
  default:
    return {};
  }
}

// --- meta prescan ----------------------------------------------------------------------

enum class attribute_result { found, none, end_of_input };

bool is_ascii_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool starts_with_ci(std::string_view s, std::size_t pos, std::string_view prefix) {
  return s.size() - pos >= prefix.size() && iequals(s.substr(pos, prefix.size()), prefix);
}

// HTML "get an attribute": name and value lower-cased, `pos` left where the standard says.
attribute_result get_attribute(std::string_view s, std::size_t& pos, std::string& name,
                               std::string& value) {
  name.clear();
  value.clear();
  while (pos < s.size() && (is_ascii_space(s[pos]) || s[pos] == '/'))
    ++pos;
  if (pos >= s.size())
    return attribute_result::end_of_input;
  if (s[pos] == '>')
    return attribute_result::none;
  bool at_value = false;
  for (;; ++pos) { // the name
    if (pos >= s.size())
      return attribute_result::end_of_input;
    char c = s[pos];
    if (c == '=' && !name.empty()) {
      ++pos;
      at_value = true;
      break;
    }
    if (is_ascii_space(c))
      break;
    if (c == '/' || c == '>')
      return attribute_result::found;
    name += ascii_lower(c);
  }
  if (!at_value) { // spaces, then '=' or the end of this attribute
    while (pos < s.size() && is_ascii_space(s[pos]))
      ++pos;
    if (pos >= s.size())
      return attribute_result::end_of_input;
    if (s[pos] != '=')
      return attribute_result::found;
    ++pos;
  }
  while (pos < s.size() && is_ascii_space(s[pos]))
    ++pos;
  if (pos >= s.size())
    return attribute_result::end_of_input;
  if (char quote = s[pos]; quote == '"' || quote == '\'') {
    for (++pos; pos < s.size(); ++pos) {
      if (s[pos] == quote) {
        ++pos;
        return attribute_result::found;
      }
      value += ascii_lower(s[pos]);
    }
    return attribute_result::end_of_input;
  }
  if (s[pos] == '>')
    return attribute_result::found;
  for (; pos < s.size(); ++pos) {
    if (is_ascii_space(s[pos]) || s[pos] == '>')
      return attribute_result::found;
    value += ascii_lower(s[pos]);
  }
  return attribute_result::end_of_input;
}

// HTML "extract a character encoding from a meta element" (the content attribute).
const encoding_info* charset_in_meta_content(std::string_view content) {
  std::size_t pos = 0;
  for (;;) {
    auto k = content.find("charset", pos); // the value is lower-cased already
    if (k == std::string_view::npos)
      return nullptr;
    pos = k + 7;
    while (pos < content.size() && is_ascii_space(content[pos]))
      ++pos;
    if (pos >= content.size() || content[pos] != '=')
      continue;
    ++pos;
    while (pos < content.size() && is_ascii_space(content[pos]))
      ++pos;
    if (pos >= content.size())
      return nullptr;
    char c = content[pos];
    if (c == '"' || c == '\'') {
      auto close = content.find(c, pos + 1);
      if (close == std::string_view::npos)
        return nullptr;
      return find_encoding(content.substr(pos + 1, close - pos - 1));
    }
    auto end = pos;
    while (end < content.size() && !is_ascii_space(content[end]) && content[end] != ';')
      ++end;
    return find_encoding(content.substr(pos, end - pos));
  }
}

// The prescan itself; nullptr when it finds nothing.
const encoding_info* prescan(std::string_view head) {
  auto s = head.substr(0, meta_prescan_bytes);
  std::string name, value; // reused by every attribute
  std::size_t pos = 0;
  while (pos < s.size()) {
    if (s.compare(pos, 4, "<!--") == 0) {
      auto end = s.find("-->", pos + 2); // "<!-->" is a whole comment
      if (end == std::string_view::npos)
        return nullptr;
      pos = end + 3;
      continue;
    }
    if (starts_with_ci(s, pos, "<meta") && pos + 5 < s.size() &&
        (is_ascii_space(s[pos + 5]) || s[pos + 5] == '/')) {
      pos += 6;
      bool seen_http_equiv = false, seen_content = false, seen_charset = false;
      bool got_pragma = false;
      enum { unset, no, yes } need_pragma = unset;
      const encoding_info* charset = nullptr;
      bool charset_failed = false;
      for (;;) {
        auto r = get_attribute(s, pos, name, value);
        if (r == attribute_result::end_of_input)
          return nullptr;
        if (r == attribute_result::none)
          break;
        if (name == "http-equiv") {
          if (!std::exchange(seen_http_equiv, true) && value == "content-type")
            got_pragma = true;
        } else if (name == "content") {
          if (!std::exchange(seen_content, true) && !charset && !charset_failed) {
            if (auto e = charset_in_meta_content(value)) {
              charset = e;
              need_pragma = yes;
            }
          }
        } else if (name == "charset") {
          if (!std::exchange(seen_charset, true)) {
            charset = find_encoding(value);
            charset_failed = !charset;
            need_pragma = no;
          }
        }
      }
      if (need_pragma != unset && !(need_pragma == yes && !got_pragma) && charset) {
        if (charset->id == enc::utf_16be || charset->id == enc::utf_16le)
          return &info(enc::utf_8);
        if (charset->id == enc::x_user_defined)
          return &info(enc::windows_1252);
        return charset;
      }
      ++pos;
      continue;
    }
    if (s[pos] == '<' && pos + 1 < s.size() &&
        (is_ascii_alpha(s[pos + 1]) ||
         (s[pos + 1] == '/' && pos + 2 < s.size() && is_ascii_alpha(s[pos + 2])))) {
      while (pos < s.size() && !is_ascii_space(s[pos]) && s[pos] != '>')
        ++pos;
      for (;;) {
        auto r = get_attribute(s, pos, name, value);
        if (r == attribute_result::end_of_input)
          return nullptr;
        if (r == attribute_result::none)
          break;
      }
      ++pos;
      continue;
    }
    if (s.compare(pos, 2, "<!") == 0 || s.compare(pos, 2, "</") == 0 ||
        s.compare(pos, 2, "<?") == 0) {
      auto end = s.find('>', pos + 1);
      if (end == std::string_view::npos)
        return nullptr;
      pos = end + 1;
      continue;
    }
    ++pos;
  }
  return nullptr;
}

// --- detector --------------------------------------------------------------------------

struct detector_closer {
  void operator()(uchardet_t d) const { uchardet_delete(d); }
};

// What uchardet's answer means as a WHATWG encoding; nullptr for what a page cannot be in
// (UTF-16/32, ISO-2022-KR/CN and HZ, which the standard replaces) or the standard lacks.
const encoding_info* encoding_of_detected(std::string_view name) {
  if (iequals(name, "GB18030"))
    return &info(enc::gbk); // same decoder; GBK's encoder fits what such pages expect
  if (iequals(name, "UHC"))
    return &info(enc::euc_kr);
  if (iequals(name, "MAC-CYRILLIC"))
    return &info(enc::x_mac_cyrillic);
  auto e = find_encoding(name);
  if (!e || e->id == enc::utf_16be || e->id == enc::utf_16le || e->id == enc::replacement ||
      e->id == enc::x_user_defined)
    return nullptr;
  return e;
}

const encoding_info* detect(std::string_view sample) {
  thread_local std::unique_ptr<uchardet, detector_closer> detector(uchardet_new());
  if (!detector)
    return nullptr;
  uchardet_reset(detector.get());
  if (uchardet_handle_data(detector.get(), sample.data(), sample.size()) != 0)
    return nullptr;
  uchardet_data_end(detector.get());
  const char* name = uchardet_get_charset(detector.get());
  return name ? encoding_of_detected(name) : nullptr;
}

sniffed_encoding sniffed(const encoding_info& e, const char* source) {
  return {std::string(e.name), source};
}

} // namespace

std::optional<std::string> encoding_for_label(std::string_view label) {
  if (auto e = find_encoding(label))
    return std::string(e->name);
  return std::nullopt;
}

std::string charset_of_content_type(std::string_view content_type) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  auto pos = content_type.find(';');
  while (pos != std::string_view::npos && pos < content_type.size()) {
    ++pos; // past ';'
    while (pos < content_type.size() && blank(content_type[pos]))
      ++pos;
    auto name_end = content_type.find_first_of(";=", pos);
    auto name =
      content_type.substr(pos, name_end == std::string_view::npos ? name_end : name_end - pos);
    if (name_end == std::string_view::npos)
      break;
    pos = name_end;
    if (content_type[pos] == ';')
      continue;
    ++pos; // past '='
    std::string value;
    if (pos < content_type.size() && content_type[pos] == '"') {
      for (++pos; pos < content_type.size() && content_type[pos] != '"'; ++pos) {
        if (content_type[pos] == '\\' && pos + 1 < content_type.size())
          ++pos;
        value += content_type[pos];
      }
      pos = content_type.find(';', pos);
    } else {
      auto end = content_type.find(';', pos);
      auto raw = content_type.substr(pos, end == std::string_view::npos ? end : end - pos);
      while (!raw.empty() && blank(raw.front()))
        raw.remove_prefix(1);
      while (!raw.empty() && blank(raw.back()))
        raw.remove_suffix(1);
      value = raw;
      pos = end;
    }
    if (iequals(name, "charset") && !value.empty())
      return value; // the first charset parameter counts
  }
  return {};
}

std::optional<std::string> prescan_meta_charset(std::string_view head) {
  if (auto e = prescan(head))
    return std::string(e->name);
  return std::nullopt;
}

sniffed_encoding sniff_encoding(std::string_view body, std::string_view content_type,
                                std::string_view override_label) {
  if (starts_with(body, "\xEF\xBB\xBF"))
    return sniffed(info(enc::utf_8), "bom");
  if (starts_with(body, "\xFE\xFF"))
    return sniffed(info(enc::utf_16be), "bom");
  if (starts_with(body, "\xFF\xFE"))
    return sniffed(info(enc::utf_16le), "bom");
  if (auto e = find_encoding(override_label))
    return sniffed(*e, "override");
  if (auto e = find_encoding(charset_of_content_type(content_type)))
    return sniffed(*e, "http");
  if (auto e = prescan(body))
    return sniffed(*e, "meta");
  auto scan = scan_utf8(body);
  if (scan.valid)
    return sniffed(info(enc::utf_8), "detector");
  if (auto e = detect(body.substr(scan.first_non_ascii, detector_sample_bytes)))
    return sniffed(*e, "detector");
  return sniffed(info(enc::windows_1252), "default");
}

std::string decode_to_utf8(std::string_view bytes, const std::string& encoding) {
  auto& e = require_encoding(encoding);
  if (auto bom = bom_of(e.id); !bom.empty() && starts_with(bytes, bom))
    bytes.remove_prefix(bom.size());
  switch (e.id) {
  case enc::utf_8:
    return utf8_copy(bytes);
  case enc::replacement: // the standard's guard against ISO-2022-KR and the like
    return bytes.empty() ? std::string() : std::string("\xEF\xBF\xBD");
  case enc::x_user_defined:
    return decode_x_user_defined(bytes);
  case enc::iso_8859_16:
    return decode_iso_8859_16(bytes);
  default:
    break;
  }
  auto out = convert(utf8_converter(), decoder_for(e), bytes, bytes.size() + bytes.size() / 2);
  if (e.ibm_controls)
    unswap_ibm_controls_after_decode(out);
  return out;
}

std::string encode_from_utf8(std::string_view utf8, const std::string& encoding) {
  auto& e = require_encoding(encoding);
  switch (e.id) {
  case enc::utf_8:
  case enc::utf_16be: // the output encoding of UTF-16 and replacement is UTF-8
  case enc::utf_16le:
  case enc::replacement:
    return utf8_copy(utf8);
  case enc::x_user_defined:
    return encode_x_user_defined(utf8);
  case enc::iso_8859_16:
    return encode_iso_8859_16(utf8);
  default:
    break;
  }
  if (!e.ibm_controls)
    return convert(encoder_for(e), utf8_converter(), utf8, utf8.size() + 16);
  std::string swapped(utf8);
  swap_ibm_controls_before_encode(swapped);
  return convert(encoder_for(e), utf8_converter(), swapped, swapped.size() + 16);
}

} // namespace spiderhub::core
