#include <doctest/doctest.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Transaction.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <thread>
#include <vector>

#include <unistd.h>

#include "storage/leader.hpp"
#include "storage/packed_body.hpp"
#include "storage/postgres.hpp"
#include "storage/repositories.hpp"
#include "support/pg_cluster.hpp"
#include "support/temp_dir.hpp"

using namespace spiderhub::storage;
namespace fs = std::filesystem;

namespace {
using spiderhub::testing::temp_dir;

// A fresh database of its own in the test process's throwaway PostgreSQL cluster.
std::string fresh_pg_database() {
  static int n = 0;
  auto& pg = spiderhub::testing::pg_cluster::shared();
  auto name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++n);
  pg.create_database(name);
  return pg.conninfo(name);
}

// Runs `fn` against each backend: the repositories' behaviour must be the same.
template <class F> void on_both_backends(F fn) {
  SUBCASE("sqlite") {
    temp_dir d;
    sqlite_database db(d.file("a.db"), std::chrono::milliseconds(1000));
    fn(static_cast<database&>(db));
  }
  SUBCASE("postgresql") {
    pg_database db(fresh_pg_database());
    fn(static_cast<database&>(db));
  }
}
} // namespace

TEST_CASE("storage: a new database is migrated to the current version, WAL on") {
  temp_dir d;
  sqlite_database db(d.file("a.db"), std::chrono::milliseconds(1000));
  CHECK(db.version() == schema_version);
  CHECK(db.db().execAndGet("PRAGMA journal_mode").getString() == "wal");
  for (auto table : {"Node", "NodeStatus", "Job", "JobProperty", "Worker", "Block", "Running",
                     "JobStatus", "Request", "Result", "PendingFire"})
    CHECK(db.db().tableExists(table));
}

TEST_CASE("storage: reopening keeps data and does not migrate again") {
  temp_dir d;
  {
    sqlite_database db(d.file("a.db"), std::chrono::milliseconds(1000));
    job_row j;
    j.id = "j1";
    j.name = "n";
    j.job_type = "block";
    j.cron = "* * * * *";
    j.properties = {{"FullClassName", "X"}};
    job_repository(db).insert(j);
  }
  sqlite_database db(d.file("a.db"), std::chrono::milliseconds(1000));
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
    sqlite_database db(d.file("new.db"), std::chrono::milliseconds(100));
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
    sqlite_database db(d.file("bad.db"), std::chrono::milliseconds(100));
    FAIL("expected refusal");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("cannot open") != std::string::npos);
  }
}

TEST_CASE("storage: node upsert, status retention and listing") {
  on_both_backends([](database& db) {
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
  });
}

TEST_CASE("storage: spilled requests wait on disk and come back in push order") {
  on_both_backends([](database& db) {
    crawl_repository c(db);
    CHECK(c.insert_request({"run", "mem", std::string("{\"url\":\"m\"}"), 0, 1}));
    const auto spilled = static_cast<std::int32_t>(request_state::spilled);
    // Hashes in an order unlike their push order: Seq decides.
    CHECK(c.insert_request({"run", "zz", std::string("{\"n\":1}"), spilled, 2}));
    CHECK(c.insert_request({"run", "aa", std::string("{\"n\":2}"), spilled, 3}));
    CHECK(c.insert_request({"run", "mm", std::string("{\"n\":3}"), spilled, 4}));
    CHECK_FALSE(c.insert_request({"run", "aa", std::string("{}"), spilled, 3})); // same row
    CHECK(c.insert_request({"other", "x", std::string("{}"), spilled, 1}));
    CHECK(c.pending_requests("run").size() == 1); // spilled ones are not loaded at restart
    // 3 spilled; new requests continue after Seq 4 (the highest of the run, any state).
    CHECK(c.spilled("run") == 3);
    CHECK(c.last_seq("run") == 4);
    CHECK(c.totals("run").total == 4);
    constexpr auto from_start = std::numeric_limits<std::int64_t>::min();
    auto first = c.unspill_requests("run", from_start, 2);
    REQUIRE(first.size() == 2);
    CHECK(first[0].hash == "zz");
    CHECK(first[1].hash == "aa");
    CHECK(*first[1].body == "{\"n\":2}");
    // Read back, not written: the rows stay spilled until downloaded (a restart, whose
    // memory is empty, reads them again), and reading goes on after the last Seq.
    CHECK(c.spilled("run") == 3);
    CHECK(c.pending_requests("run").size() == 1);
    auto rest = c.unspill_requests("run", first.back().seq, 10);
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].hash == "mm");
    CHECK(c.unspill_requests("run", rest.back().seq, 10).empty());
    c.finish_request("run", first[0].seq, request_state::success);
    CHECK(c.spilled("run") == 2);
    auto again = c.unspill_requests("run", from_start, 10);  // as after a restart
    REQUIRE(again.size() == 2);
    CHECK(again[0].hash == "aa");
    CHECK(c.spilled("other") == 1);
    std::size_t hashes = 0;
    c.for_each_request_hash("run", [&](const std::string&) { ++hashes; });
    CHECK(hashes == 4);
  });
}

