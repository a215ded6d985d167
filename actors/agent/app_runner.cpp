#include "actors/agent/app_runner.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/process/args.hpp>
#include <boost/process/async_pipe.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/start_dir.hpp>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "core/digest.hpp"
#include "core/error.hpp"
#include "core/rotating_log.hpp"
#include "core/text.hpp"

namespace spiderhub::actors {
namespace {

namespace bp = boost::process;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using namespace spiderhub::protocol;

// In the child before exec: setpgid(0, 0), so the run's whole tree shares one process
// group and Exit reaches grandchildren too; and every descriptor above stderr is closed,
// so the application inherits none of the node's sockets or files. Passed last, after
// the stdio redirections are in place. Only async-signal-safe calls (after fork).
struct child_setup : bp::extend::handler {
  // The child's complete environment, built before the fork. (Boost 1.74's
  // environment::operator[] reads past the end of shorter entries: ASan caught it.)
  char** envp = nullptr;
  // Containment, all prepared before the fork: the memory cgroup's process list to join,
  // resource limits, and the user to become (uid 0 = stay).
  const char* cgroup_procs = nullptr;
  rlim_t max_as = 0, max_nproc = 0, max_nofile = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // Isolation (set: new_root): a private mount namespace whose root is `new_root`, with
  // the system's directories bound read-only, the project directory at /work, a fresh
  // /proc and a small /tmp; the program starts in /work and cannot reach the node's files.
  const char* new_root = nullptr;
  const std::vector<std::pair<std::string, std::string>>* ro_binds = nullptr;  // (src, dst)
  const char* work_src = nullptr;
  const char* work_dst = nullptr;
  const char* dev_dst = nullptr;
  const char* proc_dst = nullptr;
  const char* tmp_dst = nullptr;
  template <class Executor> void on_exec_setup(Executor& exec) const {
    exec.env = envp;
    ::setpgid(0, 0);
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
      long max = ::sysconf(_SC_OPEN_MAX);
      for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); ++fd)
        ::close(static_cast<int>(fd));
    }
    if (cgroup_procs) {
      // Join before exec, so nothing the program allocates escapes the limit.
      char pid[24];
      int n = 0;
      for (auto v = static_cast<unsigned long>(::getpid()); v > 0 || n == 0; v /= 10)
        pid[n++] = static_cast<char>('0' + v % 10);
      char text[24];
      for (int i = 0; i < n; ++i)
        text[i] = pid[n - 1 - i];
      int fd = ::open(cgroup_procs, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, text, static_cast<std::size_t>(n)) != n)
        ::_exit(125);
      ::close(fd);
    }
    auto limit = [](int resource, rlim_t value) {
      if (value == 0)
        return;
      rlimit r{value, value};
      if (::setrlimit(resource, &r) != 0)
        ::_exit(125);
    };
    if (new_root) {
      if (::unshare(CLONE_NEWNS) != 0 ||
          ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        ::_exit(125);
      for (auto& [src, dst] : *ro_binds)
        if (::mount(src.c_str(), dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
            ::mount(nullptr, dst.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID,
                    nullptr) != 0)
          ::_exit(125);
      if (::mount("/dev", dev_dst, nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
          ::mount(work_src, work_dst, nullptr, MS_BIND, nullptr) != 0 ||
          ::mount("proc", proc_dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0 ||
          ::mount("tmpfs", tmp_dst, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777") != 0 ||
          ::chroot(new_root) != 0 || ::chdir("/work") != 0)
        ::_exit(125);
    }
    limit(RLIMIT_AS, max_as);
    limit(RLIMIT_NPROC, max_nproc);
    limit(RLIMIT_NOFILE, max_nofile);
    if (uid != 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)
        ::_exit(125);
      if (::setuid(0) == 0)  // must not be able to come back
        ::_exit(125);
    }
  }
};

// Top-level directories of the system a run's own root offers (read-only binds of the real
// ones, or the same symlinks where they are links into /usr).
constexpr const char* system_dir_names[] = {"usr", "etc",   "bin",   "sbin",
                                             "lib", "lib32", "lib64", "libx32"};

// A memory cgroup per run, when the node may make one: v2 (a "spiderhub" subtree of the
// unified hierarchy with the memory controller) or v1 (the memory hierarchy).
struct memory_cgroups {
  std::string base;  // "" = none
  bool v2 = false;

  static bool write_file(const fs::path& p, const std::string& text) {
    std::ofstream f(p);
    f << text;
    f.flush();
    return static_cast<bool>(f);
  }

  void find(const std::string& configured) {
    if (configured == "-")
      return;
    std::error_code ec;
    auto try_v2 = [&](const fs::path& root) {
      std::ifstream c(root / "cgroup.controllers");
      std::string controllers;
      std::getline(c, controllers);
      if (controllers.find("memory") == std::string::npos)
        return false;
      write_file(root / "cgroup.subtree_control", "+memory");
      auto dir = root / "spiderhub";
      fs::create_directories(dir, ec);
      if (ec || !write_file(dir / "cgroup.subtree_control", "+memory"))
        return false;
      base = dir.string();
      v2 = true;
      return true;
    };
    auto try_v1 = [&](const fs::path& root) {
      if (!fs::exists(root / "memory.limit_in_bytes", ec))
        return false;
      auto dir = root / "spiderhub";
      fs::create_directories(dir, ec);
      if (ec || !fs::exists(dir / "memory.limit_in_bytes", ec))
        return false;
      base = dir.string();
      return true;
    };
    if (!configured.empty()) {
      if (!try_v2(configured) && !try_v1(configured))
        spdlog::warn("node: applications.cgroup_root {} has no usable memory controller",
                     configured);
      return;
    }
    if (!try_v2("/sys/fs/cgroup") && !try_v2("/sys/fs/cgroup/unified"))
      try_v1("/sys/fs/cgroup/memory");
  }

  /// The run's cgroup with `bytes` as its limit: its process list, or "" when none.
  std::string make(const std::string& identity, std::int64_t bytes) const {
    if (base.empty())
      return {};
    std::error_code ec;
    auto dir = fs::path(base) / identity;
    fs::create_directories(dir, ec);
    bool ok = !ec && (v2 ? write_file(dir / "memory.max", std::to_string(bytes)) &&
                             write_file(dir / "memory.swap.max", "0")
                         : write_file(dir / "memory.limit_in_bytes", std::to_string(bytes)));
    if (!v2)  // swap accounting may be off: then this file does not exist
      write_file(dir / "memory.memsw.limit_in_bytes", std::to_string(bytes));
    if (!ok) {
      spdlog::warn("node: cannot set a memory limit in {}: the run gets RLIMIT_AS only",
                   dir.string());
      fs::remove(dir, ec);
      return {};
    }
    return (dir / "cgroup.procs").string();
  }

  /// Removes the run's cgroup (empty once its processes are gone); whether it was
  /// OOM-killed there.
  bool remove(const std::string& identity) const {
    if (base.empty())
      return false;
    auto dir = fs::path(base) / identity;
    bool oom = false;
    std::ifstream ev(dir / (v2 ? "memory.events" : "memory.oom_control"));
    for (std::string key; ev >> key;) {
      std::int64_t value = 0;
      ev >> value;
      if (key == "oom_kill" && value > 0)
        oom = true;
    }
    std::error_code ec;
    fs::remove(dir, ec);
    return oom;
  }
};

int decode_wait_status(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return status;
}

struct stream_state {
  std::unique_ptr<bp::async_pipe> pipe;
  std::unique_ptr<core::rotating_log> log;
  std::array<char, 16384> buf{};
  std::string tail;                 // output not yet sent to the broker
  std::uint64_t skipped = 0;        // bytes dropped from the tail (the log file has them)
  bool open = false;
};

struct proc {
  run_application spec;
  enum class phase { preparing, running, ending } state = phase::preparing;
  std::string project_dir;
  std::string exe;
  std::string prepare_error;
  std::unique_ptr<bp::child> child;
  pid_t pid = 0;
  stream_state out, err;
  bool exit_requested = false;
  std::string exit_reason;
  bool term_sent = false;
  steady::time_point kill_at{};
  int exit_code = 0;
  steady::time_point ended_at{};
};

// True when process `pid` carries SPIDERHUB_IDENTITY=<identity> in its environment: a
// recycled pid belonging to someone else is never killed.
bool runs_identity(pid_t pid, const std::string& identity) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string want = "SPIDERHUB_IDENTITY=" + identity;
  std::size_t pos = 0;
  while (pos < env.size()) {
    auto end = env.find('\0', pos);
    if (end == std::string::npos)
      end = env.size();
    if (env.compare(pos, end - pos, want) == 0)
      return true;
    pos = end + 1;
  }
  return false;
}

// Applications left running by a node that was killed: their process groups are
// recorded as log_dir/{identity}/pgid.
void kill_orphans(const std::string& log_dir) {
  std::error_code ec;
  for (auto& e : fs::directory_iterator(log_dir, ec)) {
    auto pgid_file = e.path() / "pgid";
    if (!fs::exists(pgid_file, ec))
      continue;
    pid_t pgid = 0;
    std::ifstream(pgid_file) >> pgid;
    auto identity = e.path().filename().string();
    // The leader may be gone while its children live on: look at every process.
    int killed = 0;
    for (auto& pe : fs::directory_iterator("/proc", ec)) {
      auto name = pe.path().filename().string();
      if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
        continue;
      std::ifstream stat(pe.path() / "stat");
      std::string line;
      std::getline(stat, line);
      auto close = line.rfind(')');  // comm may hold spaces and parentheses
      if (close == std::string::npos)
        continue;
      std::istringstream rest(line.substr(close + 1));
      std::string state;
      long ppid = 0, pgrp = 0;
      rest >> state >> ppid >> pgrp;
      auto pid = static_cast<pid_t>(std::stol(name));
      if (pgrp == pgid && pgid > 1 && runs_identity(pid, identity) && ::kill(pid, SIGKILL) == 0)
        ++killed;
    }
    if (killed > 0)
      spdlog::warn("node: killed {} process(es) of run {} left by a previous node process",
                   killed, identity);
    fs::remove(pgid_file, ec);
  }
}

} // namespace

