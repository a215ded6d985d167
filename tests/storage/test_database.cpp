#include <doctest/doctest.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "storage/repositories.hpp"

using namespace spiderhub::storage;
namespace fs = std::filesystem;

namespace {
struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() /
           ("spiderhub-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string file(const char* name) const { return (path / name).string(); }
};
} // namespace

TEST_CASE("storage: a new database is migrated to the current version, WAL on") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  CHECK(db.version() == schema_version);
  CHECK(db.db().execAndGet("PRAGMA journal_mode").getString() == "wal");
  for (auto table : {"Node", "NodeStatus", "Job", "JobProperty", "Worker", "Block", "Running",
                     "JobStatus", "Request", "Result", "PendingFire"})
    CHECK(db.db().tableExists(table));
}

TEST_CASE("storage: reopening keeps data and does not migrate again") {
  temp_dir d;
  {
    database db(d.file("a.db"), std::chrono::milliseconds(1000));
    job_row j;
    j.id = "j1";
    j.name = "n";
    j.job_type = "block";
    j.cron = "* * * * *";
    j.properties = {{"FullClassName", "X"}};
    job_repository(db).insert(j);
  }
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  auto j = job_repository(db).find("j1");
  REQUIRE(j);
  CHECK(j->properties.at("FullClassName") == "X");
}

TEST_CASE("storage: a database from a newer version is refused") {
  temp_dir d;
  {
    SQLite::Database raw(d.file("new.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec("PRAGMA user_version=99");
  }
  try {
    database db(d.file("new.db"), std::chrono::milliseconds(100));
    FAIL("expected refusal");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("schema version 99") != std::string::npos);
  }
}

TEST_CASE("storage: a corrupt file is refused with a clear message") {
  temp_dir d;
  {
    std::ofstream out(d.file("bad.db"), std::ios::binary);
    out << std::string(8192, 'x');
  }
  try {
    database db(d.file("bad.db"), std::chrono::milliseconds(100));
    FAIL("expected refusal");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("cannot open") != std::string::npos);
  }
}

TEST_CASE("storage: node upsert, status retention and listing") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  node_repository nodes(db);
  node_row n;
  n.id = "n1";
  n.group = "g";
  n.is_online = true;
  nodes.upsert(n);
  n.group = "g2";
  nodes.upsert(n);
  auto list = nodes.list();
  REQUIRE(list.size() == 1);
  CHECK(list[0].group == "g2");
  CHECK(list[0].is_online);
  nodes.set_online("n1", false);
  CHECK_FALSE(nodes.find("n1")->is_online);
  node_status_row s;
  s.node_id = "n1";
  s.cpu = 5;
  nodes.add_status(s);
  s.creation_time = "2000-01-01T00:00:00.000Z";
  nodes.add_status(s);
  CHECK(nodes.statuses("n1", 10).size() == 2);
  CHECK(nodes.prune_status(24) == 1);
  CHECK(nodes.statuses("n1", 10).size() == 1);
}

TEST_CASE("storage: spilled requests wait on disk and come back in push order") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  crawl_repository c(db);
  CHECK(c.insert_request({"run", "mem", std::string("{\"url\":\"m\"}"), 0, 0}));
  const auto spilled = static_cast<std::int32_t>(request_state::spilled);
  // Hashes in an order unlike their push order: Seq decides.
  CHECK(c.insert_request({"run", "zz", std::string("{\"n\":1}"), spilled, 1}));
  CHECK(c.insert_request({"run", "aa", std::string("{\"n\":2}"), spilled, 2}));
  CHECK(c.insert_request({"run", "mm", std::string("{\"n\":3}"), spilled, 3}));
  CHECK_FALSE(c.insert_request({"run", "aa", std::string("{}"), spilled, 4}));  // dedup holds
  CHECK(c.insert_request({"other", "x", std::string("{}"), spilled, 1}));
  CHECK(c.pending_requests("run").size() == 1);  // spilled ones are not loaded at restart
  CHECK(c.spilled("run") == std::pair<std::int64_t, std::int64_t>{3, 3});
  CHECK(c.totals("run").total == 4);
  auto first = c.unspill_requests("run", 2);
  REQUIRE(first.size() == 2);
  CHECK(first[0].hash == "zz");
  CHECK(first[1].hash == "aa");
  CHECK(*first[1].body == "{\"n\":2}");
  CHECK(c.spilled("run").first == 1);
  CHECK(c.pending_requests("run").size() == 3);  // read back = pending (a restart loads them)
  auto rest = c.unspill_requests("run", 10);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].hash == "mm");
  CHECK(c.unspill_requests("run", 10).empty());
  CHECK(c.spilled("other").first == 1);
  std::size_t hashes = 0;
  c.for_each_request_hash("run", [&](const std::string&) { ++hashes; });
  CHECK(hashes == 4);
}

