#include <archive.h>
#include <archive_entry.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>
#include <sstream>

#include "core/archive.hpp"
#include "core/error.hpp"
#include "support/temp_dir.hpp"

using namespace spiderhub::core;
namespace fs = std::filesystem;

namespace {

struct item {
  enum kind_t { file, dir, symlink, hardlink, fifo };
  std::string path;
  std::string content;  // regular file data
  kind_t kind;
  std::string target;   // link target
  item(std::string p, std::string c = "", kind_t k = file, std::string t = "")
    : path(std::move(p)), content(std::move(c)), kind(k), target(std::move(t)) {}
};

// Builds an archive in memory with libarchive's writer (the format real tools produce).
std::string make_archive(package_format f, const std::vector<item>& items) {
  archive* a = archive_write_new();
  if (f == package_format::zip) {
    archive_write_set_format_zip(a);
  } else {
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
  }
  std::string out(1 << 20, '\0');
  size_t used = 0;
  REQUIRE(archive_write_open_memory(a, out.data(), out.size(), &used) == ARCHIVE_OK);
  for (auto& it : items) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, it.path.c_str());
    archive_entry_set_perm(e, 0755);
    switch (it.kind) {
    case item::file:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, static_cast<la_int64_t>(it.content.size()));
      break;
    case item::dir: archive_entry_set_filetype(e, AE_IFDIR); break;
    case item::symlink:
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, it.target.c_str());
      break;
    case item::hardlink:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, it.target.c_str());
      break;
    case item::fifo: archive_entry_set_filetype(e, AE_IFIFO); break;
    }
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (it.kind == item::file && !it.content.empty())
      archive_write_data(a, it.content.data(), it.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

using spiderhub::testing::temp_dir;

std::string write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string refusal(std::string_view bytes, archive_limits limits = {}) {
  try {
    check_archive(bytes, limits);
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST_CASE("archive: format sniffing") {
  CHECK(sniff_archive("PK\x03\x04rest") == package_format::zip);
  CHECK(sniff_archive(std::string("\x1f\x8b\x08", 3)) == package_format::tar_gz);
  CHECK_FALSE(sniff_archive("#!/bin/sh"));
  CHECK_FALSE(sniff_archive(""));
  CHECK(refusal("just text") == "package is neither a .zip nor a .tar.gz archive");
  // Right magic, garbage after it.
  CHECK(refusal(std::string("\x1f\x8b\x08\x00garbagegarbage", 18)).find("not a readable tar.gz") !=
        std::string::npos);
}

TEST_CASE("archive: stays_inside follows '..' lexically") {
  CHECK(stays_inside("a/b/c"));
  CHECK(stays_inside("a/../b"));
  CHECK(stays_inside("./a/./b/.."));
  CHECK_FALSE(stays_inside("../a"));
  CHECK_FALSE(stays_inside("a/../../b"));
  CHECK_FALSE(stays_inside("/etc/passwd"));
}

TEST_CASE("archive: a good tar.gz and zip extract with their files, dirs and inner links") {
  for (auto f : {package_format::tar_gz, package_format::zip}) {
    std::string format = format_name(f);
      CAPTURE(format);
    std::vector<item> items = {{"app/", "", item::dir},
                               {"app/run.sh", "#!/bin/sh\necho hi\n"},
                               {"app/data/x.txt", "payload"},
                               {"app/latest", "", item::symlink, "data/x.txt"}};
    auto bytes = make_archive(f, items);
    auto s = check_archive(bytes, {});
    CHECK(s.format == f);
    CHECK(s.entries == 4);
    CHECK(s.unpacked_bytes == static_cast<std::int64_t>(items[1].content.size() + 7));
    temp_dir t;
    auto pkg = write_file(t.path / "p.pkg", bytes);
    auto dest = t.path / "out";
    extract_archive(pkg, dest.string(), {});
    CHECK(read_file(dest / "app/run.sh") == "#!/bin/sh\necho hi\n");
    CHECK(read_file(dest / "app/data/x.txt") == "payload");
    CHECK(fs::is_symlink(dest / "app/latest"));
    CHECK(read_file(dest / "app/latest") == "payload");
    CHECK((fs::status(dest / "app/run.sh").permissions() & fs::perms::owner_exec) != fs::perms::none);
    // Extracting over an existing folder is refused.
    CHECK_THROWS_AS(extract_archive(pkg, dest.string(), {}), std::runtime_error);
  }
}

TEST_CASE("archive: escaping entries refuse the whole package and leave nothing behind") {
  struct bad_case {
    const char* name;
    std::vector<item> items;
    const char* expect;
  };
  std::vector<bad_case> cases = {
    {"dot-dot path", {{"ok.txt", "x"}, {"../evil.sh", "x"}}, "'..' in the path"},
    {"nested dot-dot", {{"a/b/../../../evil", "x"}}, "'..' in the path"},
    {"absolute path", {{"/tmp/spiderhub-evil", "x"}}, "absolute path"},
    {"symlink out", {{"a/", "", item::dir}, {"a/l", "", item::symlink, "../../etc"}},
     "leaves the package"},
    {"absolute symlink", {{"l", "", item::symlink, "/etc/passwd"}}, "absolute path"},
    {"hard link out", {{"h", "", item::hardlink, "../outside"}}, "hard link"},
    {"fifo", {{"pipe", "", item::fifo}}, "not a regular file"},
  };
  for (auto f : {package_format::tar_gz, package_format::zip}) {
    for (auto& c : cases) {
      if (f == package_format::zip &&
          (std::string(c.name) == "fifo" || std::string(c.name) == "hard link out"))
        continue;  // zip cannot carry these entry kinds
      std::string format = format_name(f);
      CAPTURE(format);
      CAPTURE(c.name);
      auto bytes = make_archive(f, c.items);
      auto why = refusal(bytes);
      CHECK(why.find(c.expect) != std::string::npos);
      temp_dir t;
      auto pkg = write_file(t.path / "p.pkg", bytes);
      auto dest = t.path / "out";
      CHECK_THROWS_AS(extract_archive(pkg, dest.string(), {}), input_error);
      CHECK_FALSE(fs::exists(dest));
      CHECK_FALSE(fs::exists(t.path / "evil.sh"));
    }
  }
}

TEST_CASE("archive: unpacked size and entry count limits") {
  auto bytes = make_archive(package_format::tar_gz, {{"big", std::string(100000, 'a')},
                                                     {"small", "b"}});
  archive_limits tight;
  tight.max_unpacked_bytes = 50000;
  CHECK(refusal(bytes, tight).find("more than 50000 bytes") != std::string::npos);
  archive_limits few;
  few.max_entries = 1;
  CHECK(refusal(bytes, few).find("more than 1 entries") != std::string::npos);
  CHECK(refusal(bytes).empty());
}