struct app_runner::impl : std::enable_shared_from_this<impl> {
  app_runner_options opts;
  app_events events;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  asio::steady_timer timer{io};
  std::thread thread;
  std::map<std::string, std::shared_ptr<proc>> procs;  // io thread only
  std::atomic<int> count{0};
  std::atomic<bool> stopping{false};
  mutable std::mutex live_mu;
  std::map<std::string, int> live;                     // identity -> pid
  std::mutex downloads_mu;
  std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> downloads;
  steady::time_point last_tail = steady::now();
  // Containment, settled by contain() at start.
  memory_cgroups cgroups;
  uid_t run_uid = 0;
  gid_t run_gid = 0;
  std::string refusal;  // set: every run is refused with this reason
  bool isolate = false;  // runs get their own root (see child_setup)
  std::vector<std::pair<std::string, std::string>> system_dirs;  // bound read-only

  // Whether this process may make mount namespaces (a child tries and reports).
  static bool can_isolate() {
    pid_t pid = ::fork();
    if (pid == 0)
      ::_exit(::unshare(CLONE_NEWNS) == 0 &&
                  ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0
                ? 0
                : 1);
    int status = 0;
    return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
  }

  // The run's root: the system's top-level directories (bound read-only in the child;
  // top-level symlinks such as /bin -> usr/bin copied), dev, proc, tmp and work.
  void make_root(const fs::path& root) {
    std::error_code ec;
    fs::create_directories(root, ec);
    for (const char* d : {"dev", "proc", "tmp", "work"})
      fs::create_directories(root / d, ec);
    for (const char* name : system_dir_names) {
      fs::path src = fs::path("/") / name;
      if (fs::is_symlink(src, ec)) {
        fs::create_symlink(fs::read_symlink(src, ec), root / name, ec);
      } else if (fs::is_directory(src, ec)) {
        fs::create_directories(root / name, ec);
      }
    }
    fs::permissions(root, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec,
                    fs::perm_options::replace, ec);
  }

