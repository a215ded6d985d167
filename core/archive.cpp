#include "core/archive.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/error.hpp"

namespace spiderhub::core {
namespace {

namespace fs = std::filesystem;

struct reader_deleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct writer_deleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
using reader_ptr = std::unique_ptr<archive, reader_deleter>;
using writer_ptr = std::unique_ptr<archive, writer_deleter>;

reader_ptr new_reader(package_format f) {
  reader_ptr a{archive_read_new()};
  if (!a)
    throw std::runtime_error("libarchive: out of memory");
  if (f == package_format::zip) {
    archive_read_support_format_zip(a.get());
    archive_read_support_filter_none(a.get());
  } else {
    archive_read_support_format_tar(a.get());
    archive_read_support_filter_gzip(a.get());
  }
  return a;
}

std::string last_error(archive* a) {
  const char* e = archive_error_string(a);
  return e ? e : "unknown libarchive error";
}

// Splits on '/', dropping empty and "." parts.
std::vector<std::string_view> components(std::string_view p) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto end = p.find('/', start);
    if (end == std::string_view::npos)
      end = p.size();
    auto part = p.substr(start, end - start);
    if (!part.empty() && part != ".")
      out.push_back(part);
    start = end + 1;
  }
  return out;
}

std::string_view parent_of(std::string_view p) {
  while (!p.empty() && p.back() == '/')
    p.remove_suffix(1);
  auto slash = p.rfind('/');
  return slash == std::string_view::npos ? std::string_view{} : p.substr(0, slash);
}

// Throws when one entry header is not acceptable in a package.
void check_entry(archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  std::string path = raw ? raw : "";
  auto bad = [&](const std::string& why) {
    throw input_error("package entry '" + path + "' refused: " + why);
  };
  if (path.empty())
    bad("empty path");
  if (path.front() == '/' || path.find('\\') != std::string::npos)
    bad("absolute path or backslash");
  for (auto part : components(path))
    if (part == "..")
      bad("'..' in the path");
  if (components(path).empty())
    bad("path names the package root");
  if (const char* hl = archive_entry_hardlink(e)) {
    std::string target = hl;
    if (target.empty() || target.front() == '/' || !stays_inside(target))
      bad("hard link to '" + target + "' leaves the package");
    for (auto part : components(target))
      if (part == "..")
        bad("hard link target with '..'");
    return;
  }
  switch (archive_entry_filetype(e)) {
  case AE_IFREG:
  case AE_IFDIR:
    return;
  case AE_IFLNK: {
    const char* t = archive_entry_symlink(e);
    std::string target = t ? t : "";
    if (target.empty() || target.front() == '/')
      bad("symbolic link to absolute path '" + target + "'");
    std::string resolved(parent_of(path));
    resolved += resolved.empty() ? "" : "/";
    resolved += target;
    if (!stays_inside(resolved))
      bad("symbolic link to '" + target + "' leaves the package");
    return;
  }
  default:
    bad("not a regular file, directory or link");
  }
}

// Walks every header of an opened reader; `on_entry` may consume the entry's data.
template <class OnEntry>
archive_summary walk(archive* a, package_format f, const archive_limits& limits,
                     OnEntry&& on_entry) {
  archive_summary s;
  s.format = f;
  bool format_checked = false;
  for (;;) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc < ARCHIVE_WARN)
      throw input_error(std::string("package is not a readable ") + format_name(f) + ": " +
                        last_error(a));
    if (!format_checked) {
      // A gzip stream must hold a tar, not e.g. a cpio or raw file.
      int fmt = ::archive_format(a) & ARCHIVE_FORMAT_BASE_MASK;
      if (f == package_format::tar_gz && fmt != ARCHIVE_FORMAT_TAR)
        throw input_error("package is gzip-compressed but holds no tar archive");
      format_checked = true;
    }
    if (++s.entries > limits.max_entries)
      throw input_error("package has more than " + std::to_string(limits.max_entries) +
                        " entries");
    check_entry(e);
    if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size_is_set(e)) {
      s.unpacked_bytes += archive_entry_size(e);
      if (s.unpacked_bytes > limits.max_unpacked_bytes)
        throw input_error("package unpacks to more than " +
                          std::to_string(limits.max_unpacked_bytes) + " bytes");
    }
    on_entry(e);
  }
  return s;
}

} // namespace

const char* format_name(package_format f) { return f == package_format::zip ? "zip" : "tar.gz"; }

std::optional<package_format> sniff_archive(std::string_view b) {
  if (b.size() >= 4 && b[0] == 'P' && b[1] == 'K' &&
      ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6)))
    return package_format::zip;
  if (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0x1f &&
      static_cast<unsigned char>(b[1]) == 0x8b)
    return package_format::tar_gz;
  return std::nullopt;
}

