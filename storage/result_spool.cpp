#include "storage/result_spool.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace spiderhub::storage {
namespace {

// A record: magic, body length, check of the body (all little endian), then the body.
// "SHR2" records carry the low 32 bits of XXH3-64 of the body (libxxhash, about a third
// of zlib's CRC-32 time per 4 KB body; the storage thread checks every body twice). "SHR1"
// records, written before, carry a CRC-32 and are still read.
constexpr std::uint32_t record_magic = 0x32524853;        // "SHR2"
constexpr std::uint32_t record_magic_crc32 = 0x31524853;  // "SHR1"
constexpr std::size_t header_size = 12;
constexpr const char* suffix = ".seg";
constexpr std::int64_t read_ahead = 256 * 1024;  // bytes one pread fetches for Poll

void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
std::uint32_t check_of(std::string_view body) {
  return static_cast<std::uint32_t>(XXH3_64bits(body.data(), body.size()));
}
std::uint32_t crc32_of(std::string_view body) {
  return static_cast<std::uint32_t>(
    crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
}
std::string errno_text() {
  return std::strerror(errno);
}

// ENOSPC reads like SQLite's own message, so operators and the API see one wording.
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  int code = errno;
  throw spool_error("storage: " + what + " " + path + ": " + std::strerror(code) +
                      (code == ENOSPC || code == EDQUOT ? " (database or disk is full)" : ""),
                    code);
}

} // namespace

result_spool::result_spool(spool_options o) : o_(std::move(o)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(o_.dir, ec);
  if (ec)
    throw std::runtime_error("storage: cannot create the result spool " + o_.dir + ": " +
                             ec.message() + " (storage.spool_dir)");
  std::int64_t highest = 0;
  for (auto& entry : fs::directory_iterator(o_.dir, ec)) {
    auto name = entry.path().filename().string();
    if (entry.path().extension() != suffix)
      continue;
    try {
      std::int64_t seg = std::stoll(name.substr(0, name.size() - std::strlen(suffix)));
      segment s;
      s.size = static_cast<std::int64_t>(entry.file_size());
      segments_.emplace(seg, s);
      highest = std::max(highest, seg);
    } catch (const std::exception&) {
      spdlog::warn("storage: {} in the result spool is not a segment; left alone",
                   entry.path().string());
    }
  }
  if (ec)
    throw std::runtime_error("storage: cannot read the result spool " + o_.dir + ": " +
                             ec.message());
  // Never append after a tail a crash may have torn: a new segment for every start.
  start_head(highest + 1);
}

