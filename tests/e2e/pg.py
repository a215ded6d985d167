"""Throwaway PostgreSQL 15 clusters for the end-to-end tests (standard library only).

    with Env(args, "pg_storage") as env, Postgres(env.dir) as pg:
        env.start_broker(extra_yaml=f"storage:\\n  postgres: '{pg.conninfo()}'\\n")
        pg.sql("select count(*) from jobs")          # psql -At stdout: "0\\n"
        pg.create_database("second")                 # isolation within one cluster

A cluster is a temp directory (under `parent`, e.g. the test's own temp dir), initdb'd
with trust authentication for the superuser `spiderhub`, encoding UTF8, locale C, served on
a random free port of 127.0.0.1 plus a private Unix socket directory, with durability off
(fsync, synchronous_commit, full_page_writes). It never touches the system cluster
(/var/lib/postgresql), port 5432 nor a non-loopback address.

As root, initdb and the server run as the user `postgres` (else `nobody`), which owns the
directory; clients (psql, the broker) may run as anyone.

The server is always stopped: stop() (pg_ctl stop -m immediate, then SIGKILL to the
postmaster's and its children's process groups if that fails) runs on leaving the `with`
block, at interpreter exit, and — when the test process is killed outright (ctest timeout,
SIGKILL) — from a watchdog shell in its own session that notices the test process is gone.

Binaries: $SPIDERHUB_PG_BINDIR, else /usr/lib/postgresql/15/bin, else $PATH.

Self-test: python3 tests/e2e/pg.py --self-test
"""
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

INSTALL_HINT = "install postgresql-15: bash scripts/setup"
DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"

# Stops the server and removes the directory once the write end of its stdin closes,
# i.e. when the test process is gone (or stop() has already cleaned up and closed it).
# It runs as we do (root may signal the server and must remove the directory from a
# parent only root can write): SIGQUIT to the postmaster is what pg_ctl stop -m immediate
# sends; SIGKILL after 10 s.
_WATCHDOG = r"""
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
"""


class PostgresError(RuntimeError):
    pass


def find_bin(name):
    dirs = []
    if os.environ.get("SPIDERHUB_PG_BINDIR"):
        dirs.append(os.environ["SPIDERHUB_PG_BINDIR"])
    dirs.append(DEFAULT_BINDIR)
    dirs += [d for d in os.environ.get("PATH", "").split(":") if d]
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise PostgresError(f"'{name}' not found in $SPIDERHUB_PG_BINDIR, {DEFAULT_BINDIR} or "
                        f"$PATH; {INSTALL_HINT}")


def _child_env():
    """No PG* variable of ours (PGHOST, PGDATA, PGOPTIONS... would redirect the programs),
    C locale, UTF-8 client encoding."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "LC_")) and k not in ("LANG", "LANGUAGE")}
    env["LC_ALL"] = "C"
    env["PGCLIENTENCODING"] = "UTF8"
    return env


def _server_account():
    """(uid, gid) to run initdb and the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    raise PostgresError("running as root and neither user 'postgres' nor 'nobody' exists to "
                        f"run initdb and the server as; {INSTALL_HINT}")


def _free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 5432:
            return port


