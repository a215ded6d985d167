#include "support/pg_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace spiderhub::testing {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

const char* const install_hint = "install postgresql-15: bash scripts/setup";

bool executable(const fs::path& p) {
  return ::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p);
}

// $SPIDERHUB_PG_BINDIR, the Debian package's directory, then $PATH.
std::string find_bin(const std::string& name) {
  std::vector<fs::path> dirs;
  if (const char* d = std::getenv("SPIDERHUB_PG_BINDIR"); d && *d) dirs.emplace_back(d);
  dirs.emplace_back("/usr/lib/postgresql/15/bin");
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');)
      if (!d.empty()) dirs.emplace_back(d);
  }
  for (const auto& d : dirs)
    if (executable(d / name)) return (d / name).string();
  throw pg_cluster_error("pg_cluster: '" + name +
                         "' not found in $SPIDERHUB_PG_BINDIR, /usr/lib/postgresql/15/bin or "
                         "$PATH; " + install_hint);
}

struct binaries {
  std::string initdb, pg_ctl, psql, createdb;
};

const binaries& bins() {
  // Looked up once; a failed lookup throws and is retried by the next caller.
  static const binaries b{find_bin("initdb"), find_bin("pg_ctl"), find_bin("psql"),
                          find_bin("createdb")};
  return b;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The environment of every child: no PG* variable of the caller's (PGHOST, PGDATA,
// PGOPTIONS... would redirect or alter the programs), C locale, UTF-8 client encoding.
std::vector<std::string> child_env() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string v(*e);
    if (v.rfind("PG", 0) == 0 || v.rfind("LC_", 0) == 0 || v.rfind("LANG=", 0) == 0 ||
        v.rfind("LANGUAGE=", 0) == 0)
      continue;
    env.push_back(std::move(v));
  }
  env.emplace_back("LC_ALL=C");
  env.emplace_back("PGCLIENTENCODING=UTF8");
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Closes every descriptor from 3 up in a child before exec: the server is long-lived
// and must not keep the test's sockets or pipes open.
void close_from_3() {
  if (::close_range(3, ~0U, 0) == 0) return;
  long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = 3; fd < (max > 0 ? max : 65536); ++fd) ::close(static_cast<int>(fd));
}

struct identity {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

// In a forked child (async-signal-safe calls only): become the unprivileged user.
bool become(const identity& id) {
  if (!id.drop) return true;
  return ::setgroups(1, &id.gid) == 0 && ::setgid(id.gid) == 0 && ::setuid(id.uid) == 0;
}

struct run_result {
  int exit_code = -1;  // -1: killed by a signal or the timeout
  std::string out, err;
  std::string output() const { return out + err; }
};

// Runs argv (argv[0] an absolute path) with stdin /dev/null, capturing stdout and
// stderr, in its own process group, killed after `timeout`.
run_result run(std::vector<std::string> argv, const identity& id, const fs::path& cwd,
               std::chrono::seconds timeout = std::chrono::seconds(120)) {
  auto env = child_env();
  auto c_argv = c_strings(argv);
  auto c_env = c_strings(env);
  std::string c_cwd = cwd.string();
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw pg_cluster_error("pg_cluster: pipe: " + std::string(std::strerror(errno)));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw pg_cluster_error("pg_cluster: pipe: " + std::string(std::strerror(errno)));
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    close_from_3();
    if (::chdir(c_cwd.c_str()) != 0 || !become(id)) {
      const char msg[] = "pg_cluster: cannot chdir or drop privileges\n";
      [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
      ::_exit(126);
    }
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    const char msg[] = "pg_cluster: exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(devnull);
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    throw pg_cluster_error("pg_cluster: fork: " + std::string(std::strerror(fork_errno)));
  }
  run_result r;
  auto deadline = clock_type::now() + timeout;
  bool timed_out = false;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    r.err += "\npg_cluster: killed after " + std::to_string(timeout.count()) + " s";
    return r;
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A free TCP port on 127.0.0.1 (bound to 0, closed again; never 5432).
int free_port() {
  for (;;) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) throw pg_cluster_error("pg_cluster: socket: " + std::string(std::strerror(errno)));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    ::close(s);
    if (port < 0) throw pg_cluster_error("pg_cluster: no free loopback port");
    if (port != 5432) return port;
  }
}

// Whether a process exists and is not a zombie.
bool alive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] != 'Z' && line[close_paren + 2] != 'X';
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(line.substr(close_paren + 2));
    char state;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

pid_t read_postmaster_pid(const fs::path& data) {
  std::ifstream in(data / "postmaster.pid");
  long pid = 0;
  if (in >> pid && pid > 0) return static_cast<pid_t>(pid);
  return 0;
}

