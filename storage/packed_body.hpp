#pragma once
// Result bodies in the SQLite store, packed: a marker byte (0x01, never the '{' a JSON
// object starts with), the original size (4 bytes, little endian) and an LZ4 block. A
// ~4.5 KB result fits in one database page instead of a page and an overflow page, and
// the storage thread writes about half the bytes. Text that is not packed reads as is, so
// rows written before (or by the PostgreSQL backend, which compresses by itself) need
// nothing.
#include <string>
#include <string_view>

namespace spiderhub::storage {

/// `text` packed (or `text` itself when packing would not make it smaller).
std::string pack_body(std::string text);
bool is_packed(std::string_view stored);
/// The original text of a stored body; throws std::runtime_error on a damaged one.
std::string unpack_body(std::string stored);

} // namespace spiderhub::storage
