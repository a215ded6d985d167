"""A multi-host lab on one Linux machine: one network namespace per host, each with a veth
pair whose other end sits on a bridge in the root namespace (the "switch"). Each host has
its own address on a private /24; processes bind that address, never loopback. The root
namespace holds the bridge's own address, where the tests' fault proxies listen and from
where the test talks to the broker's API.

Links can go down and up (`link_down`), be rate-limited (`tbf` on both ends); latency,
loss and black holes come from tests/cluster/faultproxy.py. Everything the lab made is
removed by close() (also at exit and on SIGTERM); a lab left behind by a killed test is
swept by the next one (its owner process is gone)."""
import atexit
import ipaddress
import os
import random
import signal
import subprocess
import sys

STATE_DIR = "/run/spiderhub-lab"


def sh(*argv, check=True):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _used_subnets():
    out = sh("ip", "-4", "-o", "addr", "show")
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.add(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def sweep_stale():
    """Removes the namespaces and bridges of labs whose test process is gone."""
    if not os.path.isdir(STATE_DIR):
        return
    for name in os.listdir(STATE_DIR):
        path = os.path.join(STATE_DIR, name)
        try:
            with open(path) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and os.path.exists(f"/proc/{pid}"):
            continue
        _remove(name)
        try:
            os.unlink(path)
        except OSError:
            pass


def _remove(lab_id):
    for ns in sh("ip", "netns", "list", check=False).split("\n"):
        ns = ns.split(" ")[0]
        if ns.startswith(f"shl{lab_id}-"):
            sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", f"shl{lab_id}br", check=False)


class Host:
    def __init__(self, lab, name, ip, root_if):
        self.lab, self.name, self.ip, self.root_if = lab, name, ip, root_if
        self.ns = f"shl{lab.id}-{name}"

    def argv(self, argv):
        """argv run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def run(self, *argv, check=True):
        return sh(*self.argv(argv), check=check)


class Lab:
    def __init__(self):
        if os.geteuid() != 0:
            raise RuntimeError("the cluster lab needs root (network namespaces)")
        os.makedirs(STATE_DIR, exist_ok=True)
        sweep_stale()
        self.id = "%04x" % random.randrange(0x10000)
        with open(os.path.join(STATE_DIR, self.id), "w") as f:
            f.write(str(os.getpid()))
        used = _used_subnets()
        while True:
            net = ipaddress.ip_network(f"10.{random.randrange(100, 250)}.{random.randrange(256)}.0/24")
            if not any(net.overlaps(u) for u in used):
                break
        self.net = net
        self.gateway = str(net.network_address + 1)  # the bridge, in the root namespace
        self.hosts = {}
        self.closed = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(1))
        self.bridge = f"shl{self.id}br"
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_host(self, name):
        n = len(self.hosts) + 2
        ip = str(self.net.network_address + n)
        root_if = f"shl{self.id}h{n}"
        host = Host(self, name, ip, root_if)
        sh("ip", "netns", "add", host.ns)
        sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", f"shl{self.id}p{n}")
        sh("ip", "link", "set", f"shl{self.id}p{n}", "netns", host.ns)
        host.run("ip", "link", "set", f"shl{self.id}p{n}", "name", "eth0")
        host.run("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        host.run("ip", "link", "set", "eth0", "up")
        host.run("ip", "link", "set", "lo", "up")
        sh("ip", "link", "set", root_if, "master", self.bridge)
        sh("ip", "link", "set", root_if, "up")
        self.hosts[name] = host
        return host

    # ---- link faults ------------------------------------------------------------------

    def link_down(self, host):
        """The host's cable is pulled at the switch: no packet in or out, no FIN, no RST;
        open TCP connections stay open on both sides until a timer notices."""
        sh("ip", "link", "set", host.root_if, "down")

    def link_up(self, host):
        sh("ip", "link", "set", host.root_if, "up")

    def limit_rate(self, host, rate="1mbit"):
        """Caps the host's link both ways with a token bucket (tbf works here, netem not)."""
        for argv in (["tc", "qdisc", "replace", "dev", host.root_if],
                     host.argv(["tc", "qdisc", "replace", "dev", "eth0"])):
            sh(*argv, "root", "tbf", "rate", rate, "burst", "16kb", "latency", "500ms")

    def close(self):
        if self.closed:
            return
        self.closed = True
        _remove(self.id)
        try:
            os.unlink(os.path.join(STATE_DIR, self.id))
        except OSError:
            pass


def make_certs(dirname, ips):
    """A throwaway CA, a broker certificate for `ips` signed by it, and a second unrelated
    CA (for the wrong-CA case). Returns a dict of file paths."""
    def ossl(*argv):
        sh("openssl", *argv)
    p = {k: os.path.join(dirname, k) for k in (
        "ca.key", "ca.pem", "broker.key", "broker.csr", "broker.pem", "ext.cnf",
        "other-ca.key", "other-ca.pem")}
    for key, pem, cn in (("ca.key", "ca.pem", "spiderhub test CA"),
                         ("other-ca.key", "other-ca.pem", "some other CA")):
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", p[key], "-out", p[pem], "-days", "2", "-subj", f"/CN={cn}")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", p["broker.key"], "-out", p["broker.csr"], "-subj", "/CN=spiderhub broker")
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n"
                "extendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", p["broker.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
         "-CAcreateserial", "-out", p["broker.pem"], "-days", "2", "-extfile", p["ext.cnf"])
    return p