def _port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid):
    """Exists and is not a zombie (a stopped server is reparented to init, which may
    reap it later)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X", "")


def _children(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(ppid):
            out.append(int(name))
    return out


def _usable_parent(parent, account):
    """The server's account must reach the directory, pg_ctl -o must not split its path
    and the socket path must fit sun_path (107 bytes); else the system temp dir."""
    parent = os.path.abspath(parent or tempfile.gettempdir())
    if any(c in parent for c in " \t\n'\"\\$`") or len(parent) + 40 > 100:
        return "/tmp"
    if account is not None:
        p = parent
        while True:
            try:
                if not os.stat(p).st_mode & 0o001:
                    return "/tmp"
            except OSError:
                return "/tmp"
            if p == "/":
                break
            p = os.path.dirname(p)
    return parent


class Postgres:
    """A throwaway cluster; a context manager (start on enter, stop on exit)."""

    def __init__(self, parent=None, user="spiderhub", db="spiderhub", timeout=60):
        self.parent = parent
        self.user = user
        self.db = db
        self.timeout = timeout
        self.dir = None
        self.port = None
        self.pid = None            # the postmaster
        self.start_seconds = None  # initdb + start + CREATE DATABASE
        self._watchdog_fd = None
        self._account = None

    # ---- lifecycle ----------------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.dir:
            tail = self.log()[-4000:]
            if tail:
                print(f"----- postgres log (tail) -----\n{tail}", file=sys.stderr)
        self.stop()
        return False

    def start(self):
        t0 = time.monotonic()
        self._bins = {n: find_bin(n) for n in ("initdb", "pg_ctl", "psql", "createdb")}
        self._account = _server_account()
        atexit.register(self.stop)
        try:
            self.dir = tempfile.mkdtemp(prefix="spiderhub-pg-",
                                        dir=_usable_parent(self.parent, self._account))
            os.mkdir(self.socket_dir, 0o700)
            if self._account:
                for p in (self.dir, self.socket_dir):
                    os.chown(p, *self._account)
            self._spawn_watchdog()
            r = self._run([self._bins["initdb"], "-D", self.data_dir, "-A", "trust",
                           "--no-sync", "-U", self.user, "-E", "UTF8", "--locale=C",
                           "--no-instructions"], as_server=True)
            if r.returncode != 0:
                raise PostgresError(f"initdb failed (exit {r.returncode}):\n"
                                    f"{r.stdout}{r.stderr}")
            self._start_server()
            self.create_database(self.db)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _start_server(self):
        last = ""
        for _ in range(5):
            self.port = _free_port()
            try:
                os.unlink(self.log_path)
            except FileNotFoundError:
                pass
            opts = (f"-k {self.socket_dir} -h 127.0.0.1 -p {self.port} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            r = self._run([self._bins["pg_ctl"], "-D", self.data_dir, "-l", self.log_path,
                           "-w", "-t", str(self.timeout), "-o", opts, "start"],
                          as_server=True)
            self.pid = self._postmaster_pid()
            if r.returncode == 0 and self.pid:
                return
            self._kill_server()  # one that started too slowly must not outlive us
            log = self.log()
            last = f"{r.stdout}{r.stderr}\n--- server log ---\n{log}"
            if "already in use" not in log:  # else the port was taken meanwhile: retry
                break
        raise PostgresError(f"the server did not start:\n{last}")

    def _spawn_watchdog(self):
        r, w = os.pipe()  # both ends close-on-exec (PEP 446); r is passed as its stdin
        try:
            # setsid -f: a new session, forked off so that the watchdog is no child of ours
            # and survives ctest killing our process tree.
            subprocess.run(["setsid", "-f", "/bin/sh", "-c", _WATCHDOG,
                            "spiderhub-pg-watchdog", self.dir],
                           stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd="/", env=_child_env(), check=True)
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self._watchdog_fd = w

    def stop(self):
        """pg_ctl stop -m immediate, SIGKILL to the server's process groups if that fails,
        then removes the directory. Idempotent."""
        if self.pid:
            try:
                self._run([self._bins["pg_ctl"], "-D", self.data_dir, "-m", "immediate", "-w",
                           "-t", "30", "stop"], as_server=True, timeout=40)
            except (OSError, subprocess.SubprocessError):
                pass
            deadline = time.monotonic() + 5
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            self._kill_server()
            self.pid = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._watchdog_fd is not None:
            os.close(self._watchdog_fd)  # wakes the watchdog; nothing is left for it
            self._watchdog_fd = None

    def _kill_server(self):
        """SIGKILL to the postmaster and its children; each is its own process group
        leader (postgres children call setsid), so each group is killed."""
        if not self.pid or not _alive(self.pid):
            return
        victims = _children(self.pid) + [self.pid]
        for p in victims:
            for kill in (os.killpg, os.kill):
                try:
                    kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.01)

    # ---- use ------------------------------------------------------------------------

    def conninfo(self, db=None):
        """libpq key/value connection string."""
        return f"host=127.0.0.1 port={self.port} dbname={db or self.db} user={self.user}"

    @property
    def dsn(self):
        """libpq URI of the default database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.db}"

    def sql(self, query, db=None):
        """Runs SQL with psql -X -At (ON_ERROR_STOP) and returns its stdout."""
        if not self.pid:
            raise PostgresError("sql() on a stopped cluster")
        r = self._run([self._bins["psql"], "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-d", self.conninfo(db), "-c", query])
        if r.returncode != 0:
            raise PostgresError(f"psql failed (exit {r.returncode}) on: {query}\n{r.stderr}")
        return r.stdout

    def create_database(self, name):
        if not self.pid:
            raise PostgresError("create_database() on a stopped cluster")
        r = self._run([self._bins["createdb"], "-h", "127.0.0.1", "-p", str(self.port),
                       "-U", self.user, "--", name])
        if r.returncode != 0:
            raise PostgresError(f"createdb {name} failed:\n{r.stdout}{r.stderr}")

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    @property
    def socket_dir(self):
        return os.path.join(self.dir, "sock")

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    # ---- plumbing -------------------------------------------------------------------

    def _user_kw(self):
        if not self._account:
            return {}
        uid, gid = self._account
        return {"user": uid, "group": gid, "extra_groups": []}

    def _run(self, argv, as_server=False, timeout=None):
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", cwd=self.dir, env=_child_env(),
                              timeout=timeout or self.timeout + 30,
                              **(self._user_kw() if as_server else {}))

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None