// Who runs initdb and the server: the caller, or as root `postgres` (else `nobody`).
identity server_identity() {
  identity id;
  if (::geteuid() != 0) return id;
  for (const char* name : {"postgres", "nobody"}) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(name, &pw, buf.data(), buf.size(), &found) == 0 && found) {
      id.drop = true;
      id.uid = pw.pw_uid;
      id.gid = pw.pw_gid;
      return id;
    }
  }
  throw pg_cluster_error(
      "pg_cluster: running as root and neither user 'postgres' nor 'nobody' exists to run "
      "initdb and the server as; " + std::string(install_hint));
}

// Where to make the temp dir: $TMPDIR (temp_directory_path) unless the server's user
// could not reach it (root's private dirs), its path has characters pg_ctl -o would
// split on, or the socket path would exceed sun_path (107 bytes); then /tmp.
fs::path temp_base(const identity& id) {
  std::error_code ec;
  fs::path base = fs::temp_directory_path(ec);
  if (ec) return "/tmp";
  const auto s = base.string();
  if (s.find_first_of(" \t\n'\"\\$`") != std::string::npos) return "/tmp";
  // base + "/spiderhub-pg-XXXXXX/sock/.s.PGSQL.65535"
  if (s.size() + 40 > 100) return "/tmp";
  if (id.drop) {
    for (fs::path p = base; !p.empty(); p = p.parent_path()) {
      struct stat st{};
      if (::stat(p.c_str(), &st) != 0 || !(st.st_mode & S_IXOTH)) return "/tmp";
      if (p == p.root_path()) break;
    }
  }
  return base;
}

// Stops the server and removes the directory when the test process dies without
// running destructors: a detached `sh` (own session, reparented away from the test
// process, so ctest's kill of the test's process tree spares it) blocks reading a pipe
// whose only write end the test process holds. EOF means the process is gone, or
// stop() already cleaned up and closed it. It runs as the caller (root may signal the
// server and must remove the directory from a parent only root can write): SIGQUIT to
// the postmaster is what pg_ctl stop -m immediate sends; SIGKILL after 10 s.
const char* const watchdog_script = R"sh(
read -r _ || :
d="$1"
p=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null)
case "$p" in ''|*[!0-9]*) p= ;; esac
if [ -n "$p" ] && grep -aq postgres "/proc/$p/cmdline" 2>/dev/null; then
  kill -QUIT "$p" 2>/dev/null
  i=0
  while [ -e "$d/data/postmaster.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  [ -e "$d/data/postmaster.pid" ] && kill -KILL "$p" 2>/dev/null && sleep 1
fi
rm -rf "$d"
)sh";

}  // namespace

pg_cluster::pg_cluster() {
  const auto t0 = clock_type::now();
  try {
    init_and_start();
  } catch (...) {
    cleanup_noexcept();
    throw;
  }
  start_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
}

pg_cluster::~pg_cluster() { cleanup_noexcept(); }

pg_cluster& pg_cluster::shared() {
  static pg_cluster cluster;  // constructed by the first call, destroyed at exit
  return cluster;
}

void pg_cluster::init_and_start() {
  const auto& b = bins();
  const identity id = server_identity();
  drop_privileges_ = id.drop;
  run_uid_ = id.uid;
  run_gid_ = id.gid;

  std::string tmpl = (temp_base(id) / "spiderhub-pg-XXXXXX").string();
  if (!::mkdtemp(tmpl.data()))
    throw pg_cluster_error("pg_cluster: mkdtemp " + tmpl + ": " + std::strerror(errno));
  dir_ = tmpl;
  fs::create_directory(socket_dir());
  ::chmod(socket_dir().c_str(), 0700);
  if (drop_privileges_) {
    if (::chown(dir_.c_str(), run_uid_, run_gid_) != 0 ||
        ::chown(socket_dir().c_str(), run_uid_, run_gid_) != 0)
      throw pg_cluster_error("pg_cluster: chown " + dir_.string() + ": " + std::strerror(errno));
  }
  spawn_watchdog();

  auto r = run({b.initdb, "-D", data_dir().string(), "-A", "trust", "--no-sync", "-U",
                superuser_, "-E", "UTF8", "--locale=C", "--no-instructions"},
               id, dir_);
  if (r.exit_code != 0)
    throw pg_cluster_error("pg_cluster: initdb failed (exit " + std::to_string(r.exit_code) +
                           "):\n" + r.output());
  start_server();
  create_database("spiderhub");
}