TEST_CASE("storage: request dedup, results and totals") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  crawl_repository c(db);
  CHECK(c.insert_request({"run", "h1", std::string("{}"), 0, 0}));
  CHECK_FALSE(c.insert_request({"run", "h1", std::string("{}"), 0, 0}));
  CHECK(c.insert_request({"run2", "h1", std::string("{}"), 0, 0}));
  CHECK(c.insert_request({"run", "h2", std::string("{}"), 0, 0}));
  CHECK(c.pending_requests("run").size() == 2);
  block_row b;
  b.id = "b1";
  b.identity = "run";
  b.hashes = "h1,h2";
  c.upsert_block(b);
  REQUIRE(c.blocks("run").size() == 1);
  CHECK(c.blocks("run")[0].hashes == "h1,h2");
  auto id1 = c.insert_result({0, "run", "b1", "h1", "{\"url\":\"u\"}"});
  auto id2 = c.insert_result({0, "run", "b1", "h2", "{\"url\":\"v\"}"});
  CHECK(id2 > id1);
  CHECK(c.results_after("run", 0, 10).size() == 2);
  CHECK(c.results_after("run", id1, 10).size() == 1);
  c.finish_request("run", "h1", request_state::success);
  c.finish_request("run", "h2", request_state::error);
  CHECK(c.pending_requests("run").empty());
  auto t = c.totals("run");
  CHECK(t.total == 2);
  CHECK(t.success == 1);
  CHECK(t.error == 1);
  CHECK(c.delete_results("run", {id1, 999}) == 1);
  CHECK(c.count_results("run") == 1);
  CHECK(c.delete_results("other", {id2}) == 0);
}

TEST_CASE("storage: a finished run is purged in chunks and its pages leave the file") {
  temp_dir d;
  auto path = d.file("purge.db");
  database db(path, std::chrono::milliseconds(1000));
  CHECK(db.db().execAndGet("PRAGMA auto_vacuum").getInt() == 2);  // incremental
  crawl_repository crawl(db);
  run_repository runs(db);
  running_row live;
  live.job_id = "j";
  live.identity = "live";
  runs.insert_running(live);
  std::string body(3000, 'x');
  auto fill = [&](const std::string& identity, int n) {
    SQLite::Transaction tx(db.db());
    for (int i = 0; i < n; ++i) {
      request_row r;
      r.identity = identity;
      r.hash = std::to_string(1000000 + i);
      r.body = body;
      crawl.insert_request(r);
      result_row res;
      res.identity = identity;
      res.block_id = "b";
      res.request_hash = r.hash;
      res.body = body;
      crawl.insert_result(res);
    }
    tx.commit();
  };
  fill("done", 3000);
  fill("live", 10);
  db.db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  auto grown = fs::file_size(path);
  CHECK(grown > 15'000'000);
  auto leftovers = crawl.finished_run_leftovers();
  REQUIRE(leftovers.size() == 1);  // "live" is in Running
  CHECK(leftovers[0] == "done");
  db.reset_statements();
  int chunks = 0;
  while (crawl.purge_run("done", 1000) > 0)
    ++chunks;
  CHECK(chunks == 6);  // 3000 results, then 3000 requests, 1000 rows a chunk
  CHECK(crawl.totals("done").total == 0);
  CHECK(crawl.totals("live").total == 10);
  CHECK(crawl.count_results("live") == 10);
  CHECK(crawl.finished_run_leftovers().empty());
  db.reset_statements();  // as the storage actor does after every read: no open cursor
  std::int64_t left = 1;
  int steps = 0;
  while (left > 0 && steps++ < 1000)
    left = db.release_free_pages(512);
  CHECK(left == 0);
  db.db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  auto shrunk = fs::file_size(path);
  INFO("file " << grown << " -> " << shrunk << " bytes");
  CHECK(shrunk < grown / 10);
}

TEST_CASE("storage: an older file without incremental vacuum is converted at open") {
  temp_dir d;
  auto path = d.file("old.db");
  {
    SQLite::Database raw(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec("CREATE TABLE Legacy (x INTEGER)");  // auto_vacuum NONE, as files of v0.1 are
    CHECK(raw.execAndGet("PRAGMA auto_vacuum").getInt() == 0);
  }
  database db(path, std::chrono::milliseconds(1000));
  CHECK(db.db().execAndGet("PRAGMA auto_vacuum").getInt() == 2);
  CHECK(db.db().tableExists("Legacy"));
  CHECK(db.version() == schema_version);
}

TEST_CASE("storage: the audit trail keeps the newest rows, listed newest first") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  audit_repository audit(db);
  for (int i = 0; i < 12; ++i) {
    audit_row r;
    r.role = "admin";
    r.name = "ops";
    r.address = "10.0.0.1";
    r.action = "job.update";
    r.target = "job" + std::to_string(i);
    r.detail = "{}";
    r.status = 200;
    audit.add(r, 5);
  }
  auto rows = audit.list(100);
  REQUIRE(rows.size() == 5);
  CHECK(rows.front().target == "job11");
  CHECK(rows.back().target == "job7");
  CHECK_FALSE(rows.front().time.empty());
  auto older = audit.list(2, rows[1].id);
  REQUIRE(older.size() == 2);
  CHECK(older[0].target == "job9");
  CHECK(older[1].target == "job8");
}