  void contain() {
    bool root = ::geteuid() == 0;
    if (!opts.run_as.empty()) {
      passwd pw{};
      passwd* found = nullptr;
      std::vector<char> buf(16384);
      if (::getpwnam_r(opts.run_as.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) {
        refusal = "refused: applications.run_as user '" + opts.run_as + "' does not exist here";
      } else if (found->pw_uid == 0 && !opts.allow_root) {
        refusal = "refused: applications.run_as is root (set applications.allow_root: true to "
                  "allow it)";
      } else if (!root && found->pw_uid != ::geteuid()) {
        refusal = "refused: the node does not run as root, so it cannot run packages as '" +
                  opts.run_as + "'";
      } else if (root) {
        run_uid = found->pw_uid;
        run_gid = found->pw_gid;
      }
    } else if (root && !opts.allow_root) {
      refusal = "refused: the node runs as root and applications.run_as is not set (name an "
                "unprivileged user, or set applications.allow_root: true)";
    }
    if (root)
      cgroups.find(opts.cgroup_root);
    if (root && run_uid != 0 && opts.isolate) {
      isolate = can_isolate();
      if (!isolate)
        spdlog::warn("node: cannot make mount namespaces here: packages see the filesystem as "
                     "{} does (applications.isolate needs CAP_SYS_ADMIN)", opts.run_as);
      for (const char* name : system_dir_names) {
        std::error_code ec;
        auto src = fs::path("/") / name;
        if (!fs::is_symlink(src, ec) && fs::is_directory(src, ec))
          system_dirs.emplace_back(src.string(), name);
      }
    }
    if (!refusal.empty()) {
      spdlog::warn("node: application runs will be {}", refusal);
      return;
    }
    spdlog::info("node: applications run as {}{}; memory {} MiB ({}), {} processes, {} open files",
                 run_uid ? opts.run_as : std::string(root ? "root" : "the node's user"),
                 isolate ? " in their own root (their directory at /work)" : "",
                 opts.max_memory_mb,
                 cgroups.base.empty() ? "RLIMIT_AS only, no memory cgroup"
                                      : (cgroups.v2 ? "cgroup v2 " : "cgroup v1 ") + cgroups.base,
                 opts.max_processes, opts.max_open_files);
  }

  // ---- package download and extraction (download threads) ------------------------

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* d = static_cast<std::pair<FILE*, core::sha256_stream*>*>(user);
    auto len = size * n;
    d->second->update({data, len});
    return std::fwrite(data, 1, len, d->first);
  }
  static int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<impl*>(user)->stopping.load() ? 1 : 0;
  }

  // Returns the cached package file for `r`, downloading and verifying it when missing.
  std::string ensure_package(const run_application& r) {
    if (r.package_sha256.size() != 64)
      throw core::input_error("package " + r.package + ": the broker sent no sha256 to verify it");
    std::error_code ec;
    fs::create_directories(opts.cache_dir, ec);
    auto final_path = fs::path(opts.cache_dir) / (r.package_sha256 + ".pkg");
    if (fs::exists(final_path, ec)) {
      fs::last_write_time(final_path, fs::file_time_type::clock::now(), ec);  // LRU
      return final_path.string();
    }
    auto part = fs::path(opts.cache_dir) / ("." + r.package_sha256 + "." + core::new_guid() + ".part");
    FILE* f = std::fopen(part.c_str(), "wb");
    if (!f)
      throw std::runtime_error("cannot write " + part.string());
    core::sha256_stream hash;
    std::pair<FILE*, core::sha256_stream*> sink{f, &hash};
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    auto url = opts.package_url(r.package);
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, &impl::on_body);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    if (!opts.tls_verify) {
      curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(curl.get(), CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (!opts.tls_ca_file.empty()) {
      curl_easy_setopt(curl.get(), CURLOPT_CAINFO, opts.tls_ca_file.c_str());
    }
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(opts.download_timeout.count()));
    curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(curl.get(), CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(opts.max_package_bytes));
    curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION, &impl::on_progress);
    curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, this);
    auto rc = curl_easy_perform(curl.get());
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    bool wrote = std::fclose(f) == 0;
    auto fail = [&](const std::string& why) {
      fs::remove(part, ec);
      throw std::runtime_error("package " + r.package + ": " + why);
    };
    if (rc != CURLE_OK)
      fail(std::string("download failed: ") + curl_easy_strerror(rc));
    bool local = url.rfind("file://", 0) == 0;  // a package on local disk (tests, air-gapped)
    if (status != 200 && !(local && status == 0))
      fail("download failed: HTTP " + std::to_string(status));
    if (!wrote)
      fail("cannot write the download to " + part.string());
    auto got = hash.hex();
    if (got != r.package_sha256) {
      fs::remove(part, ec);
      throw core::input_error("package " + r.package + ": sha256 mismatch (expected " +
                              r.package_sha256 + ", downloaded " + got + ")");
    }
    fs::rename(part, final_path, ec);
    if (ec)
      fail("cannot keep the download: " + ec.message());
    evict_cache(final_path);
    return final_path.string();
  }

  // Keeps the package cache under cache_max_bytes, oldest use first, never `keep`.
  void evict_cache(const fs::path& keep) {
    std::error_code ec;
    std::vector<std::tuple<fs::file_time_type, std::uintmax_t, fs::path>> files;
    std::uintmax_t total = 0;
    for (auto& e : fs::directory_iterator(opts.cache_dir, ec)) {
      if (!e.is_regular_file(ec) || e.path().extension() != ".pkg")
        continue;
      auto size = e.file_size(ec);
      total += size;
      files.emplace_back(e.last_write_time(ec), size, e.path());
    }
    std::sort(files.begin(), files.end());
    for (auto& [time, size, path] : files) {
      if (total <= static_cast<std::uintmax_t>(opts.cache_max_bytes))
        break;
      if (path == keep)
        continue;
      fs::remove(path, ec);
      total -= size;
      spdlog::info("node: package cache over its limit, removed {}", path.string());
    }
  }

  void prepare(const std::shared_ptr<proc>& p) {
    try {
      auto pkg = ensure_package(p->spec);
      std::error_code ec;
      fs::remove_all(p->project_dir, ec);  // leftover of a crash
      fs::remove_all(p->project_dir + ".root", ec);
      core::extract_archive(pkg, p->project_dir, opts.limits);
      const auto& app = p->spec.application;
      if (app.empty() || app.front() == '/' || !core::stays_inside(app))
        throw core::input_error("application '" + app + "' must be a path inside the package");
      auto exe = fs::path(p->project_dir) / app;
      auto canonical_exe = fs::weakly_canonical(exe, ec);
      auto canonical_root = fs::canonical(p->project_dir, ec);
      if (!fs::is_regular_file(exe, ec) ||
          canonical_exe.string().rfind(canonical_root.string() + "/", 0) != 0)
        throw core::input_error("application '" + app + "' is not a file in package " +
                                p->spec.package);
      fs::permissions(exe, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, ec);
      p->exe = exe.string();
      if (isolate)
        make_root(p->project_dir + ".root");
      if (run_uid != 0) {
        // The run's user owns its files and nothing else of the node's.
        fs::permissions(p->project_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
        auto own = [&](const fs::path& f) {
          if (::lchown(f.c_str(), run_uid, run_gid) != 0)
            throw std::runtime_error("cannot give " + f.string() + " to " + opts.run_as);
        };
        // Deepest first and the run's directory last: the node keeps walking directories it
        // still owns, even without CAP_DAC_OVERRIDE (the systemd unit's bounding set).
        std::vector<fs::path> files;
        for (auto& e : fs::recursive_directory_iterator(p->project_dir))
          files.push_back(e.path());
        for (auto f = files.rbegin(); f != files.rend(); ++f)
          own(*f);
        own(p->project_dir);
      }
    } catch (const std::exception& e) {
      p->prepare_error = e.what();
    }
  }

  // ---- io thread -------------------------------------------------------------------

  void publish_live() {
    std::lock_guard lock(live_mu);
    live.clear();
    for (auto& [id, p] : procs)
      if (p->state == proc::phase::running)
        live[id] = p->pid;
  }

  void report_exit(const std::shared_ptr<proc>& p, int code, std::string reason) {
    flush_tail(*p);
    if (cgroups.remove(p->spec.identity) && reason.empty())
      reason = "killed at its memory limit of " + std::to_string(opts.max_memory_mb) + " MiB";
    std::error_code ec;
    fs::remove(fs::path(opts.log_dir) / p->spec.identity / "pgid", ec);
    if (!p->project_dir.empty()) {
      fs::remove_all(p->project_dir, ec);
      fs::remove_all(p->project_dir + ".root", ec);  // its mounts lived in the run's namespace
    }
    procs.erase(p->spec.identity);
    count = static_cast<int>(procs.size());
    publish_live();
    spdlog::info("node: application of run {} ended with {}{}{}", p->spec.identity, code,
                 reason.empty() ? "" : ": ", reason);
    prune_logs();
    if (events.exited)
      events.exited({p->spec.identity, code, std::move(reason)});
  }

  // Keeps the log folders of the most recent runs only.
  void prune_logs() {
    constexpr std::size_t keep = 100;
    std::error_code ec;
    std::vector<std::pair<fs::file_time_type, fs::path>> dirs;
    for (auto& e : fs::directory_iterator(opts.log_dir, ec))
      if (e.is_directory(ec) && !procs.count(e.path().filename().string()))
        dirs.emplace_back(e.last_write_time(ec), e.path());
    if (dirs.size() <= keep)
      return;
    std::sort(dirs.begin(), dirs.end());
    for (std::size_t i = 0; i + keep < dirs.size(); ++i)
      fs::remove_all(dirs[i].second, ec);
  }

  void on_run(run_application r) {
    if (stopping)
      return;
    if (procs.count(r.identity)) {
      spdlog::warn("node: run {} already has an application here; RunApplication ignored",
                   r.identity);
      return;
    }
    if (r.identity.empty() || !core::is_guid(r.identity)) {
      if (events.exited)
        events.exited({r.identity, -1, "refused: run identity is not a GUID"});
      return;
    }
    if (!refusal.empty()) {
      spdlog::warn("node: run {} {}", r.identity, refusal);
      if (events.exited)
        events.exited({r.identity, -1, refusal});
      return;
    }
    if (static_cast<int>(procs.size()) >= opts.max_process_count) {
      auto reason = "refused: this node already runs " + std::to_string(procs.size()) +
                    " application(s), its maxProcessCount is " +
                    std::to_string(opts.max_process_count);
      spdlog::warn("node: run {} {}", r.identity, reason);
      if (events.exited)
        events.exited({r.identity, -1, reason});
      return;
    }
    auto p = std::make_shared<proc>();
    p->spec = std::move(r);
    p->project_dir = (fs::path(opts.work_dir) / p->spec.identity).string();
    procs[p->spec.identity] = p;
    count = static_cast<int>(procs.size());
    spdlog::info("node: run {} of job {}: preparing package {} ({})", p->spec.identity,
                 p->spec.job_id, p->spec.package, p->spec.package_sha256);
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(downloads_mu);
    join_finished_downloads();
    downloads.emplace_back(std::thread([self = shared_from_this(), p, done] {
                             self->prepare(p);
                             asio::post(self->io, [self, p] { self->on_prepared(p); });
                             *done = true;
                           }),
                           done);
  }

  void join_finished_downloads() {
    for (auto it = downloads.begin(); it != downloads.end();) {
      if (*it->second) {
        it->first.join();
        it = downloads.erase(it);
      } else {
        ++it;
      }
    }
  }

  void on_prepared(const std::shared_ptr<proc>& p) {
    if (!p->prepare_error.empty())
      return report_exit(p, -1, p->prepare_error);
    if (p->exit_requested)
      return report_exit(p, -1, p->exit_reason + " before it started");
    std::vector<std::string> argv;
    try {
      argv = split_arguments(p->spec.arguments);
      std::vector<std::string> env_strings;
      for (char** e = environ; e && *e; ++e) {
        std::string_view entry(*e);
        if (entry.rfind("SPIDERHUB_JOB_ID=", 0) != 0 && entry.rfind("SPIDERHUB_IDENTITY=", 0) != 0 &&
            entry.rfind("SPIDERHUB_NODE_ID=", 0) != 0)
          env_strings.emplace_back(entry);
      }
      env_strings.push_back("SPIDERHUB_JOB_ID=" + p->spec.job_id);
      env_strings.push_back("SPIDERHUB_IDENTITY=" + p->spec.identity);
      env_strings.push_back("SPIDERHUB_NODE_ID=" + opts.node_id);
      std::vector<char*> envp;
      for (auto& e : env_strings)
        envp.push_back(e.data());
      envp.push_back(nullptr);
      child_setup setup;
      setup.envp = envp.data();
      auto procs_file = cgroups.make(p->spec.identity, opts.max_memory_mb << 20);
      if (!procs_file.empty())
        setup.cgroup_procs = procs_file.c_str();
      if (opts.max_memory_mb > 0)
        setup.max_as = static_cast<rlim_t>(opts.max_memory_mb) * 2 << 20;
      setup.max_nproc = static_cast<rlim_t>(std::max(0, opts.max_processes));
      setup.max_nofile = static_cast<rlim_t>(std::max(0, opts.max_open_files));
      setup.uid = run_uid;
      setup.gid = run_gid;
      auto root = p->project_dir + ".root";
      std::vector<std::pair<std::string, std::string>> binds;
      std::string work_dst = root + "/work", dev_dst = root + "/dev", proc_dst = root + "/proc",
                  tmp_dst = root + "/tmp";
      std::string exe = p->exe;
      if (isolate) {
        for (auto& [src, name] : system_dirs)
          binds.emplace_back(src, root + "/" + name);
        setup.new_root = root.c_str();
        setup.ro_binds = &binds;
        setup.work_src = p->project_dir.c_str();
        setup.work_dst = work_dst.c_str();
        setup.dev_dst = dev_dst.c_str();
        setup.proc_dst = proc_dst.c_str();
        setup.tmp_dst = tmp_dst.c_str();
        exe = "/work/" + p->spec.application;  // exec happens inside the new root
      }
      auto log_dir = fs::path(opts.log_dir) / p->spec.identity;
      p->out.log = std::make_unique<core::rotating_log>((log_dir / "stdout.log").string(),
                                                         opts.log_max_bytes, opts.log_files);
      p->err.log = std::make_unique<core::rotating_log>((log_dir / "stderr.log").string(),
                                                         opts.log_max_bytes, opts.log_files);
      p->out.pipe = std::make_unique<bp::async_pipe>(io);
      p->err.pipe = std::make_unique<bp::async_pipe>(io);
      p->child = std::make_unique<bp::child>(
        bp::exe = exe, bp::args = argv, bp::start_dir = p->project_dir,
        bp::std_out > *p->out.pipe, bp::std_err > *p->err.pipe, bp::std_in < bp::null, setup);
    } catch (const std::exception& e) {
      return report_exit(p, -1, std::string("cannot start ") + p->spec.application + ": " + e.what());
    }
    p->pid = p->child->id();
    p->state = proc::phase::running;
    // The group id survives a crash of this node: the next start kills what is left.
    std::ofstream(fs::path(opts.log_dir) / p->spec.identity / "pgid") << p->pid << '\n';
    p->out.open = p->err.open = true;
    read(p, p->out);
    read(p, p->err);
    publish_live();
    spdlog::info("node: run {}: started {} (pid {})", p->spec.identity, p->spec.application, p->pid);
    if (events.started)
      events.started({p->spec.identity, p->pid});
  }

  void read(const std::shared_ptr<proc>& p, stream_state& s) {
    s.pipe->async_read_some(
      asio::buffer(s.buf), [self = shared_from_this(), p, &s](const boost::system::error_code& ec,
                                                              std::size_t n) {
        if (n > 0) {
          std::string_view data(s.buf.data(), n);
          s.log->write(data);
          s.tail.append(data);
          if (s.tail.size() > self->opts.tail_max_bytes) {
            auto drop = s.tail.size() - self->opts.tail_max_bytes;
            s.skipped += drop;
            s.tail.erase(0, drop);
          }
        }
        if (ec) {
          s.open = false;
          return;
        }
        self->read(p, s);
      });
  }

  void flush_stream(proc& p, stream_state& s, const char* name) {
    if (s.tail.empty() || !events.log)
      return;
    std::string text;
    if (s.skipped > 0)
      text = "[... " + std::to_string(s.skipped) + " bytes not shown, see the node's log file]\n";
    text += core::sanitize_utf8(s.tail, true);
    s.tail.clear();
    s.skipped = 0;
    events.log({p.spec.identity, name, std::move(text)});
  }

  void flush_tail(proc& p) {
    flush_stream(p, p.out, "stdout");
    flush_stream(p, p.err, "stderr");
  }

  void signal_group(proc& p, int sig) {
    if (p.pid > 0)
      ::killpg(p.pid, sig);
  }

  void on_exit_request(const std::string& identity, std::string reason) {
    auto it = procs.find(identity);
    if (it == procs.end())
      return;
    auto& p = *it->second;
    if (p.exit_requested)
      return;
    p.exit_requested = true;
    p.exit_reason = std::move(reason);
    if (p.state == proc::phase::running) {
      // A node that is shutting down gives its runs at most 5 s (its service manager waits).
      auto grace = stopping ? std::min(opts.exit_grace, std::chrono::milliseconds(5000)) : opts.exit_grace;
      spdlog::info("node: run {}: SIGTERM to process group {}, SIGKILL in {} ms{}", identity, p.pid,
                   grace.count(), stopping ? " (the node is stopping)" : "");
      signal_group(p, SIGTERM);
      p.term_sent = true;
      p.kill_at = steady::now() + grace;
    }
  }

  void tick() {
    auto now = steady::now();
    std::vector<std::shared_ptr<proc>> snapshot;
    for (auto& [id, p] : procs)
      snapshot.push_back(p);
    for (auto& p : snapshot) {
      if (p->state == proc::phase::running) {
        std::error_code ec;
        if (p->child->running(ec)) {
          if (p->term_sent && now >= p->kill_at) {
            spdlog::warn("node: run {}: still running after the grace period, SIGKILL", p->spec.identity);
            signal_group(*p, SIGKILL);
            p->kill_at = now + std::chrono::hours(24);
          }
          continue;
        }
        // The main process ended: what is left of its group goes too.
        p->exit_code = decode_wait_status(p->child->native_exit_code());
        p->state = proc::phase::ending;
        p->ended_at = now;
        signal_group(*p, SIGTERM);
      }
      if (p->state == proc::phase::ending) {
        bool drained = !p->out.open && !p->err.open;
        if (!drained && now - p->ended_at < std::chrono::seconds(2))
          continue;
        if (!drained)
          signal_group(*p, SIGKILL);
        report_exit(p, p->exit_code, p->exit_requested ? p->exit_reason : std::string());
      }
    }
    if (now - last_tail >= opts.tail_interval) {
      last_tail = now;
      for (auto& [id, p] : procs)
        flush_tail(*p);
    }
    timer.expires_after(std::chrono::milliseconds(100));
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec)
        self->tick();
    });
  }
};

