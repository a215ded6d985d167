#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "actors/agent/app_runner.hpp"
#include "core/digest.hpp"
#include "core/error.hpp"

using namespace spiderhub;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Collects the runner's events (called on its thread).
struct recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<protocol::application_started> started;
  std::vector<protocol::application_exited> exited;
  std::string out;

  actors::app_events events() {
    actors::app_events ev;
    ev.started = [this](protocol::application_started a) {
      std::lock_guard l(mu);
      started.push_back(a);
      cv.notify_all();
    };
    ev.exited = [this](protocol::application_exited e) {
      std::lock_guard l(mu);
      exited.push_back(e);
      cv.notify_all();
    };
    ev.log = [this](protocol::application_log l) {
      std::lock_guard lock(mu);
      if (l.stream == "stdout")
        out += l.text;
    };
    return ev;
  }
  protocol::application_exited wait_exit(std::size_t n = 1) {
    std::unique_lock l(mu);
    REQUIRE(cv.wait_for(l, 20s, [&] { return exited.size() >= n; }));
    return exited[n - 1];
  }
  protocol::application_started wait_start() {
    std::unique_lock l(mu);
    REQUIRE(cv.wait_for(l, 20s, [&] { return !started.empty(); }));
    return started.front();
  }
};

// A package folder with run.sh, packed with the system tar into a .tar.gz.
struct fixture {
  fs::path dir;
  std::string package, sha;
  explicit fixture(const std::string& script) {
    dir = fs::temp_directory_path() / ("spiderhub-apprunner-" + std::to_string(::getpid()) + "-" +
                                       core::new_guid().substr(0, 8));
    fs::create_directories(dir / "src");
    std::ofstream(dir / "src" / "run.sh") << "#!/bin/sh\n" << script;
    package = (dir / "pkg.tar.gz").string();
    auto cmd = "tar -C '" + (dir / "src").string() + "' -czf '" + package + "' run.sh";
    REQUIRE(std::system(cmd.c_str()) == 0);
    sha = core::sha256_hex(slurp(package));
  }
  ~fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  actors::app_runner_options options(int max_processes = 2) const {
    actors::app_runner_options o;
    o.work_dir = (dir / "projects").string();
    o.log_dir = (dir / "logs").string();
    o.cache_dir = (dir / "cache").string();
    o.exit_grace = 300ms;
    o.max_process_count = max_processes;
    o.node_id = "node-under-test";
    o.tail_interval = 50ms;
    o.allow_root = true;  // the unit tests run as root; containment has its own cases
    auto url = "file://" + package;
    o.package_url = [url](const std::string&) { return url; };
    return o;
  }
  protocol::run_application spec(const std::string& args = "") const {
    protocol::run_application r;
    r.job_id = "job-1";
    r.identity = core::new_guid();
    r.package = "pkg";
    r.application = "run.sh";
    r.arguments = args;
    r.package_sha256 = sha;
    return r;
  }
};

bool alive(pid_t pid) {
  // A zombie (reparented, not reaped in a container) counts as dead.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line))
    return false;
  auto close = line.rfind(')');
  return close != std::string::npos && line.substr(close + 2, 1) != "Z";
}

} // namespace

TEST_CASE("app_runner: runs the package's program with its arguments and environment") {
  fixture f("echo \"id=$SPIDERHUB_IDENTITY job=$SPIDERHUB_JOB_ID node=$SPIDERHUB_NODE_ID\"\n"
            "echo \"args=$1|$2\"\necho oops >&2\nexit 7\n");
  recorder rec;
  actors::app_runner runner(f.options(), rec.events());
  runner.start();
  auto spec = f.spec("'two words' x");
  runner.run(spec);
  auto e = rec.wait_exit();
  CHECK(e.identity == spec.identity);
  CHECK(e.exit_code == 7);
  CHECK(e.reason.empty());
  CHECK(rec.started.size() == 1);
  auto out = slurp(fs::path(f.dir) / "logs" / spec.identity / "stdout.log");
  CHECK(out == "id=" + spec.identity + " job=job-1 node=node-under-test\nargs=two words|x\n");
  CHECK(slurp(fs::path(f.dir) / "logs" / spec.identity / "stderr.log") == "oops\n");
  {
    std::lock_guard l(rec.mu);
    CHECK(rec.out == out);  // the tail sent to the broker is the same output
  }
  // The project folder is removed at exit, the package stays cached by hash.
  CHECK_FALSE(fs::exists(fs::path(f.dir) / "projects" / spec.identity));
  CHECK(fs::exists(fs::path(f.dir) / "cache" / (f.sha + ".pkg")));
  CHECK(runner.process_count() == 0);
}

