#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/rotating_log.hpp"

using spiderhub::core::rotating_log;
namespace fs = std::filesystem;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
} // namespace

TEST_CASE("rotating_log: output beyond the quota rotates and the oldest file is dropped") {
  auto dir = fs::temp_directory_path() / ("spiderhub-rotlog-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto path = (dir / "sub" / "stdout.log").string();
  {
    rotating_log log(path, 100, 3);
    std::string line(30, 'x');
    for (int i = 0; i < 100; ++i) {  // 3,000 bytes through a 3 x 100-byte quota
      line[0] = static_cast<char>('a' + i % 26);
      log.write(line);
    }
    CHECK(log.rotations() == 29);
    CHECK(log.write_errors() == 0);
  }
  std::int64_t total = 0;
  for (auto& e : fs::directory_iterator(dir / "sub"))
    total += static_cast<std::int64_t>(fs::file_size(e.path()));
  CHECK(total == 300);
  CHECK_FALSE(fs::exists(path + ".3"));
  // The newest bytes are in the live file: the last write ended it.
  auto live = slurp(path);
  CHECK(live.size() == 100);
  CHECK(live.substr(live.size() - 30, 1) == std::string(1, static_cast<char>('a' + 99 % 26)));
  // Reopening appends to the live file and keeps counting its size.
  {
    rotating_log log(path, 100, 3);
    log.write("more");
    CHECK(log.rotations() == 1);
  }
  CHECK(slurp(path) == "more");
  CHECK(slurp(path + ".1") == live);
  fs::remove_all(dir);
}