TEST_CASE("storage: request dedup, results and totals") {
  on_both_backends([](database& db) {
    crawl_repository c(db);
    CHECK(c.insert_request({"run", "h1", std::string("{}"), 0, 1}));
    CHECK_FALSE(c.insert_request({"run", "h1", std::string("{}"), 0, 1}));  // a repeated write
    CHECK(c.insert_request({"run2", "h1", std::string("{}"), 0, 1}));
    CHECK(c.insert_request({"run", "h2", std::string("{\"n\":2}"), 0, 2}));
    auto pending = c.pending_requests("run");
    REQUIRE(pending.size() == 2);
    CHECK(pending[1].hash == "h2");  // push order, with the Seq the dispatcher finishes by
    CHECK(pending[1].seq == 2);
    CHECK(*pending[1].body == "{\"n\":2}");
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
    c.finish_request("run", 1, request_state::success);
    CHECK(c.pending_requests("run").size() == 1);
    CHECK(c.pending_requests("run2").size() == 1);  // another run's Seq 1 is untouched
    c.finish_request("run", 2, request_state::error);
    CHECK(c.pending_requests("run").empty());
    auto t = c.totals("run");
    CHECK(t.total == 2);
    CHECK(t.success == 1);
    CHECK(t.error == 1);
    CHECK(c.delete_results("run", {id1, 999}) == 1);
    CHECK(c.count_results("run") == 1);
    CHECK(c.delete_results("other", {id2}) == 0);
  });
}

TEST_CASE("storage: a finished run is purged in chunks and its pages leave the file") {
  temp_dir d;
  auto path = d.file("purge.db");
  sqlite_database db(path, std::chrono::milliseconds(1000));
  CHECK(db.db().execAndGet("PRAGMA auto_vacuum").getInt() == 2); // incremental
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
      r.seq = i + 1;
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
  REQUIRE(leftovers.size() == 1); // "live" is in Running
  CHECK(leftovers[0] == "done");
  db.reset_statements();
  int chunks = 0;
  while (crawl.purge_run("done", 1000) > 0)
    ++chunks;
  CHECK(chunks == 6); // 3000 results, then 3000 requests, 1000 rows a chunk
  CHECK(crawl.totals("done").total == 0);
  CHECK(crawl.totals("live").total == 10);
  CHECK(crawl.count_results("live") == 10);
  CHECK(crawl.finished_run_leftovers().empty());
  db.reset_statements(); // as the storage actor does after every read: no open cursor
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
    raw.exec("CREATE TABLE Legacy (x INTEGER)"); // auto_vacuum NONE, as files of v0.1 are
    CHECK(raw.execAndGet("PRAGMA auto_vacuum").getInt() == 0);
  }
  sqlite_database db(path, std::chrono::milliseconds(1000));
  CHECK(db.db().execAndGet("PRAGMA auto_vacuum").getInt() == 2);
  CHECK(db.db().tableExists("Legacy"));
  CHECK(db.version() == schema_version);
}

TEST_CASE("storage: the audit trail keeps the newest rows, listed newest first") {
  on_both_backends([](database& db) {
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
  });
}

