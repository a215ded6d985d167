#include "core/rotating_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace spiderhub::core {

rotating_log::rotating_log(std::string path, std::int64_t max_bytes, int files)
  : path_(std::move(path)), max_bytes_(std::max<std::int64_t>(max_bytes, 1)),
    files_(std::max(files, 1)) {
  std::error_code ec;
  auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty())
    std::filesystem::create_directories(dir, ec);
  open();
}

rotating_log::~rotating_log() {
  if (fd_ >= 0)
    ::close(fd_);
}

void rotating_log::open() {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot open log " + path_ + ": " + std::strerror(errno));
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 ? st.st_size : 0;
}

void rotating_log::rotate() {
  ::close(fd_);
  fd_ = -1;
  auto name = [&](int i) { return i == 0 ? path_ : path_ + "." + std::to_string(i); };
  if (files_ == 1) {
    ::unlink(path_.c_str());
  } else {
    ::unlink(name(files_ - 1).c_str());
    for (int i = files_ - 2; i >= 0; --i)
      ::rename(name(i).c_str(), name(i + 1).c_str());
  }
  ++rotations_;
  open();
}

void rotating_log::write(std::string_view data) {
  while (!data.empty()) {
    if (size_ >= max_bytes_) {
      try {
        rotate();
      } catch (const std::exception&) {
        ++write_errors_;
        return;
      }
    }
    auto room = static_cast<std::size_t>(max_bytes_ - size_);
    auto n = std::min(room, data.size());
    auto w = ::write(fd_, data.data(), n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      ++write_errors_;
      return;
    }
    size_ += w;
    data.remove_prefix(static_cast<std::size_t>(w));
  }
}

} // namespace spiderhub::core
