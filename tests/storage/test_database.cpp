#include <doctest/doctest.h>

#include <SQLiteCpp/Database.h>

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

TEST_CASE("storage: request dedup, results and totals") {
  temp_dir d;
  database db(d.file("a.db"), std::chrono::milliseconds(1000));
  crawl_repository c(db);
  CHECK(c.insert_request({"run", "h1", std::string("{}"), 0}));
  CHECK_FALSE(c.insert_request({"run", "h1", std::string("{}"), 0}));
  CHECK(c.insert_request({"run2", "h1", std::string("{}"), 0}));
  CHECK(c.insert_request({"run", "h2", std::string("{}"), 0}));
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