void pg_cluster::start_server() {
  const auto& b = bins();
  const identity id{drop_privileges_, run_uid_, run_gid_};
  const auto log_path = dir_ / "server.log";
  std::string last_error;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    std::error_code ec;
    fs::remove(log_path, ec);
    const std::string opts = "-k " + socket_dir().string() + " -h 127.0.0.1 -p " +
                             std::to_string(port_) +
                             " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
    auto r = run({b.pg_ctl, "-D", data_dir().string(), "-l", log_path.string(), "-w", "-t", "60",
                  "-o", opts, "start"},
                 id, dir_);
    if (r.exit_code == 0) {
      postmaster_pid_ = read_postmaster_pid(data_dir());
      if (postmaster_pid_ > 0) return;
      last_error = "no postmaster.pid after pg_ctl start";
      break;
    }
    // A server that did start (slowly) must not outlive the failure.
    if (pid_t pid = read_postmaster_pid(data_dir()); pid > 0) {
      postmaster_pid_ = pid;
      kill_server_processes();
    }
    const std::string server_log = slurp(log_path);
    last_error = r.output() + "\n--- server log ---\n" + server_log;
    // Another process took the port between free_port() and the bind: try another.
    if (server_log.find("already in use") == std::string::npos) break;
  }
  throw pg_cluster_error("pg_cluster: the server did not start:\n" + last_error);
}

void pg_cluster::spawn_watchdog() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw pg_cluster_error("pg_cluster: pipe: " + std::string(std::strerror(errno)));
  std::vector<std::string> argv = {"/bin/sh", "-c", watchdog_script, "spiderhub-pg-watchdog",
                                   dir_.string()};
  auto env = child_env();
  auto c_argv = c_strings(argv);
  auto c_env = c_strings(env);
  pid_t middle = ::fork();
  if (middle == 0) {
    // Double fork: the watchdog is nobody's child in the test's process tree.
    ::setsid();
    pid_t pid = ::fork();
    if (pid != 0) ::_exit(pid < 0 ? 1 : 0);
    ::dup2(fds[0], 0);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    close_from_3();
    if (::chdir("/") != 0) ::_exit(126);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(fds[0]);
  if (middle < 0) {
    ::close(fds[1]);
    throw pg_cluster_error("pg_cluster: fork: " + std::string(std::strerror(fork_errno)));
  }
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::close(fds[1]);
    throw pg_cluster_error("pg_cluster: could not start the watchdog process");
  }
  watchdog_fd_ = fds[1];
}

std::string pg_cluster::conninfo(const std::string& db) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + db + " user=" + superuser_;
}

void pg_cluster::create_database(const std::string& name) {
  if (!running()) throw pg_cluster_error("pg_cluster: create_database on a stopped cluster");
  auto r = run({bins().createdb, "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", superuser_,
                "--", name},
               identity{}, dir_);
  if (r.exit_code != 0)
    throw pg_cluster_error("pg_cluster: createdb " + name + " failed:\n" + r.output());
}

std::string pg_cluster::psql(const std::string& sql, const std::string& db) const {
  if (!running()) throw pg_cluster_error("pg_cluster: psql on a stopped cluster");
  auto r = run({bins().psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo(db),
                "-c", sql},
               identity{}, dir_);
  if (r.exit_code != 0)
    throw pg_cluster_error("pg_cluster: psql failed (exit " + std::to_string(r.exit_code) +
                           ") on: " + sql + "\n" + r.output());
  return r.out;
}

std::string pg_cluster::log() const { return slurp(dir_ / "server.log"); }

// SIGKILL to the postmaster and its children (each of which is its own process group
// leader), then waits for them to be gone.
void pg_cluster::kill_server_processes() {
  if (postmaster_pid_ <= 0) return;
  auto victims = children_of(postmaster_pid_);
  victims.push_back(postmaster_pid_);
  for (pid_t p : victims) ::kill(p, SIGKILL);
  const auto deadline = clock_type::now() + std::chrono::seconds(10);
  for (pid_t p : victims)
    while (alive(p) && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void pg_cluster::stop() {
  if (postmaster_pid_ > 0) {
    try {
      run({bins().pg_ctl, "-D", data_dir().string(), "-m", "immediate", "-w", "-t", "30", "stop"},
          identity{drop_privileges_, run_uid_, run_gid_}, dir_);
    } catch (const std::exception&) {
      // fall through to the signals
    }
    // pg_ctl -w returns once postmaster.pid is gone; the postmaster may still be exiting.
    const auto deadline = clock_type::now() + std::chrono::seconds(5);
    while (alive(postmaster_pid_) && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (alive(postmaster_pid_)) kill_server_processes();
    postmaster_pid_ = 0;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    dir_.clear();
  }
  if (watchdog_fd_ >= 0) {
    ::close(watchdog_fd_);  // wakes the watchdog, which finds nothing left to do
    watchdog_fd_ = -1;
  }
}

void pg_cluster::cleanup_noexcept() noexcept {
  try {
    stop();
  } catch (...) {
    if (postmaster_pid_ > 0) kill_server_processes();
    if (watchdog_fd_ >= 0) ::close(watchdog_fd_);  // the watchdog removes the rest
    watchdog_fd_ = -1;
  }
}

}  // namespace spiderhub::testing