TEST_CASE("app_runner: refuses beyond maxProcessCount, on a wrong hash and a missing program") {
  fixture f("sleep 30\n");
  recorder rec;
  actors::app_runner runner(f.options(1), rec.events());
  runner.start();
  auto first = f.spec();
  runner.run(first);
  rec.wait_start();
  auto second = f.spec();
  runner.run(second);
  auto refused = rec.wait_exit(1);
  CHECK(refused.identity == second.identity);
  CHECK(refused.exit_code == -1);
  CHECK(refused.reason.find("maxProcessCount is 1") != std::string::npos);
  runner.exit(first.identity);
  auto stopped = rec.wait_exit(2);
  CHECK(stopped.identity == first.identity);
  CHECK(stopped.exit_code == 128 + SIGTERM);
  CHECK(stopped.reason == "stopped by Exit");

  auto bad_hash = f.spec();
  bad_hash.package_sha256 = std::string(64, 'a');
  fs::remove_all(fs::path(f.dir) / "cache");
  runner.run(bad_hash);
  auto e = rec.wait_exit(3);
  CHECK(e.exit_code == -1);
  CHECK(e.reason.find("sha256 mismatch") != std::string::npos);
  CHECK_FALSE(fs::exists(fs::path(f.dir) / "cache" / (bad_hash.package_sha256 + ".pkg")));

  auto missing = f.spec();
  missing.application = "../run.sh";
  runner.run(missing);
  e = rec.wait_exit(4);
  CHECK(e.exit_code == -1);
  CHECK(e.reason.find("must be a path inside the package") != std::string::npos);
}

TEST_CASE("app_runner: Exit kills the whole process tree, SIGKILL after the grace period") {
  // The shell ignores SIGTERM and leaves a grandchild: only the group SIGKILL ends both.
  fixture f("trap '' TERM\nsleep 60 &\necho $! > \"$1\"\nwait\nwait\n");
  recorder rec;
  actors::app_runner runner(f.options(), rec.events());
  runner.start();
  auto pid_file = f.dir / "child.pid";
  auto spec = f.spec(pid_file.string());
  runner.run(spec);
  auto started = rec.wait_start();
  for (int i = 0; i < 200 && slurp(pid_file).empty(); ++i)
    std::this_thread::sleep_for(10ms);
  auto child = static_cast<pid_t>(std::stol(slurp(pid_file)));
  CHECK(alive(started.pid));
  CHECK(alive(child));
  auto t0 = std::chrono::steady_clock::now();
  runner.exit(spec.identity);
  auto e = rec.wait_exit();
  CHECK(e.exit_code == 128 + SIGKILL);
  CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);  // the grace was given
  for (int i = 0; i < 100 && alive(child); ++i)
    std::this_thread::sleep_for(10ms);
  CHECK_FALSE(alive(child));
}

TEST_CASE("app_runner: arguments split like a shell without running one") {
  using actors::split_arguments;
  CHECK(split_arguments("") == std::vector<std::string>{});
  CHECK(split_arguments("  a  b\tc ") == std::vector<std::string>{"a", "b", "c"});
  CHECK(split_arguments("'x y' \"p \\\"q\\\"\" z\\ w") ==
        std::vector<std::string>{"x y", "p \"q\"", "z w"});
  CHECK(split_arguments("'' a") == std::vector<std::string>{"", "a"});
  CHECK(split_arguments("$(rm -rf /) ; ls") ==
        std::vector<std::string>{"$(rm", "-rf", "/)", ";", "ls"});
  CHECK_THROWS_AS(split_arguments("'open"), core::input_error);
}