result_spool::~result_spool() {
  try {
    flush();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  for (auto& [n, s] : segments_)
    if (s.fd >= 0)
      ::close(s.fd);
}

std::string result_spool::path_of(std::int64_t seg) const {
  char name[32];
  std::snprintf(name, sizeof name, "%012lld%s", static_cast<long long>(seg), suffix);
  return (std::filesystem::path(o_.dir) / name).string();
}

int result_spool::fd_of(std::int64_t seg) {
  auto& s = segments_[seg];
  if (s.fd < 0) {
    s.fd = ::open(path_of(seg).c_str(), O_RDONLY | O_CLOEXEC);
    if (s.fd < 0)
      throw std::runtime_error("storage: cannot open result spool segment " + path_of(seg) +
                               ": " + errno_text());
  }
  return s.fd;
}

void result_spool::start_head(std::int64_t seg) {
  auto path = path_of(seg);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    fail("cannot create result spool segment", path + " (storage.spool_dir)");
  auto& s = segments_[seg];
  s = segment{};
  s.fd = fd;
  if (window_.segment == seg)
    drop_window();
  head_ = seg;
  buffer_offset_ = 0;
}

spool_location result_spool::append(std::string_view body) {
  auto& head = segments_[head_];
  auto record = static_cast<std::int64_t>(header_size + body.size());
  if (head.size > 0 && head.size + record > o_.segment_bytes) {
    // Roll: the old head is complete (and synced if asked) before anything refers to the
    // new one; it goes once its rows are gone. The new file exists before the old one is
    // closed, so a failure leaves the old head in use.
    flush();
    if (o_.sync && ::fdatasync(head.fd) != 0)
      fail("cannot sync result spool segment", path_of(head_));
    auto old = head_;
    start_head(old + 1);
    auto& o = segments_[old];
    ::close(o.fd);
    o.fd = -1;
    dirty_.push_back(old);
  }
  auto& h = segments_[head_];
  spool_location at{head_, h.size, static_cast<std::int64_t>(body.size())};
  char header[header_size];
  put_u32(header, record_magic);
  put_u32(header + 4, static_cast<std::uint32_t>(body.size()));
  put_u32(header + 8, check_of(body));
  buffer_.append(header, header_size);
  buffer_.append(body);
  h.size += record;
  return at;
}

void result_spool::bind(std::int64_t seg, std::int64_t row_id) {
  auto it = segments_.find(seg);
  if (it == segments_.end())
    return;
  it->second.first_id = std::min(it->second.first_id, row_id);
  it->second.last_id = std::max(it->second.last_id, row_id);
}

void result_spool::flush() {
  if (!buffer_.empty()) {
    auto& h = segments_[head_];
    std::size_t done = 0;
    while (done < buffer_.size()) {
      auto n = ::pwrite(h.fd, buffer_.data() + done, buffer_.size() - done,
                        static_cast<off_t>(buffer_offset_ + static_cast<std::int64_t>(done)));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        if (n == 0)
          errno = EIO;
        // The transaction fails: its bodies go, the next write starts where they did.
        drop_window();
        h.size = buffer_offset_;
        buffer_.clear();
        fail("cannot write result spool segment", path_of(head_));
      }
      done += static_cast<std::size_t>(n);
    }
    buffer_offset_ += static_cast<std::int64_t>(buffer_.size());
    buffer_.clear();
    unsynced_ = true;
  }
  if (o_.sync && unsynced_) {
    if (::fdatasync(segments_[head_].fd) != 0)
      fail("cannot sync result spool segment", path_of(head_));
    unsynced_ = false;
  }
}

void result_spool::rolled_back() {
  // dirty_ stays: it only names segments to look at after the next commit, which asks
  // the rows themselves.
  segments_[head_].size = buffer_offset_;
  buffer_.clear();
  drop_window();
}

std::int64_t result_spool::written_size(std::int64_t seg) const {
  auto it = segments_.find(seg);
  if (it == segments_.end())
    return 0;
  return seg == head_ ? buffer_offset_ : it->second.size;
}

std::string_view result_spool::record_bytes(const spool_location& at) {
  auto need = static_cast<std::int64_t>(header_size) + at.length;
  auto& w = window_;
  if (w.segment == at.segment && at.offset >= w.offset &&
      at.offset + need <= w.offset + static_cast<std::int64_t>(w.bytes.size()))
    return std::string_view(w.bytes).substr(static_cast<std::size_t>(at.offset - w.offset),
                                            static_cast<std::size_t>(need));
  drop_window();
  // A row naming bytes past the segment's end (a damaged row) is missing, not a request
  // to allocate what its length says.
  if (at.offset + need > written_size(at.segment))
    return {};
  int fd;
  try {
    fd = fd_of(at.segment);
  } catch (const std::exception&) {
    return {};
  }
  // The window ends where the written bytes end (never past a tail still in the buffer).
  auto span = std::max(need, std::min(read_ahead, written_size(at.segment) - at.offset));
  w.bytes.resize(static_cast<std::size_t>(span));
  std::size_t got = 0;
  while (got < w.bytes.size()) {
    auto n = ::pread(fd, w.bytes.data() + got, w.bytes.size() - got,
                     static_cast<off_t>(at.offset + static_cast<std::int64_t>(got)));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += static_cast<std::size_t>(n);
  }
  if (static_cast<std::int64_t>(got) < need) {
    drop_window();
    return {};
  }
  w.bytes.resize(got);
  w.segment = at.segment;
  w.offset = at.offset;
  return std::string_view(w.bytes).substr(0, static_cast<std::size_t>(need));
}

