#pragma once
// Application packages: .zip and .tar.gz archives read with libarchive.
//
// A package is checked entry by entry before anything is written: an absolute path, a
// ".." component, a link whose target leaves the package, a device, fifo or socket, or
// more unpacked bytes/entries than the limits allow refuses the whole package with an
// input_error naming the entry. The broker checks on upload, the node again before it
// extracts (it never trusts what it downloaded).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spiderhub::core {

enum class package_format { zip, tar_gz };

/// "zip" or "tar.gz".
const char* format_name(package_format f);

/// Format from the first bytes (zip local header / empty-zip marker, gzip magic), or nullopt.
std::optional<package_format> sniff_archive(std::string_view bytes);

struct archive_limits {
  std::int64_t max_unpacked_bytes = std::int64_t{1} << 30;
  std::int64_t max_entries = 100000;
};

struct archive_summary {
  package_format format = package_format::zip;
  std::int64_t entries = 0;
  std::int64_t unpacked_bytes = 0;  // sum of the regular files' sizes
};

/// Checks an archive held in memory. Throws input_error on anything unsafe or unreadable.
archive_summary check_archive(std::string_view bytes, const archive_limits& limits);

/// Checks, then extracts the archive file `path` into `dest` (created; must not exist yet).
/// On any failure nothing is left at `dest`. Throws input_error for a bad package,
/// std::runtime_error for I/O failures.
archive_summary extract_archive(const std::string& path, const std::string& dest,
                                const archive_limits& limits);

/// True when `relative` (a path inside an archive, '/'-separated) stays inside the
/// archive root: not absolute, no ".." component that climbs above the root.
bool stays_inside(std::string_view relative);

} // namespace spiderhub::core