TEST_CASE("app_runner: a node running as root refuses packages unless told whom to run them as") {
  if (::geteuid() != 0)
    return;  // only a root node switches users
  fixture f("echo ran\n");
  recorder rec;
  auto o = f.options();
  o.allow_root = false;
  actors::app_runner runner(o, rec.events());
  runner.start();
  runner.run(f.spec());
  auto e = rec.wait_exit();
  CHECK(e.exit_code == -1);
  CHECK(e.reason.find("runs as root and applications.run_as is not set") != std::string::npos);
  o.run_as = "no-such-user-here";
  actors::app_runner unknown(o, rec.events());
  unknown.start();
  unknown.run(f.spec());
  CHECK(rec.wait_exit(2).reason.find("user 'no-such-user-here' does not exist") !=
        std::string::npos);
}

TEST_CASE("app_runner: packages run as the unprivileged user, cannot read the node's secrets") {
  if (::geteuid() != 0)
    return;
  fixture f("id -u\n"
            "if cat \"$1\" >/dev/null 2>&1; then echo READ; else echo DENIED; fi\n"
            "touch own-file && echo WROTE\n"
            "ulimit -n\n"
            "pwd\n"
            "if touch /escape 2>/dev/null || touch /usr/escape 2>/dev/null; then echo ESCAPED; "
            "else echo CONFINED; fi\n"
            "if [ -e \"$2\" ]; then echo SEES-NODE-DIR; else echo NODE-DIR-HIDDEN; fi\n");
  auto secret = f.dir / "node.yaml";
  std::ofstream(secret) << "token: node-secret\n";
  fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  recorder rec;
  auto o = f.options();
  o.allow_root = false;
  o.run_as = "nobody";
  o.max_open_files = 77;
  actors::app_runner runner(o, rec.events());
  runner.start();
  auto spec = f.spec("'" + secret.string() + "' '" + (f.dir / "logs").string() + "'");
  runner.run(spec);
  auto e = rec.wait_exit();
  CHECK(e.exit_code == 0);
  auto out = slurp(fs::path(f.dir) / "logs" / spec.identity / "stdout.log");
  // In its own root (mount namespaces work where the tests run as root): /work is its
  // directory, nothing of the node's is there, the system directories are read-only.
  CHECK(out == "65534\nDENIED\nWROTE\n77\n/work\nCONFINED\nNODE-DIR-HIDDEN\n");
  CHECK_FALSE(fs::exists(f.dir / "projects" / (spec.identity + ".root")));
}

TEST_CASE("app_runner: a package is stopped at its memory limit") {
  if (::geteuid() != 0)
    return;
  fixture f("exec python3 -c \"b = [bytearray(8 << 20) for _ in range(64)]; print('ALLOCATED')\"\n");
  recorder rec;
  auto o = f.options();
  o.allow_root = false;
  o.run_as = "nobody";
  o.max_memory_mb = 96;  // python starts in ~10 MiB; 64 x 8 MiB is 512 MiB
  actors::app_runner runner(o, rec.events());
  runner.start();
  auto spec = f.spec();
  runner.run(spec);
  auto e = rec.wait_exit();
  auto out = slurp(fs::path(f.dir) / "logs" / spec.identity / "stdout.log");
  CHECK(out.find("ALLOCATED") == std::string::npos);
  CHECK(e.exit_code != 0);
  std::error_code ec;
  bool cgroup = fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes", ec) ||
                fs::exists("/sys/fs/cgroup/cgroup.controllers", ec);
  MESSAGE("memory limit: exit ", e.exit_code, " (", e.reason, "), cgroup ", cgroup);
  if (cgroup && e.exit_code == 137)
    CHECK(e.reason == "killed at its memory limit of 96 MiB");
}
