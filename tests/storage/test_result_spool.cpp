#include <doctest/doctest.h>

#include <SQLiteCpp/Database.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "storage/database.hpp"
#include "storage/packed_body.hpp"
#include "storage/repositories.hpp"
#include "support/temp_dir.hpp"

using namespace spiderhub::storage;
using spiderhub::testing::temp_dir;
namespace fs = std::filesystem;

namespace {

spool_options small_segments(const temp_dir& d) {
  spool_options o;
  o.dir = d.file("db.results");
  o.segment_bytes = 8192;  // a few bodies per segment
  return o;
}

// A JSON object of about `n` bytes that differs per `i`.
std::string body_of(int i, std::size_t n = 1500) {
  std::string b = "{\"url\":\"http://t/" + std::to_string(i) + "\",\"body\":\"";
  while (b.size() < n)
    b += static_cast<char>('a' + (i + b.size()) % 26);
  return b + "\"}";
}

std::size_t segment_files(const std::string& dir) {
  std::size_t n = 0;
  for (auto& e : fs::directory_iterator(dir))
    n += e.path().extension() == ".seg";
  return n;
}

std::uintmax_t spool_bytes(const std::string& dir) {
  std::uintmax_t n = 0;
  for (auto& e : fs::directory_iterator(dir))
    n += e.file_size();
  return n;
}

std::vector<std::int64_t> insert_results(database& db, int from, int to) {
  crawl_repository c(db);
  std::vector<std::int64_t> ids;
  db.begin();
  for (int i = from; i < to; ++i) {
    result_row r{0, "run", "b", "h" + std::to_string(i), body_of(i)};
    r.seq = i;
    ids.push_back(c.insert_result(r));
  }
  db.commit();
  return ids;
}

// Where the spool record of the result row with `seq` is: its segment file opened for
// reading and writing, the record's offset and its body length (as the row names them).
struct record_at {
  std::fstream file;
  std::int64_t pos = 0;
  std::int64_t length = 0;
};

record_at spooled_record(const temp_dir& d, int seq) {
  SQLite::Database raw(d.file("db"), SQLite::OPEN_READONLY);
  SQLite::Statement q(raw, "SELECT Segment, Pos, Length FROM Result WHERE Seq=?");
  q.bind(1, seq);
  REQUIRE(q.executeStep());
  char name[32];
  std::snprintf(name, sizeof name, "/%012lld.seg",
                static_cast<long long>(q.getColumn(0).getInt64()));
  record_at at;
  at.file.open(d.file("db.results") + name, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(at.file.is_open());
  at.pos = q.getColumn(1).getInt64();
  at.length = q.getColumn(2).getInt64();
  return at;
}

} // namespace

TEST_CASE("result spool: bodies live in segments and a segment goes once its results are acked") {
  temp_dir d;
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
  REQUIRE(db.spool() != nullptr);
  crawl_repository c(db);
  auto ids = insert_results(db, 1, 41);  // ~60 KB: several 8 KB segments
  auto dir = d.file("db.results");
  CHECK(segment_files(dir) > 4);
  // The rows keep where the body is, not the body.
  CHECK(db.db().execAndGet("SELECT count(*) FROM Result WHERE Body='' AND Segment IS NOT NULL")
          .getInt() == 40);
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 40);
  for (int i = 0; i < 40; ++i) {
    CHECK(rows[i].body == body_of(i + 1));
    CHECK(rows[i].seq == i + 1);
  }
  auto files = segment_files(dir);
  // Acking the first half frees whole segments; the rest stay readable.
  db.begin();
  CHECK(c.delete_results("run", std::vector<std::int64_t>(ids.begin(), ids.begin() + 20)) == 20);
  db.commit();
  CHECK(segment_files(dir) < files);
  CHECK(segment_files(dir) > 1);
  rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 20);
  CHECK(rows[0].body == body_of(21));
  // A rolled-back ack deletes nothing, on disk either.
  auto before = spool_bytes(dir);
  db.begin();
  c.delete_results("run", std::vector<std::int64_t>(ids.begin() + 20, ids.end()));
  db.rollback();
  CHECK(spool_bytes(dir) == before);
  CHECK(c.results_after("run", 0, 100).size() == 20);
  // Everything acked: one empty head segment is left.
  db.begin();
  c.delete_results("run", std::vector<std::int64_t>(ids.begin() + 20, ids.end()));
  db.commit();
  CHECK(segment_files(dir) == 1);
  CHECK(spool_bytes(dir) == 0);
  CHECK(db.spool()->bytes_on_disk() == 0);
  // The head starts over at offset 0 and keeps working.
  auto more = insert_results(db, 100, 103);
  rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 3);
  CHECK(rows[2].body == body_of(102));
}