TEST_CASE("storage: jobs, runs, statuses, fires and purges") {
  on_both_backends([](database& db) {
    job_repository jobs(db);
    job_row j;
    j.id = "j1";
    j.name = "crawl";
    j.job_type = "block";
    j.cron = "*/5 * * * *";
    j.last_fire = 100;
    j.properties = {{"FullClassName", "X"}, {"Site", "{}"}};
    jobs.insert(j);
    j.name = "crawl2";
    j.properties = {{"FullClassName", "Y"}};
    CHECK(jobs.update(j));
    auto found = jobs.find("j1");
    REQUIRE(found);
    CHECK(found->name == "crawl2");
    CHECK(found->properties.size() == 1);
    CHECK(found->properties.at("FullClassName") == "Y");
    jobs.raise_last_fire("j1", 50); // never backwards
    CHECK(jobs.find("j1")->last_fire == 100);
    jobs.raise_last_fire("j1", 4102444800); // beyond 32 bits
    CHECK(jobs.find("j1")->last_fire == 4102444800);
    CHECK(jobs.soft_delete("j1"));
    CHECK_FALSE(jobs.soft_delete("j1"));
    CHECK(jobs.list().empty());

    run_repository runs(db);
    running_row r;
    r.job_id = "j1";
    r.identity = "run1";
    r.site_json = "{\"a\":1}";
    runs.insert_running(r);
    r.consuming = 3;
    runs.insert_running(r); // replaces
    REQUIRE(runs.running().size() == 1);
    CHECK(runs.find_running("run1")->consuming == 3);
    runs.set_worker_completed("run1");
    CHECK(runs.find_running("run1")->worker_completed);

    job_status_row s;
    s.job_id = "j1";
    s.identity = "run1";
    s.status = "Running";
    s.left = 7;
    s.total = 10;
    runs.upsert_status(s);
    s.status = "Success";
    s.left = 0;
    s.success = 10;
    s.exit_code = 0;
    runs.upsert_status(s);
    auto st = runs.statuses_of_run("run1");
    REQUIRE(st.size() == 1);
    CHECK(st[0].status == "Success");
    CHECK(st[0].left == 0);
    CHECK(st[0].success == 10);
    CHECK(st[0].exit_code == 0);
    CHECK(runs.statuses("").size() == 1);
    CHECK(runs.statuses("j1").size() == 1);
    CHECK(runs.statuses("other").empty());

    runs.add_pending_fire("j1", 1000, "run1");
    runs.add_pending_fire("j1", 1000, "run1b"); // same (job, due): replaced
    runs.add_pending_fire("j1", 900, "run0");
    auto fires = runs.pending_fires();
    REQUIRE(fires.size() == 2);
    CHECK(fires[0].due == 900);
    CHECK(fires[1].identity == "run1b");
    runs.remove_pending_fire("j1", 900);
    CHECK(runs.pending_fires().size() == 1);

    crawl_repository crawl(db);
    for (int i = 0; i < 30; ++i) {
      CHECK(crawl.insert_request({"run1", "h" + std::to_string(i), std::string("{}"), 0, i + 1}));
      crawl.insert_result({0, "run1", "b", "h" + std::to_string(i), "{}"});
    }
    // 20 blocks: 17 delivered, 2 leased and 1 ready when the run ended (cancelled).
    for (int i = 0; i < 20; ++i) {
      block_row b;
      b.id = "b" + std::to_string(100 + i);
      b.identity = "run1";
      b.state = i < 17 ? block_state::success : i < 19 ? block_state::used : block_state::ready;
      b.node_id = "n1";
      b.hashes = "h1,h2";
      crawl.upsert_block(b);
    }
    job_status_row node_row = s;
    node_row.node_id = "n1";
    runs.upsert_status(node_row);
    block_row other;  // another run's block stays
    other.id = "x1";
    other.identity = "run2";
    other.state = block_state::success;
    crawl.upsert_block(other);
    // run1 is still running; run2 (not in Running) has only a block left: a leftover too.
    CHECK(crawl.finished_run_leftovers() == std::vector<std::string>{"run2"});
    runs.remove_running("run1");
    REQUIRE(crawl.finished_run_leftovers().size() == 2);
    int removed = 0, n = 0;
    while ((n = crawl.purge_run("run1", 16)) > 0)
      removed += n;
    CHECK(removed == 80);
    CHECK(crawl.blocks("run1").empty());
    CHECK(crawl.blocks("run2").size() == 1);
    for (auto& row : runs.statuses_of_run("run1")) {
      CAPTURE(row.node_id);
      CHECK(row.blocks == (row.node_id.empty() ? 17 : 0));
      CHECK(row.success == 10);  // the rest of the status row is unchanged
    }
    runs.upsert_status(s);  // a later status write keeps the count
    CHECK(runs.statuses_of_run("run1")[0].blocks == 17);
    CHECK(crawl.purge_run("run2", 16) == 1);
    CHECK(crawl.finished_run_leftovers().empty());
    CHECK(db.release_free_pages(16) >= 0);
  });
}

