#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "support/pg_cluster.hpp"

using spiderhub::testing::pg_cluster;
using spiderhub::testing::pg_cluster_error;
namespace fs = std::filesystem;

namespace {
// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// Gone or a zombie: the server is reparented to init, which may reap it later.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         (line[paren + 2] == 'Z' || line[paren + 2] == 'X');
}

template <class Predicate>
bool eventually(Predicate p, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return p();
}
}  // namespace

TEST_CASE("pg_cluster: starts, accepts a connection, stops and leaves nothing") {
  pg_cluster pg;
  MESSAGE("pg_cluster start (initdb + server + createdb) took " << pg.start_time().count() << " ms");
  const fs::path dir = pg.dir();
  const int port = pg.port();
  const pid_t postmaster = pg.postmaster_pid();
  REQUIRE(pg.running());
  CHECK(port != 5432);
  CHECK(fs::exists(pg.data_dir() / "PG_VERSION"));
  CHECK(pg.conninfo() ==
        "host=127.0.0.1 port=" + std::to_string(port) + " dbname=spiderhub user=spiderhub");
  CHECK(pg.conninfo("other").find(" dbname=other ") != std::string::npos);

  // psql -c 'select 1' over TCP, as libpq will connect.
  CHECK(pg.psql("select 1") == "1\n");
  CHECK(pg.psql("show server_version_num").rfind("15", 0) == 0);
  CHECK(pg.psql("show listen_addresses") == "127.0.0.1\n");
  CHECK(pg.psql("show fsync") == "off\n");
  CHECK(pg.psql("select current_user") == "spiderhub\n");
  CHECK(pg.psql("show server_encoding") == "UTF8\n");
  CHECK(port_open(port));

  // One database per test, for isolation.
  pg.create_database("isolated");
  CHECK(pg.psql("create table t (x int); insert into t values (1), (2); select count(*) from t",
                "isolated") == "2\n");
  CHECK(pg.psql("select count(*) from pg_tables where tablename = 't'") == "0\n");
  CHECK_THROWS_AS(pg.create_database("isolated"), pg_cluster_error);
  CHECK_THROWS_WITH_AS(pg.psql("select nope"), doctest::Contains("nope"), pg_cluster_error);

  pg.stop();
  CHECK_FALSE(pg.running());
  CHECK_FALSE(fs::exists(dir));
  CHECK_FALSE(port_open(port));
  CHECK(process_gone(postmaster));
  pg.stop();  // idempotent
  CHECK_THROWS_AS(pg.psql("select 1"), pg_cluster_error);
}

TEST_CASE("pg_cluster: shared() is one cluster per test process") {
  auto& a = pg_cluster::shared();
  auto& b = pg_cluster::shared();
  CHECK(&a == &b);
  CHECK(a.running());
  CHECK(a.psql("select 40 + 2") == "42\n");
}

TEST_CASE("pg_cluster: a test process killed with SIGKILL leaves no server behind") {
  // The child starts a cluster, reports its port, postmaster and directory, and waits to
  // be killed: no destructor runs, the watchdog has to clean up.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    std::string line;
    try {
      pg_cluster pg;
      line = std::to_string(pg.port()) + " " + std::to_string(pg.postmaster_pid()) + " " +
             pg.dir().string() + "\n";
      [[maybe_unused]] auto n = ::write(fds[1], line.data(), line.size());
      for (;;) ::pause();
    } catch (const std::exception& e) {
      line = std::string("error ") + e.what() + "\n";
      [[maybe_unused]] auto n = ::write(fds[1], line.data(), line.size());
    }
    ::_exit(1);
  }
  ::close(fds[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; got.find('\n') == std::string::npos && (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  REQUIRE_MESSAGE(got.rfind("error", 0) != 0, got);
  int port = 0;
  long postmaster = 0;
  char dir[512] = {};
  REQUIRE(std::sscanf(got.c_str(), "%d %ld %511s", &port, &postmaster, dir) == 3);
  CHECK(port_open(port));

  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(eventually([&] { return !port_open(port); }));
  CHECK(eventually([&] { return process_gone(static_cast<pid_t>(postmaster)); }));
  CHECK(eventually([&] { return !fs::exists(dir); }));
}