bool stays_inside(std::string_view relative) {
  if (!relative.empty() && relative.front() == '/')
    return false;
  int depth = 0;
  for (auto part : components(relative)) {
    if (part == "..") {
      if (--depth < 0)
        return false;
    } else {
      ++depth;
    }
  }
  return true;
}

archive_summary check_archive(std::string_view bytes, const archive_limits& limits) {
  auto f = sniff_archive(bytes);
  if (!f)
    throw input_error("package is neither a .zip nor a .tar.gz archive");
  auto a = new_reader(*f);
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK)
    throw input_error(std::string("package is not a readable ") + format_name(*f) + ": " +
                      last_error(a.get()));
  std::int64_t actual = 0;
  auto s = walk(a.get(), *f, limits, [&](archive_entry*) {
    // Header sizes can lie (zip data descriptors): count what really unpacks.
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      int rc = archive_read_data_block(a.get(), &buf, &size, &offset);
      if (rc == ARCHIVE_EOF)
        break;
      if (rc < ARCHIVE_WARN)
        throw input_error(std::string("package data is corrupt: ") + last_error(a.get()));
      actual += static_cast<std::int64_t>(size);
      if (actual > limits.max_unpacked_bytes)
        throw input_error("package unpacks to more than " +
                          std::to_string(limits.max_unpacked_bytes) + " bytes");
    }
  });
  s.unpacked_bytes = actual;
  return s;
}

archive_summary extract_archive(const std::string& path, const std::string& dest,
                                const archive_limits& limits) {
  std::string head(8, '\0');
  {
    FILE* fp = std::fopen(path.c_str(), "rb");
    if (!fp)
      throw std::runtime_error("cannot open package " + path);
    head.resize(std::fread(head.data(), 1, head.size(), fp));
    std::fclose(fp);
  }
  auto f = sniff_archive(head);
  if (!f)
    throw input_error("package " + path + " is neither a .zip nor a .tar.gz archive");

  auto open = [&] {
    auto a = new_reader(*f);
    if (archive_read_open_filename(a.get(), path.c_str(), 64 << 10) != ARCHIVE_OK)
      throw input_error("cannot read package " + path + ": " + last_error(a.get()));
    return a;
  };
  // Pass 1: headers only, so a bad package leaves nothing on disk.
  {
    auto a = open();
    walk(a.get(), *f, limits, [](archive_entry*) {});
  }

  std::error_code ec;
  if (fs::exists(dest, ec))
    throw std::runtime_error("cannot extract package: " + dest + " already exists");
  fs::create_directories(dest, ec);
  if (ec)
    throw std::runtime_error("cannot create " + dest + ": " + ec.message());
  auto root = fs::canonical(dest).string();

  try {
    auto a = open();
    // Paths are checked relative and rewritten under the canonical root, so the writer
    // gets absolute names; it still refuses '..' and writing through symlinks.
    writer_ptr w{archive_write_disk_new()};
    archive_write_disk_set_options(
      w.get(), ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                 ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_NO_OVERWRITE);
    std::int64_t written = 0;
    auto s = walk(a.get(), *f, limits, [&](archive_entry* e) {
      std::string rel = archive_entry_pathname(e);
      archive_entry_copy_pathname(e, (root + "/" + rel).c_str());
      if (const char* hl = archive_entry_hardlink(e))
        archive_entry_copy_hardlink(e, (root + "/" + std::string(hl)).c_str());
      // Owner-writable so cleanup can always remove what was extracted.
      archive_entry_set_perm(e, (archive_entry_perm(e) & 0755) | 0600 |
                                  (archive_entry_filetype(e) == AE_IFDIR ? 0100 : 0));
      if (archive_write_header(w.get(), e) < ARCHIVE_WARN)
        throw input_error("cannot extract '" + rel + "': " + last_error(w.get()));
      const void* buf = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      for (;;) {
        int rc = archive_read_data_block(a.get(), &buf, &size, &offset);
        if (rc == ARCHIVE_EOF)
          break;
        if (rc < ARCHIVE_WARN)
          throw input_error("package data of '" + rel + "' is corrupt: " + last_error(a.get()));
        written += static_cast<std::int64_t>(size);
        if (written > limits.max_unpacked_bytes)
          throw input_error("package unpacks to more than " +
                            std::to_string(limits.max_unpacked_bytes) + " bytes");
        if (archive_write_data_block(w.get(), buf, size, offset) < ARCHIVE_WARN)
          throw std::runtime_error("cannot write '" + rel + "': " + last_error(w.get()));
      }
      if (archive_write_finish_entry(w.get()) < ARCHIVE_WARN)
        throw std::runtime_error("cannot finish '" + rel + "': " + last_error(w.get()));
    });
    if (archive_write_close(w.get()) != ARCHIVE_OK)
      throw std::runtime_error("cannot finish extraction: " + last_error(w.get()));
    s.unpacked_bytes = written;
    return s;
  } catch (...) {
    fs::remove_all(dest, ec);
    throw;
  }
}

} // namespace spiderhub::core