# ---- self-test ----------------------------------------------------------------------

def _self_test():
    def check(cond, what):
        if not cond:
            raise AssertionError(what)
        print(f"  ok  {what}")

    with tempfile.TemporaryDirectory(prefix="spiderhub-pg-selftest-") as parent:
        os.chmod(parent, 0o755)  # as a test's Env dir is
        with Postgres(parent) as pg:
            print(f"pg: started in {pg.start_seconds * 1000:.0f} ms on port {pg.port} "
                  f"({pg.dir})")
            d, port, pid = pg.dir, pg.port, pg.pid
            check(os.path.dirname(d) == parent, "the cluster lives under the given parent")
            check(port != 5432 and _port_open(port), "listening on a random loopback port")
            check(pg.sql("select 1") == "1\n", "psql -c 'select 1'")
            check(pg.sql("show server_version_num").startswith("15"), "PostgreSQL 15")
            check(pg.sql("show listen_addresses") == "127.0.0.1\n", "loopback only")
            check(pg.dsn == f"postgresql://spiderhub@127.0.0.1:{port}/spiderhub", "dsn")
            pg.sql("create table pages (url text primary key, n int); "
                   "insert into pages values ('http://a/', 1), ('http://b/', 2)")
            check(pg.sql("select sum(n) from pages") == "3\n", "create table, insert, select")
            pg.create_database("other")
            check(pg.sql("select count(*) from pg_tables where tablename = 'pages'",
                         db="other") == "0\n", "create_database isolates")
            try:
                pg.sql("select nope")
                check(False, "a bad query raises")
            except PostgresError as e:
                check("nope" in str(e), "a bad query raises with psql's message")
        check(not os.path.exists(d), "stop() removed the directory")
        check(not _port_open(port), "stop() closed the port")
        check(not _alive(pid), "stop() ended the postmaster")

        # A test process killed outright (no finally, no atexit) leaves nothing behind.
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--hold", parent],
                                 stdout=subprocess.PIPE, text=True)
        line = child.stdout.readline().split()
        check(len(line) == 3, f"a child process started a cluster: {line}")
        port, pid, d = int(line[0]), int(line[1]), line[2]
        check(_port_open(port), "the child's cluster is up")
        child.kill()
        child.wait()
        deadline = time.monotonic() + 15
        while (_port_open(port) or _alive(pid) or os.path.exists(d)) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        check(not _port_open(port) and not _alive(pid) and not os.path.exists(d),
              "after SIGKILL of its test process the watchdog stopped the server and "
              "removed the directory")
    print("pg: self-test passed")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--self-test"]:
        _self_test()
    elif sys.argv[1:2] == ["--hold"]:  # used by the self-test: start, report, wait to die
        pg = Postgres(sys.argv[2]).start()
        print(pg.port, pg.pid, pg.dir, flush=True)
        signal.pause()
    else:
        print(__doc__)
        sys.exit(2)
