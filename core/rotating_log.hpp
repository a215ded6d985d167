#pragma once
// An append-only log file with a size quota: once `max_bytes` are written the file is
// rotated (name -> name.1 -> ... -> name.<files-1>, the oldest dropped), so one stream
// never takes more than max_bytes * files on disk whatever the program prints.
#include <cstdint>
#include <string>
#include <string_view>

namespace spiderhub::core {

class rotating_log {
 public:
  /// Opens (creating directories) `path` for appending. Throws std::runtime_error.
  rotating_log(std::string path, std::int64_t max_bytes, int files);
  ~rotating_log();
  rotating_log(const rotating_log&) = delete;
  rotating_log& operator=(const rotating_log&) = delete;

  /// Appends; splits the data across rotations. Write errors (disk full) are counted,
  /// not thrown: a full disk must not stop the application it logs.
  void write(std::string_view data);
  const std::string& path() const { return path_; }
  std::int64_t rotations() const { return rotations_; }
  std::int64_t write_errors() const { return write_errors_; }

 private:
  void open();
  void rotate();

  std::string path_;
  std::int64_t max_bytes_;
  int files_;
  int fd_ = -1;
  std::int64_t size_ = 0;
  std::int64_t rotations_ = 0, write_errors_ = 0;
};

} // namespace spiderhub::core
