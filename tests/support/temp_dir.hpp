#pragma once
// A directory of its own under the system's temp directory, removed with everything in it
// when the test's scope ends.
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace spiderhub::testing {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("spiderhub-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string file(const char* name) const { return (path / name).string(); }
};

} // namespace spiderhub::testing