app_runner::app_runner(app_runner_options opts, app_events events)
  : impl_(std::make_shared<impl>()) {
  impl_->opts = std::move(opts);
  impl_->events = std::move(events);
}

app_runner::~app_runner() { stop(); }

void app_runner::start() {
  std::error_code ec;
  fs::create_directories(impl_->opts.work_dir, ec);
  fs::create_directories(impl_->opts.log_dir, ec);
  kill_orphans(impl_->opts.log_dir);
  impl_->contain();
  asio::post(impl_->io, [self = impl_] { self->tick(); });
  impl_->thread = std::thread([self = impl_] { self->io.run(); });
}

void app_runner::stop() {
  auto& d = *impl_;
  if (d.stopping.exchange(true) || !d.thread.joinable())
    return;
  asio::post(d.io, [self = impl_] {
    std::vector<std::string> ids;
    for (auto& [id, p] : self->procs)
      ids.push_back(id);
    for (auto& id : ids)
      self->on_exit_request(id, "node stopping");
  });
  auto deadline = steady::now() + std::min(d.opts.exit_grace, std::chrono::milliseconds(5000)) +
                  std::chrono::seconds(3);
  while (d.count > 0 && steady::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard lock(d.downloads_mu);
    for (auto& [t, done] : d.downloads)
      t.join();
    d.downloads.clear();
  }
  d.guard.reset();
  d.io.stop();
  d.thread.join();
  for (auto& [id, p] : d.procs) {
    if (p->state != proc::phase::preparing && p->pid > 0) {
      ::killpg(p->pid, SIGKILL);
      std::error_code ec;
      if (p->child)
        p->child->wait(ec);
    }
  }
  // Pending handlers hold the impl (shared_from_this): close what they wait on and let
  // them finish, or impl -> io_context -> handler -> impl would never be freed.
  boost::system::error_code ignored;
  for (auto& [id, p] : d.procs)
    for (auto* s : {&p->out, &p->err})
      if (s->pipe)
        s->pipe->close(ignored);
  d.timer.cancel();
  d.io.restart();
  d.io.poll();
  d.procs.clear();
}

void app_runner::run(run_application r) {
  asio::post(impl_->io, [self = impl_, r = std::move(r)]() mutable { self->on_run(std::move(r)); });
}

void app_runner::exit(const std::string& identity) {
  asio::post(impl_->io, [self = impl_, identity] { self->on_exit_request(identity, "stopped by Exit"); });
}

int app_runner::process_count() const { return impl_->count; }

std::vector<application_started> app_runner::running() const {
  std::lock_guard lock(impl_->live_mu);
  std::vector<application_started> out;
  for (auto& [id, pid] : impl_->live)
    out.push_back({id, pid});
  return out;
}

std::vector<std::string> split_arguments(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote == '\'') {
      if (c == '\'')
        quote = 0;
      else
        cur += c;
    } else if (quote == '"') {
      if (c == '"')
        quote = 0;
      else if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\'))
        cur += s[++i];
      else
        cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < s.size()) {
      cur += s[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word)
        out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote)
    throw core::input_error(std::string("arguments: unterminated ") + quote + " quote");
  if (in_word)
    out.push_back(std::move(cur));
  return out;
}

} // namespace spiderhub::actors
