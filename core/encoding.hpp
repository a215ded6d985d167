#pragma once
// Character encodings the way browsers handle them (WHATWG Encoding standard, HTML
// "encoding sniffing algorithm"), for the node and the SDKs. Pure code, no actor.
//
// A body's encoding is the first of: a byte order mark; the run's override label; the
// Content-Type charset; a <meta> charset in the first 1024 bytes (HTML prescan); for a body
// that is not valid UTF-8, the uchardet detector; else windows-1252. Labels resolve through
// the standard's label table; decoding and encoding go through ICU converters (opened
// once per thread), except UTF-8, which is validated and copied without ICU.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace spiderhub::core {

/// Bytes HTML's meta prescan looks at (the standard's limit).
inline constexpr std::size_t meta_prescan_bytes = 1024;
/// Bytes of a body the detector reads, from its first non-ASCII byte on (bounds its cost).
inline constexpr std::size_t detector_sample_bytes = 64 * 1024;

/// The encoding of a body and which step decided it.
struct sniffed_encoding {
  std::string name;   // WHATWG name: "UTF-8", "GBK", "Shift_JIS", "EUC-KR", "windows-1251", ...
  std::string source; // "bom" | "override" | "http" | "meta" | "detector" | "default"
  friend bool operator==(const sniffed_encoding& a, const sniffed_encoding& b) {
    return a.name == b.name && a.source == b.source;
  }
};

/// WHATWG "get an encoding": label (any case, surrounding whitespace) -> name; nullopt for
/// unknown labels.
std::optional<std::string> encoding_for_label(std::string_view label);

/// The charset parameter of a Content-Type value ("text/html; charset=\"gbk\"" -> "gbk"),
/// "" when none.
std::string charset_of_content_type(std::string_view content_type);

/// HTML prescan of the first 1024 bytes for <meta charset> / <meta http-equiv content-type>
/// (WHATWG "prescan a byte stream to determine its encoding"): comments, other tags,
/// attributes in any order and any quoting; a UTF-16 label there means UTF-8. nullopt when
/// none.
std::optional<std::string> prescan_meta_charset(std::string_view head);

/// The encoding of an HTML body: BOM, then `override_label` (the run's Site.encodingName)
/// when it is a known label, then the HTTP charset, then the meta prescan, then the
/// detector (only when the body is not valid UTF-8; valid UTF-8 without any label is
/// "UTF-8" from "detector"), else "windows-1252" ("default").
sniffed_encoding sniff_encoding(std::string_view body, std::string_view content_type,
                                std::string_view override_label = {});

/// Bytes in `encoding` (a WHATWG name or label) -> UTF-8, invalid sequences as U+FFFD, the
/// BOM of that encoding dropped; throws core::input_error for an unknown encoding.
std::string decode_to_utf8(std::string_view bytes, const std::string& encoding);

/// UTF-8 -> bytes in `encoding`, characters it cannot represent as "&#NNNN;" (what URL
/// query encoding and form submission do); UTF-16 encodings encode as UTF-8 (standard);
/// throws core::input_error for an unknown encoding.
std::string encode_from_utf8(std::string_view utf8, const std::string& encoding);

} // namespace spiderhub::core
