#pragma once
// The result spool: result bodies of a SQLite store in append-only segment files beside
// the database, their place (segment, offset, length) in the Result row. A body is written
// once (one write per transaction for all of a batch's bodies), read once by Poll and never
// rewritten or deleted one by one: a segment file goes as a whole when no Result row refers
// to it any more (every result in it acked or purged). SQLite stays the commit point: a row
// exists only if its transaction committed, and its body was handed to the kernel before
// that commit, so a killed broker (kill -9) loses nothing. Orphan bytes (a write rolled
// back) are never referenced and leave with their segment.
//
// Durability: with `sync` off (the default, like SQLite's synchronous=NORMAL) nothing is
// fsynced; an OS crash or power loss may leave rows whose bodies did not reach the disk.
// Every record carries a CRC-32, so recover() finds them at the next start. With `sync`
// on, segments are fdatasync'ed before every commit that refers to them.
//
// Only the storage thread uses a spool (through the database that owns it).
#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace spiderhub::storage {

class database;

/// A segment file that cannot be created, written or synced; `code` is the errno.
struct spool_error : std::runtime_error {
  spool_error(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;
};

struct spool_options {
  std::string dir;                              // "" = no spool (bodies in the Result row)
  std::int64_t segment_bytes = 64LL << 20;      // a new segment after this many bytes
  bool sync = false;                            // fdatasync before each commit
  // Bodies are LZ4-packed once the spool holds this many bytes (a worker behind its crawl);
  // below it a body lives about a second and packing would only cost CPU. -1 = never.
  std::int64_t pack_above_bytes = -1;
};

/// Where a body is: the segment's number, the record's offset in it, the body's length.
struct spool_location {
  std::int64_t segment = 0;
  std::int64_t offset = 0;
  std::int64_t length = 0;
};

class result_spool {
 public:
  /// Opens (creating) the directory; starts a new head segment after the highest number
  /// found. Throws std::runtime_error with the path when the directory is unusable.
  explicit result_spool(spool_options o);
  ~result_spool();
  result_spool(const result_spool&) = delete;
  result_spool& operator=(const result_spool&) = delete;

  /// Buffers a body for the head segment; it reaches the file before the next commit or
  /// read. `row_id` (the Result row's id, once known) goes to bind().
  spool_location append(std::string_view body);
  /// The Result row id stored for a body appended to `segment`.
  void bind(std::int64_t segment, std::int64_t row_id);
  /// The body at `at`; throws std::runtime_error when the record is missing or damaged.
  std::string read(const spool_location& at);
  /// True when the record at `at` is complete and its CRC matches.
  bool valid(const spool_location& at);

  /// Rows with these ids are being deleted: their segments are checked after the commit.
  void released(std::int64_t row_id);
  /// Rows are being deleted without their ids at hand (a purge): check every segment.
  void released_all();

  /// Writes the buffer to the head segment (and fdatasyncs with `sync`): before COMMIT.
  void flush();
  /// After COMMIT: unlinks every closed segment `has_rows(first_id, last_id)` says nothing
  /// refers to any more, and empties the head segment when nothing refers to it.
  template <class HasRows>
  void committed(HasRows&& has_rows) {
    if (dirty_.empty())
      return;
    auto dirty = std::move(dirty_);
    dirty_.clear();
    std::sort(dirty.begin(), dirty.end());
    dirty.erase(std::unique(dirty.begin(), dirty.end()), dirty.end());
    for (auto seg : dirty) {
      auto it = segments_.find(seg);
      if (it == segments_.end())
        continue;
      auto& s = it->second;
      if (s.first_id <= s.last_id && has_rows(s.first_id, s.last_id))
        continue;
      if (seg == head_)
        reset_head();
      else
        remove_segment(seg);
    }
  }
  /// After ROLLBACK: the buffered bodies belong to no row; they are dropped.
  void rolled_back();

  /// At open: makes the spool's segments what the Result rows say (`ranges`: segment ->
  /// lowest and highest row id). Segments no row refers to are deleted.
  void adopt(const std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>>& ranges);

  /// Bytes in segment files (tests, metrics).
  std::int64_t bytes_on_disk() const;
  /// True when the next body should be packed (pack_above_bytes reached).
  bool packing() const { return o_.pack_above_bytes >= 0 && bytes_on_disk() >= o_.pack_above_bytes; }
  std::size_t segments() const { return segments_.size(); }
  const std::string& dir() const { return o_.dir; }

 private:
  struct segment {
    std::int64_t first_id = INT64_MAX, last_id = INT64_MIN;
    std::int64_t size = 0;  // bytes written and buffered
    int fd = -1;            // open for the head, and lazily for reads
  };
  std::string path_of(std::int64_t seg) const;
  int fd_of(std::int64_t seg);
  void start_head(std::int64_t seg);
  void reset_head();
  void remove_segment(std::int64_t seg);
  bool read_record(const spool_location& at, std::string* body);
  /// The bytes of the record at `at` (header and body) from the read-ahead window,
  /// reading a new window when they are outside it; empty when the file is too short.
  std::string_view record_bytes(const spool_location& at);
  /// Bytes of `seg` that have reached the file (a window never holds buffered bytes).
  std::int64_t written_size(std::int64_t seg) const;

  spool_options o_;
  std::map<std::int64_t, segment> segments_;
  std::int64_t head_ = 0;
  std::string buffer_;              // bodies of the head not yet written
  std::int64_t buffer_offset_ = 0;  // where buffer_ starts in the head segment
  std::vector<std::int64_t> dirty_;
  bool unsynced_ = false;
  // Read-ahead: Poll reads records in row order, which is file order, so one pread serves
  // the following records too. Dropped whenever bytes at an offset can change (the head
  // emptied or restarted, a segment deleted, a failed write, a rollback).
  struct window {
    std::int64_t segment = -1;
    std::int64_t offset = 0;
    std::string bytes;
  } window_;
  void drop_window() {
    window_.segment = -1;
    window_.bytes.clear();
    if (window_.bytes.capacity() > (1u << 20))
      std::string().swap(window_.bytes);  // one big body must not pin its size
  }
};

} // namespace spiderhub::storage