// Reopens a database as of schema version 8 (Request keyed by hash, Seq only on spilled
// rows) and checks what migration 9 makes of it: every row keyed by push order.
template <class Open> void check_request_rekeyed(Open open, bool sqlite) {
  {
    auto db = open();
    db->exec("DROP TABLE Request");
    db->exec(std::string("CREATE TABLE Request (Identity TEXT NOT NULL, Hash TEXT NOT NULL, "
                         "BlockId TEXT, Body TEXT, State INTEGER NOT NULL DEFAULT 0, Seq ") +
             (sqlite ? "INTEGER" : "BIGINT") + ", PRIMARY KEY (Identity, Hash))" +
             (sqlite ? " WITHOUT ROWID" : ""));
    // Result as schema 8 had it (no spool columns).
    db->exec("DROP TABLE Result");
    db->exec(std::string("CREATE TABLE Result (Id ") +
             (sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY") +
             ", Identity TEXT NOT NULL, BlockId TEXT NOT NULL, RequestHash TEXT NOT NULL, "
             "Body TEXT NOT NULL, CreationTime TEXT NOT NULL)");
    db->exec("ALTER TABLE JobStatus DROP COLUMN Cut");  // added by migration 11
    db->exec("INSERT INTO Request (Identity, Hash, Body, State, Seq) VALUES "
             "('r', 'b2', '{\"n\":1}', 0, NULL), ('r', 'a1', NULL, 1, NULL), "
             "('r', 'c3', '{\"n\":2}', 4, 1), ('r', 'd4', '{\"n\":3}', 4, 2), "
             "('other', 'a1', '{}', 0, NULL)");
    db->exec(sqlite ? "PRAGMA user_version=8" : "UPDATE SchemaVersion SET Version=8");
  }
  auto db = open();
  CHECK(db->version() == schema_version);
  crawl_repository c(*db);
  std::vector<std::string> hashes;
  c.for_each_request_hash("r", [&](const std::string& h) { hashes.push_back(h); });
  // Rows without a Seq first (numbered below zero, by hash), then the spilled ones in order.
  CHECK(hashes == std::vector<std::string>{"a1", "b2", "c3", "d4"});
  auto pending = c.pending_requests("r");
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].hash == "b2");
  CHECK(pending[0].seq < 0);
  CHECK(c.spilled("r") == 2);
  CHECK(c.last_seq("r") == 2);
  auto back = c.unspill_requests("r", std::numeric_limits<std::int64_t>::min(), 10);
  REQUIRE(back.size() == 2);
  CHECK(back[0].hash == "c3");
  c.finish_request("r", pending[0].seq, request_state::success);
  CHECK(c.totals("r").success == 2);
  CHECK(c.insert_request({"r", "e5", std::string("{}"), 0, 3}));  // after the highest Seq
  CHECK(c.pending_requests("other").size() == 1);
  CHECK(c.last_seq("other") == 0);  // only rows numbered below zero: new ones from 1
}

TEST_CASE("storage: requests of an older database are keyed by push order (migration 9)") {
  SUBCASE("sqlite") {
    temp_dir d;
    auto path = d.file("old.db");
    check_request_rekeyed(
      [&] { return std::make_unique<sqlite_database>(path, std::chrono::milliseconds(1000)); },
      true);
  }
  SUBCASE("postgresql") {
    auto conninfo = fresh_pg_database();
    check_request_rekeyed([&] { return std::make_unique<pg_database>(conninfo); }, false);
  }
}