TEST_CASE("result spool: Poll's read-ahead never serves bytes from before the head started "
          "over") {
  temp_dir d;
  spool_options o;
  o.dir = d.file("db.results");  // one big head segment: every record in one read window
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), o);
  crawl_repository c(db);
  auto ids = insert_results(db, 1, 21);
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 20);
  for (int i = 0; i < 20; ++i)
    CHECK(rows[i].body == body_of(i + 1));
  // All acked: the head is emptied and the next bodies (same sizes) reuse its offsets.
  db.begin();
  c.delete_results("run", ids);
  db.commit();
  REQUIRE(db.spool()->bytes_on_disk() == 0);
  insert_results(db, 101, 121);
  rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 20);
  for (int i = 0; i < 20; ++i)
    CHECK(rows[i].body == body_of(i + 101));
  // Bodies appended after a window was read are found past its end.
  insert_results(db, 201, 203);
  rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 22);
  CHECK(rows[21].body == body_of(202));
}

TEST_CASE("result spool: bodies are packed only once the spool holds pack_above_bytes") {
  temp_dir d;
  spool_options o;
  o.dir = d.file("db.results");
  o.pack_above_bytes = 10 * 1024;  // ~6 bodies of 1.5 KB
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), o);
  crawl_repository c(db);
  for (int i = 1; i <= 20; ++i)
    insert_results(db, i, i + 1);  // one commit each: the spool grows between them
  auto lengths = [&] {
    std::vector<std::int64_t> v;
    SQLite::Statement q(db.db(), "SELECT Length FROM Result ORDER BY Id");
    while (q.executeStep())
      v.push_back(q.getColumn(0).getInt64());
    return v;
  }();
  REQUIRE(lengths.size() == 20);
  int raw = 0, packed = 0;
  for (int i = 0; i < 20; ++i) {
    bool is_raw = lengths[i] == static_cast<std::int64_t>(body_of(i + 1).size());
    (is_raw ? raw : packed)++;
    if (i > 0 && is_raw)
      CHECK(lengths[i - 1] == static_cast<std::int64_t>(body_of(i).size()));  // raw ones first
  }
  CHECK(raw >= 6);
  CHECK(raw <= 8);
  CHECK(packed == 20 - raw);
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 20);
  for (int i = 0; i < 20; ++i)
    CHECK(rows[i].body == body_of(i + 1));
  // Without a threshold (compress_results: false) nothing is packed.
  temp_dir d2;
  spool_options never;
  never.dir = d2.file("db.results");
  sqlite_database db2(d2.file("db"), std::chrono::milliseconds(1000), never);
  insert_results(db2, 1, 21);
  CHECK(db2.db().execAndGet("SELECT count(*) FROM Result WHERE Length=" +
                            std::to_string(body_of(1).size()))
          .getInt() >= 1);
  CHECK(db2.db().execAndGet("SELECT min(Length) FROM Result").getInt64() >=
        static_cast<std::int64_t>(body_of(1).size()));
}

TEST_CASE("result spool: a rolled-back insert leaves no row, and a purge empties the spool") {
  temp_dir d;
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
  crawl_repository c(db);
  insert_results(db, 1, 6);
  db.begin();
  c.insert_result({0, "run", "b", "hx", body_of(99)});
  db.rollback();
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 5);
  CHECK(rows.back().body == body_of(5));
  insert_results(db, 6, 30);
  db.begin();
  while (c.purge_run("run", 7) > 0) {
  }
  db.commit();
  CHECK(c.count_results("run") == 0);
  CHECK(spool_bytes(d.file("db.results")) == 0);
}

TEST_CASE("result spool: after a restart committed bodies are read, uncommitted ones and "
          "orphan segments are gone") {
  temp_dir d;
  std::vector<std::int64_t> ids;
  {
    sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
    ids = insert_results(db, 1, 11);
    // Bodies of a transaction that never commits (the broker killed mid-batch).
    crawl_repository c(db);
    db.begin();
    for (int i = 50; i < 60; ++i)
      c.insert_result({0, "run", "b", "h" + std::to_string(i), body_of(i)});
    db.spool()->flush();
  }  // no commit: SQLite rolls the transaction back
  std::ofstream(d.file("db.results") + "/000000009999.seg") << "stray";
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
  crawl_repository c(db);
  CHECK_FALSE(fs::exists(d.file("db.results") + "/000000009999.seg"));
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 10);
  for (int i = 0; i < 10; ++i)
    CHECK(rows[i].body == body_of(i + 1));
  // New bodies go to a new head after the highest segment number.
  insert_results(db, 11, 13);
  CHECK(c.results_after("run", 0, 100).size() == 12);
  db.begin();
  c.delete_results("run", ids);
  db.commit();
  rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].body == body_of(11));
}

TEST_CASE("result spool: a damaged or missing body is found at start and counts as an error") {
  temp_dir d;
  {
    sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
    crawl_repository c(db);
    for (int i = 1; i <= 3; ++i)
      CHECK(c.insert_request({"run", "h" + std::to_string(i), std::string("{}"), 0, i}));
    insert_results(db, 1, 4);
    for (int i = 1; i <= 3; ++i)
      c.finish_request("run", i, request_state::success);
  }
  // One byte of the second body flipped (an OS crash before the page reached the disk).
  {
    auto at = spooled_record(d, 2);
    at.file.seekp(at.pos + 40);
    at.file.put('#');
  }
  // The third row's length damaged: far past its segment's end (no huge allocation).
  {
    SQLite::Database raw(d.file("db"), SQLite::OPEN_READWRITE);
    raw.exec("UPDATE Result SET Length=1000000000000000 WHERE Seq=3");
  }
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
  crawl_repository c(db);
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].seq == 1);
  auto t = c.totals("run");
  CHECK(t.success == 1);
  CHECK(t.error == 2);
}

