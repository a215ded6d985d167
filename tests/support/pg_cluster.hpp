#pragma once
// A throwaway PostgreSQL 15 cluster for tests: its own temp directory, a random free
// loopback port and a private Unix socket directory; never the system cluster
// (/var/lib/postgresql, port 5432) nor any non-loopback address.
//
//   spiderhub::testing::pg_cluster pg;          // initdb + start + CREATE DATABASE spiderhub
//   auto db = pg.conninfo();                     // "host=127.0.0.1 port=N dbname=spiderhub user=spiderhub"
//   pg.create_database("t1");                    // one database per test case, for isolation
//   pg.psql("select 1", "t1");                   // stdout of psql -At
//   pg.stop();                                   // or the destructor: stop -m immediate, rm -rf
//
//   auto& shared = spiderhub::testing::pg_cluster::shared();  // one per test process
//
// Authentication is `trust` for the superuser `spiderhub`, durability is off (fsync,
// synchronous_commit, full_page_writes): fast, and gone on the next crash, as a test
// database should be. As root, initdb and the server run as the user `postgres` (else
// `nobody`), which owns the temp directory; clients (psql, createdb, libpq) may run as
// anyone. A watchdog process stops the server and removes the directory when the test
// process dies without running destructors (ctest timeout, SIGKILL, abort).
//
// Binaries: $SPIDERHUB_PG_BINDIR, else /usr/lib/postgresql/15/bin, else $PATH.
// Errors throw pg_cluster_error with what to do (install the packages) or the failing
// program's output (initdb, the server log).
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <sys/types.h>

namespace spiderhub::testing {

class pg_cluster_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class pg_cluster {
 public:
  // Creates the directory, runs initdb, starts the server and creates database
  // `spiderhub`. Throws pg_cluster_error; nothing is left behind when it does.
  pg_cluster();
  ~pg_cluster();
  pg_cluster(const pg_cluster&) = delete;
  pg_cluster& operator=(const pg_cluster&) = delete;

  // One cluster per test process, started by the first call and stopped at exit. Tests
  // sharing it should each use their own database (create_database) or schema.
  static pg_cluster& shared();

  // libpq connection string: "host=127.0.0.1 port=N dbname=DB user=spiderhub".
  std::string conninfo(const std::string& db = "spiderhub") const;
  // CREATE DATABASE (with createdb); throws if it exists already.
  void create_database(const std::string& name);
  // Runs SQL with psql (-X -At, ON_ERROR_STOP) and returns its stdout; throws with
  // psql's stderr on failure.
  std::string psql(const std::string& sql, const std::string& db = "spiderhub") const;

  // pg_ctl stop -m immediate (SIGKILL to the server's processes if that fails), then
  // removes the directory. Idempotent; the destructor calls it.
  void stop();

  bool running() const { return postmaster_pid_ > 0; }
  int port() const { return port_; }
  const std::string& user() const { return superuser_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  std::filesystem::path socket_dir() const { return dir_ / "sock"; }
  pid_t postmaster_pid() const { return postmaster_pid_; }
  // The server log so far (for failure messages).
  std::string log() const;
  // Wall time of the constructor: initdb + server start + CREATE DATABASE.
  std::chrono::milliseconds start_time() const { return start_time_; }

 private:
  void init_and_start();
  void start_server();
  void spawn_watchdog();
  void kill_server_processes();
  void cleanup_noexcept() noexcept;

  std::filesystem::path dir_;
  std::string superuser_ = "spiderhub";
  int port_ = 0;
  pid_t postmaster_pid_ = 0;
  int watchdog_fd_ = -1;        // write end of the watchdog's pipe; closing it wakes it
  uid_t run_uid_ = 0;           // uid/gid initdb and the server run as
  gid_t run_gid_ = 0;
  bool drop_privileges_ = false;
  std::chrono::milliseconds start_time_{0};
};

}  // namespace spiderhub::testing