TEST_CASE("storage: hashes of a large run are streamed in pages, each once") {
  on_both_backends([](database& db) {
    crawl_repository crawl(db);
    db.begin();
    for (int i = 0; i < 45000; ++i)
      crawl.insert_request({"big", std::to_string(1000000 + i), std::nullopt, 0, i - 20000});
    crawl.insert_request({"small", "x", std::nullopt, 0, 1});
    db.commit();
    std::set<std::string> seen;
    std::size_t calls = 0;
    crawl.for_each_request_hash("big", [&](const std::string& h) {
      ++calls;
      seen.insert(h);
    });
    CHECK(calls == 45000);
    CHECK(seen.size() == 45000);
  });
}

TEST_CASE("storage: placeholders are rewritten for PostgreSQL outside quotes") {
  CHECK(postgres_placeholders("SELECT ? , ?") == "SELECT $1 , $2");
  CHECK(postgres_placeholders("WHERE (?1 = '' OR JobId=?1) LIMIT ?2") ==
        "WHERE ($1 = '' OR JobId=$1) LIMIT $2");
  CHECK(postgres_placeholders("SELECT '?', \"a?\", ?") == "SELECT '?', \"a?\", $1");
  CHECK(postgres_placeholders("?3, ?") == "$3, $4"); // as SQLite numbers them
}

TEST_CASE("postgresql: brokers migrating at once end with one schema; a newer one is refused") {
  auto conninfo = fresh_pg_database();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      try {
        pg_database db(conninfo);
        if (db.version() == schema_version)
          ++ok;
      } catch (const std::exception& e) {
        MESSAGE(e.what());
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == 4);
  {
    pg_database db(conninfo);
    db.exec("UPDATE SchemaVersion SET Version = 99");
  }
  try {
    pg_database db(conninfo);
    FAIL("expected refusal");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("schema version 99") != std::string::npos);
  }
  try {
    pg_database db("host=127.0.0.1 port=1 dbname=x user=spiderhub connect_timeout=2");
    FAIL("expected a connection error");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("cannot connect to postgresql://spiderhub@127.0.0.1:1/x") !=
          std::string::npos);
  }
}

TEST_CASE(
  "postgresql: one leader; a standby takes a lapsed lease and the deposed leader is fenced") {
  auto conninfo = fresh_pg_database();
  using std::chrono::milliseconds;
  leader_lease a(conninfo, "a", "http://a/", milliseconds(1500));
  leader_lease b(conninfo, "b", "http://b/", milliseconds(1500));
  auto ta = a.try_acquire();
  REQUIRE(ta);
  CHECK_FALSE(b.try_acquire()); // a holds it
  auto info = b.current();
  CHECK(info.holder == "a");
  CHECK(info.url == "http://a/");
  CHECK(info.live);
  CHECK(a.renew(*ta) == leader_lease::renewal::renewed);

  pg_database data_a(conninfo);
  data_a.set_fence(*ta);
  node_row n;
  n.id = "n1";
  data_a.begin();
  node_repository(data_a).upsert(n);
  data_a.commit();

  // a stops renewing (paused): after the lease, b takes over with a newer token.
  std::this_thread::sleep_for(milliseconds(1700));
  auto tb = b.try_acquire();
  REQUIRE(tb);
  CHECK(*tb == *ta + 1);
  CHECK(b.current().holder == "b");
  // a wakes up: its renewal is refused and its writes are fenced off.
  CHECK(a.renew(*ta) == leader_lease::renewal::deposed);
  n.id = "n2";
  CHECK_THROWS_AS(data_a.begin(), fenced_error);
  CHECK(data_a.autocommit());
  pg_database data_b(conninfo);
  data_b.set_fence(*tb);
  data_b.begin();
  CHECK(node_repository(data_b).list().size() == 1);
  node_repository(data_b).upsert(n);
  data_b.commit();
  // A clean shutdown releases the lease: the next standby takes it at once.
  b.release(*tb);
  auto ta2 = a.try_acquire();
  REQUIRE(ta2);
  CHECK(*ta2 == *tb + 1);
}