TEST_CASE("result spool: records written with a CRC-32 before XXH3 checks are still read") {
  temp_dir d;
  {
    sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
    insert_results(db, 1, 4);
  }
  // Rows 1 and 2 rewritten the way the previous format wrote them: magic "SHR1" and the
  // body's CRC-32. Row 2's CRC is then damaged. Row 3 stays an "SHR2" record.
  auto rewrite = [&](int seq, bool damage) {
    auto at = spooled_record(d, seq);
    std::string rec(12 + static_cast<std::size_t>(at.length), '\0');
    at.file.seekg(at.pos);
    at.file.read(rec.data(), static_cast<std::streamsize>(rec.size()));
    REQUIRE(rec.compare(0, 4, "SHR2") == 0);
    auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(rec.data() + 12), static_cast<uInt>(rec.size() - 12)));
    if (damage)
      crc ^= 1;
    rec.replace(0, 4, "SHR1");
    for (int i = 0; i < 4; ++i)
      rec[8 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    at.file.seekp(at.pos);
    at.file.write(rec.data(), 12);
  };
  rewrite(1, false);
  rewrite(2, true);
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
  crawl_repository c(db);
  auto rows = c.results_after("run", 0, 100);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].seq == 1);
  CHECK(rows[0].body == body_of(1));
  CHECK(rows[1].seq == 3);
  CHECK(rows[1].body == body_of(3));
}

TEST_CASE("result spool: with writes off new bodies go to rows, spooled ones stay readable") {
  temp_dir d;
  {
    sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d));
    insert_results(db, 1, 3);
  }
  sqlite_database db(d.file("db"), std::chrono::milliseconds(1000), small_segments(d), false);
  CHECK_FALSE(db.spool_writes());
  crawl_repository c(db);
  db.begin();
  c.insert_result({0, "run", "b", "h9", pack_body(body_of(9))});
  db.commit();
  auto rows = c.results_after("run", 0, 10);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].body == body_of(1));
  CHECK(rows[2].body == body_of(9));
  CHECK(db.db().execAndGet("SELECT count(*) FROM Result WHERE Segment IS NULL").getInt() == 1);
}

TEST_CASE("result spool: an unusable directory is a clear error at open") {
  temp_dir d;
  std::ofstream(d.file("file")) << "x";
  spool_options o;
  o.dir = d.file("file");  // a file, not a directory
  CHECK_THROWS_WITH_AS(sqlite_database(d.file("db"), std::chrono::milliseconds(1000), o),
                       doctest::Contains("result spool"), std::runtime_error);
}

TEST_CASE("results after a cursor are bounded by bytes, one result at least") {
  temp_dir d;
  // With the spool (sizes from the records) and without it (sizes of the rows' bodies).
  for (bool spooled : {true, false}) {
    CAPTURE(spooled);
    auto dir = d.file(spooled ? "with" : "without");
    fs::create_directories(dir);
    spool_options o;
    if (spooled) {
      o.dir = dir + "/db.results";
      o.segment_bytes = 8192;
    }
    sqlite_database db(dir + "/db", std::chrono::milliseconds(1000), o);
    CHECK((db.spool() != nullptr) == spooled);
    crawl_repository c(db);
    insert_results(db, 1, 11);  // ten bodies of 1,502 bytes
    const auto one = static_cast<std::int64_t>(body_of(1).size());
    REQUIRE(one == 1502);
    bool cut = false;
    auto rows = c.results_after("run", 0, 100, 3 * one, &cut);
    CHECK(rows.size() == 3);
    CHECK(cut);
    rows = c.results_after("run", 0, 100, 3 * one + one - 1, &cut);
    CHECK(rows.size() == 3);  // a fourth would pass the budget by a byte
    CHECK(cut);
    // A budget smaller than the first result still gets it: a worker always moves on.
    rows = c.results_after("run", 0, 100, 10, &cut);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].body == body_of(1));
    CHECK(cut);
    // The count limit or the end of the results, not the budget: not cut.
    rows = c.results_after("run", 0, 2, 1 << 20, &cut);
    CHECK(rows.size() == 2);
    CHECK(!cut);
    rows = c.results_after("run", rows.back().id, 100, 1 << 20, &cut);
    CHECK(rows.size() == 8);
    CHECK(rows.front().body == body_of(3));
    CHECK(!cut);
    // Read on a budget at a time, every result comes once, in order.
    std::int64_t after = 0;
    int seen = 0, reads = 0;
    for (;;) {
      rows = c.results_after("run", after, 100, 2 * one, &cut);
      if (rows.empty())
        break;
      ++reads;
      for (auto& r : rows)
        CHECK(r.body == body_of(++seen));
      after = rows.back().id;
    }
    CHECK(seen == 10);
    CHECK(reads == 5);
  }
}