bool result_spool::read_record(const spool_location& at, std::string* body) {
  if (at.segment == head_ && at.offset + static_cast<std::int64_t>(header_size) + at.length >
                               buffer_offset_)
    flush();
  if (!segments_.count(at.segment) || at.offset < 0 || at.length < 0)
    return false;
  auto rec = record_bytes(at);
  if (rec.empty())
    return false;
  auto magic = get_u32(rec.data());
  if ((magic != record_magic && magic != record_magic_crc32) ||
      get_u32(rec.data() + 4) != static_cast<std::uint32_t>(at.length))
    return false;
  auto payload = rec.substr(header_size);
  if (get_u32(rec.data() + 8) != (magic == record_magic ? check_of(payload) : crc32_of(payload)))
    return false;
  if (body)
    body->assign(payload);
  return true;
}

std::string result_spool::read(const spool_location& at) {
  std::string body;
  if (!read_record(at, &body))
    throw std::runtime_error("storage: result spool record " + path_of(at.segment) + " @" +
                             std::to_string(at.offset) + " is missing or damaged");
  return body;
}

bool result_spool::valid(const spool_location& at) {
  return read_record(at, nullptr);
}

void result_spool::released(std::int64_t row_id) {
  // The segment whose id range holds the row: ranges grow with the segment numbers.
  for (auto it = segments_.rbegin(); it != segments_.rend(); ++it)
    if (it->second.first_id <= row_id && row_id <= it->second.last_id) {
      if (dirty_.empty() || dirty_.back() != it->first)
        dirty_.push_back(it->first);
      return;
    }
}

void result_spool::released_all() {
  for (auto& [seg, s] : segments_)
    dirty_.push_back(seg);
}

// Nothing refers to the head: it starts over at offset 0 (a crawl that keeps up with its
// worker reuses one file's pages instead of growing it to the next roll).
void result_spool::reset_head() {
  if (!buffer_.empty())
    return;  // bodies of an open transaction (none after a commit)
  auto& h = segments_[head_];
  if (h.size == 0)
    return;
  drop_window();
  if (::ftruncate(h.fd, 0) != 0) {
    spdlog::warn("storage: cannot empty result spool segment {}: {}", path_of(head_), errno_text());
    return;
  }
  h = segment{h.first_id, h.last_id, 0, h.fd};
  h.first_id = INT64_MAX;
  h.last_id = INT64_MIN;
  buffer_offset_ = 0;
}

void result_spool::remove_segment(std::int64_t seg) {
  auto it = segments_.find(seg);
  if (it == segments_.end())
    return;
  if (window_.segment == seg)
    drop_window();
  if (it->second.fd >= 0)
    ::close(it->second.fd);
  auto path = path_of(seg);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    spdlog::warn("storage: cannot delete result spool segment {}: {}", path, errno_text());
  segments_.erase(it);
}

void result_spool::adopt(
  const std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>>& ranges) {
  std::vector<std::int64_t> orphans;
  for (auto& [seg, s] : segments_) {
    if (seg == head_)
      continue;
    auto r = ranges.find(seg);
    if (r == ranges.end())
      orphans.push_back(seg);
    else {
      s.first_id = r->second.first;
      s.last_id = r->second.second;
    }
  }
  for (auto seg : orphans)
    remove_segment(seg);
  if (!orphans.empty())
    spdlog::info("storage: deleted {} result spool segment(s) no result refers to", orphans.size());
}

std::int64_t result_spool::bytes_on_disk() const {
  std::int64_t n = 0;
  for (auto& [seg, s] : segments_)
    n += s.size;
  return n - static_cast<std::int64_t>(buffer_.size());
}

} // namespace spiderhub::storage