TEST_CASE("postgresql: a takeover waits for the leader's open transaction, which then cannot "
          "commit stale") {
  // The leader's transaction holds the leader row's share lock: a takeover that bumps
  // the token waits for its commit, so no write of the old leader lands after the token
  // changed (here the lease has lapsed while the transaction is open).
  auto conninfo = fresh_pg_database();
  using std::chrono::milliseconds;
  leader_lease a(conninfo, "a", "", milliseconds(1000));
  leader_lease b(conninfo, "b", "", milliseconds(1000));
  auto ta = a.try_acquire();
  REQUIRE(ta);
  pg_database data_a(conninfo);
  data_a.set_fence(*ta);
  data_a.begin();
  // The leader's renewal does not wait for its own open transaction (it would give up
  // after lock_timeout and throw) ...
  CHECK(a.renew(*ta) == leader_lease::renewal::renewed);
  std::this_thread::sleep_for(milliseconds(1200));
  // ... a takeover does: b's attempt gives up behind the lock (lock_timeout) instead of
  // hanging.
  CHECK_THROWS(b.try_acquire());
  node_row n;
  n.id = "late";
  node_repository(data_a).upsert(n);
  data_a.commit(); // still the leader's token: committed before any takeover
  auto tb = b.try_acquire();
  REQUIRE(tb);
  CHECK_THROWS_AS(data_a.begin(), fenced_error);
}

TEST_CASE("postgresql: a lost connection is opened again at the next transaction") {
  auto& pg = spiderhub::testing::pg_cluster::shared();
  auto conninfo = fresh_pg_database();
  pg_database db(conninfo);
  node_row n;
  n.id = "n1";
  db.begin();
  node_repository(db).upsert(n);
  db.commit();
  auto dbname = conninfo.substr(conninfo.find("dbname=") + 7);
  dbname = dbname.substr(0, dbname.find(' '));
  pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + dbname +
          "' AND pid <> pg_backend_pid()");
  // The first use notices the loss: the statement fails and says so ...
  bool failed = false;
  try {
    node_repository(db).list();
  } catch (const std::exception& e) {
    failed = true;
    CHECK(db.unavailable(e));
  }
  CHECK(failed);
  // ... and the next transaction runs on a new connection with re-prepared statements.
  db.begin();
  CHECK(node_repository(db).list().size() == 1);
  db.commit();
}

TEST_CASE("storage: packed result bodies round-trip; small or incompressible ones stay text") {
  std::string page = "{\"url\":\"http://x/p/1.html\",\"status\":200,\"body\":\"";
  for (int i = 0; i < 60; ++i)
    page += "<li><a href=\\\"/p/" + std::to_string(i) + ".html\\\">page " + std::to_string(i) +
            "</a></li>";
  page += "\"}";
  auto packed = pack_body(page);
  CHECK(is_packed(packed));
  CHECK(packed.size() < page.size() / 2);
  CHECK(unpack_body(packed) == page);
  CHECK_FALSE(is_packed(pack_body("{\"url\":\"u\"}")));  // too small to bother
  std::string noise;
  std::uint32_t x = 12345;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1103515245 + 12345;
    noise += static_cast<char>('!' + (x >> 16) % 90);
  }
  CHECK(pack_body("{\"b\":\"" + noise + "\"}")[0] == '{');  // would not shrink: text
  CHECK(unpack_body(page) == page);                          // text reads as is
  auto damaged = packed;
  damaged.resize(damaged.size() / 2);
  CHECK_THROWS_WITH_AS(unpack_body(damaged), doctest::Contains("damaged"), std::runtime_error);

  // Stored as a blob by SQLite, read back as the original text; rows of either kind mix.
  temp_dir d;
  sqlite_database db(d.file("a.db"), std::chrono::milliseconds(1000));
  crawl_repository c(db);
  auto id1 = c.insert_result({0, "run", "b", "h1", packed});
  auto id2 = c.insert_result({0, "run", "b", "h2", "{\"url\":\"v\"}"});
  CHECK(db.db().execAndGet("SELECT typeof(Body) FROM Result WHERE Id=" + std::to_string(id1))
          .getString() == "blob");
  auto rows = c.results_after("run", 0, 10);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].body == page);
  CHECK(rows[1].id == id2);
  CHECK(rows[1].body == "{\"url\":\"v\"}");
}
