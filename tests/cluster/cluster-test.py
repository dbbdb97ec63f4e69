#!/usr/bin/env python3
"""Multi-process cluster tests: real `deltasync node` processes, driven by `deltasync ctl`.

  cluster-test.py --deltasync PATH loopback
      5 nodes on 127.0.0.1..127.0.0.5. Concurrent writes on every node converge; a node killed
      with SIGKILL is declared down, the others keep writing, it restarts (same address, empty
      state, so a new replica id) and catches up; nothing acknowledged is lost.

  cluster-test.py --deltasync PATH partition
      5 nodes, each in a network namespace of its own (veth pairs on a bridge in a sixth
      namespace; all created here and deleted afterwards). A 3|2 partition made with iptables in
      the nodes' namespaces, writes on both sides, heal: converged, 0 acknowledged writes lost;
      the convergence latency after the heal is reported. The nodes are durable (data
      directories), each side writes PARTITION_WRITES (default 2000) elements during the cut, and
      a node of the minority side is stopped and restarted from its directory meanwhile. Needs
      root (exit 77 = skipped otherwise).

  cluster-test.py --deltasync PATH hardening
      2 nodes on loopback, node 1 limited to 64 file descriptors and with a client secret (which
      ctl must prove there, the cluster secret no longer does): a write over the peers' key limit
      is refused by ctl with a clear error and replication goes on; a flood of idle connections
      that exhausts node 1's descriptors leaves it accepting peers and ctl once it ends; malformed
      HTTP requests to its metrics port get bare 4xx answers and a bounded number of log lines;
      ctl gives up on a peer that never answers after --timeout, and on SIGTERM, with one line.

  cluster-test.py --deltasync PATH crash
      3 nodes on loopback, each with a data directory (sync durability). For CRASH_CYCLES cycles
      (default 20; the issue's 100: CRASH_CYCLES=100), 4 writers add set elements, increment a
      counter and put map entries on node 3 through ctl, and node 3 is killed with SIGKILL at a
      random moment: restarted from its directory under the same id, it holds every acknowledged
      write at once (before any peer answers), and nothing unacknowledged is half-applied (the
      counter lies between the acknowledged sum and that plus what was in flight). At the end
      every node holds exactly the same state with every acknowledged write: a reused dot would
      hide elements on the peers. CRASH_SEED replays the kill moments.

  cluster-test.py --deltasync PATH clock
      3 nodes on loopback, node 3 under libfaketime an hour fast (its monotonic clock untouched):
      the correct nodes refuse its stamps, count and log them, and keep the correct-clock writes
      made after its write; then node 3's clock steps back an hour and it reports the jump
      (deltasync_clock_jumps_total, a log line). Skipped without libfaketime.

  cluster-test.py --deltasync PATH watch
      5 nodes on loopback; two writers overwrite one map key (and write and remove others) for
      WATCH_SECONDS (default 15; the issue's minute: 60) while `ctl watch` runs on three other
      nodes: no state any of them was shown lacks the key once it had appeared.

  cluster-test.py --deltasync PATH --tls-dir DIR tls
      3 nodes under mutual TLS with the test certificates of DIR (tests/lib/tls), no shared
      secret: writes converge; ctl with a certificate of another CA is refused.

A write counts as acknowledged when `deltasync ctl` returned 0 for it. The check (as Jepsen's set
checker): every node ends with exactly the set of acknowledged elements, and the counter with
the sum of acknowledged increments. Liveness waits give up after generous bounds; they are not
timing assertions. Output ends with a summary line; exit 0 on success, 1 on failure.
"""
import argparse
import concurrent.futures
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

NODES = 5
PARTITION_WRITES = int(os.environ.get("PARTITION_WRITES", "2000"))  # per side, during the partition
SKIP = 77


class Failure(Exception):
    pass


class Cluster:
    # Faster than the defaults, so that tests finish sooner (bench/heal-bench.py uses []).
    TUNING = ["--gossip-interval", "50", "--probe-interval", "200"]

    def __init__(self, binary, workdir, addresses, wrappers=None, tls_dir=None, tuning=None):
        self.tuning = self.TUNING if tuning is None else tuning
        self.tls_dir = tls_dir
        self.binary = binary
        self.workdir = workdir
        self.addresses = addresses          # node index -> "host:port"
        self.wrappers = wrappers or [[] for _ in addresses]  # e.g. ["ip", "netns", "exec", ns]
        self.secret = os.path.join(workdir, "secret")
        with open(self.secret, "wb") as f:
            f.write(os.urandom(24).hex().encode())  # 48 bytes
        os.chmod(self.secret, 0o600)
        self.procs = [None] * len(addresses)
        self.client_secrets = {}  # node index -> the client secret ctl proves to it

    def auth(self, i, cert=None, ca="cluster-ca"):
        """The authentication options of node i, or of a ctl (certificate `cert`)."""
        if self.tls_dir is None:
            return ["--secret-file", self.secret]
        name = cert or f"replica-{i + 1}"
        d = self.tls_dir
        return ["--tls-cert", f"{d}/{name}.pem", "--tls-key", f"{d}/{name}-key.pem", "--tls-ca", f"{d}/{ca}.pem"]

    def start(self, i, seed=0, ident=None, extra=(), max_fds=None, env=None):
        args = self.wrappers[i] + [
            self.binary, "node", "--listen", self.addresses[i], *self.auth(i), *self.tuning,
            "--log-level", "warn", *extra]
        if self.tls_dir is None:
            args += ["--id", str(ident or i + 1)]
        if i != seed:
            args += ["--seed", self.addresses[seed]]
        log = open(os.path.join(self.workdir, f"node{i + 1}.log"), "ab")
        limit = None if max_fds is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds)))
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=limit,
                             env=None if env is None else {**os.environ, **env})
        line = p.stdout.readline()
        if not line.startswith("listening on"):
            p.kill()
            raise Failure(f"node {i + 1} did not start: {line!r} (see {log.name})")
        self.procs[i] = p

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs[i]
        if p is None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.procs[i] = None

    def stop_all(self):
        for i in range(len(self.procs)):
            self.kill(i, signal.SIGTERM)

    def ctl_run(self, i, *args, timeout=10, cert=None):
        auth = self.auth(i, cert or "admin")
        if self.tls_dir is None and i in self.client_secrets:
            auth = ["--secret-file", self.client_secrets[i]]
        cmd = self.wrappers[i] + [self.binary, "ctl", self.addresses[i], *auth, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def ctl(self, i, *args, timeout=10, cert=None):
        r = self.ctl_run(i, *args, timeout=timeout, cert=cert)
        if r.returncode != 0:
            shown = [a if len(a) <= 40 else a[:20] + f"...({len(a)} bytes)" for a in args]
            raise Failure(f"ctl {' '.join(shown)} on node {i + 1}: {r.stderr.strip()}")
        return r.stdout.splitlines()

    def live(self, i):
        return [l for l in self.ctl(i, "members") if l.split()[2] in ("alive", "self")]

    def hold(self, i, topic, key, meta="{}"):
        """A presence held on node i by a `ctl presence hold` process: (process, ref)."""
        cmd = self.wrappers[i] + [self.binary, "ctl", self.addresses[i], *self.auth(i, "admin"),
                                  "presence", "hold", topic, key, meta]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ref = p.stdout.readline().strip()
        if not ref:
            p.kill()
            raise Failure(f"presence hold on node {i + 1} failed: {p.stderr.read().strip()}")
        return p, ref

    def presences(self, i, topic):
        """{(key, ref)} of a topic's presences as node i lists them."""
        return {tuple(l.split()[:2]) for l in self.ctl(i, "presence", "list", topic)}


def reap(processes):
    """Kills whatever of `processes` (ctl hold or watch processes) still runs."""
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(what, pred, limit):
    start = time.monotonic()
    last = None
    while time.monotonic() - start < limit:
        try:
            if pred():
                return time.monotonic() - start
        except (Failure, subprocess.TimeoutExpired) as e:
            last = e
        time.sleep(0.05)
    raise Failure(f"timed out after {limit} s waiting for {what}" + (f" (last error: {last})" if last else ""))


class Writes:
    """Acknowledged writes: elements added to set 's' and increments of counter 'hits'."""

    def __init__(self):
        self.elements = set()
        self.hits = 0

    def write(self, cluster, node, tag, count):
        done = set()
        hits = 0
        for k in range(count):
            e = f"{tag}-n{node + 1}-{k}"
            cluster.ctl(node, "add", "s", e)
            done.add(e)
            cluster.ctl(node, "incr", "hits", "2")
            hits += 2
        return done, hits

    def bulk(self, cluster, node, tag, count):
        """count elements added through one ctl (each acknowledged in order)."""
        elements = [f"{tag}-n{node + 1}-{k}" for k in range(count)]
        for start in range(0, count, 500):  # within the command line's limits
            cluster.ctl(node, "add", "s", *elements[start:start + 500], timeout=120)
        return set(elements), 0

    def concurrently(self, cluster, nodes, tag, count, bulk=False):
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            write = self.bulk if bulk else self.write
            for done, hits in pool.map(lambda n: write(cluster, n, tag, count), nodes):
                self.elements |= done
                self.hits += hits

    def converged_on(self, cluster, nodes):
        expected = sorted(self.elements)
        for n in nodes:
            if cluster.ctl(n, "get", "s") != expected:
                return False
            if cluster.ctl(n, "get", "hits") != [str(self.hits)]:
                return False
        return True

    def converged_on_all(self, cluster, nodes):
        """converged_on, asking every node at once (a finer measure of when it happened)."""
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            return all(pool.map(lambda n: self.converged_on(cluster, [n]), nodes))

    def check(self, cluster, nodes):
        """Exactly the acknowledged writes, on every node (a diagnosis on failure)."""
        for n in nodes:
            got = set(cluster.ctl(n, "get", "s"))
            lost = self.elements - got
            extra = got - self.elements
            if lost or extra:
                raise Failure(f"node {n + 1}: {len(lost)} acknowledged elements lost {sorted(lost)[:5]}, "
                              f"{len(extra)} unexpected {sorted(extra)[:5]}")
            hits = cluster.ctl(n, "get", "hits")
            if hits != [str(self.hits)]:
                raise Failure(f"node {n + 1}: counter {hits}, expected {self.hits}")


def free_port(hosts):
    for _ in range(100):
        port = random.randint(20000, 60000)
        try:
            for h in hosts:
                with socket.socket() as s:
                    s.bind((h, port))
            return port
        except OSError:
            continue
    raise Failure("no free port")


def loopback(binary, workdir):
    hosts = [f"127.0.0.{i + 1}" for i in range(NODES)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    try:
        for i in range(NODES):
            c.start(i)
        t = wait_for("all 5 members alive at every node", lambda: all(len(c.live(i)) == NODES for i in range(NODES)), 60)
        print(f"membership formed in {t:.2f} s")

        w = Writes()
        w.concurrently(c, range(NODES), "a", 20)
        t = wait_for("convergence of concurrent writes", lambda: w.converged_on(c, range(NODES)), 60)
        print(f"{len(w.elements)} concurrent adds + increments on 5 nodes converged {t:.2f} s after the last ack")
        w.check(c, range(NODES))
        if c.ctl(4, "objects") != ["hits pn-counter", "s or-set"]:
            raise Failure(f"ctl objects on node 5: {c.ctl(4, 'objects')}")
        # Seeds at run time (node 2 was started with node 1 as its seed).
        a1, a3 = c.addresses[0], c.addresses[2]
        for args, want in ((("seeds",), [a1]), (("seeds", "add", a3), [a1, a3]),
                           (("seeds", "add", a3), [a1, a3]), (("seeds", "remove", a3), [a1])):
            if c.ctl(1, *args) != want:
                raise Failure(f"ctl {' '.join(args)} on node 2: {c.ctl(1, 'seeds')}, wanted {want}")
        r = c.ctl_run(1, "seeds", "add", "nowhere")
        if r.returncode != 1 or 'seed "nowhere" is not HOST:PORT' not in r.stderr:
            raise Failure(f"ctl seeds add nowhere: exit {r.returncode}, {r.stderr.strip()}")
        # A write with --wait: once ctl returns, a read on any peer that confirmed it shows it.
        c.ctl(0, "--wait", "4", "put", "users", "alice", "online")
        for i in range(1, NODES):
            if c.ctl(i, "get", "users") != ["alice=online"]:
                raise Failure(f"node {i + 1} lacks a write that --wait 4 confirmed: {c.ctl(i, 'get', 'users')}")
        c.ctl(1, "--wait", "majority", "incr", "hits", "0")
        r = c.ctl_run(0, "--wait", "9", "--timeout", "2", "put", "users", "bob", "away")
        if r.returncode != 1 or "of the 9 peers asked for confirmed it" not in r.stderr:
            raise Failure(f"ctl --wait 9 with 4 peers: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "--wait", "2", "get", "users")
        if r.returncode != 2 or "--wait goes with a write" not in r.stderr:
            raise Failure(f"ctl --wait with get: exit {r.returncode}, {r.stderr.strip()}")
        if c.ctl(0, "get", "users") != ["alice=online", "bob=away"]:  # applied even though not confirmed
            raise Failure(f"node 1 users: {c.ctl(0, 'get', 'users')}")
        # A read with --sync: a write made on node 1 just before shows on node 5 once it synced with
        # all four peers (a majority need not include node 1).
        c.ctl(0, "put", "users", "carol", "busy")
        got = c.ctl(4, "--sync", "4", "get", "users")
        if "carol=busy" not in got:
            raise Failure(f"node 5 after --sync 4 lacks node 1's write: {got}")
        r = c.ctl_run(4, "--sync", "9", "--timeout", "2", "get", "users")
        if r.returncode != 1 or "of the 9 peers asked for" not in r.stderr:
            raise Failure(f"ctl --sync 9 with 4 peers: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "--sync", "2", "put", "users", "dave", "x")
        if r.returncode != 2 or "--sync goes with get" not in r.stderr:
            raise Failure(f"ctl --sync with put: exit {r.returncode}, {r.stderr.strip()}")
        # Typed values from the command line: what a Map<int64_t, double> handle writes and reads.
        for k, v in (("10", "-2.5"), ("9", "0.1"), ("-1", "1e300")):
            c.ctl(0, "--wait", "4", "--key-type", "int", "--type", "double", "put", "prices", k, v)
        got = c.ctl(3, "--key-type", "int", "--type", "double", "get", "prices")
        if got != ["-1=1e+300", "9=0.1", "10=-2.5"]:  # numeric order: the codec's bytes sort so
            raise Failure(f"typed get on node 4: {got}")
        r = c.ctl_run(0, "--key-type", "int", "put", "prices", "ten", "1")
        if r.returncode != 1 or "'ten' is not an int" not in r.stderr:
            raise Failure(f"ctl put of a bad int key: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "--type", "bool", "get", "prices")
        if r.returncode != 1 or "does not read as keys of type string and values of type bool" not in r.stderr:
            raise Failure(f"ctl get as the wrong type: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "--type", "float", "get", "prices")
        if r.returncode != 2 or "unknown type 'float'" not in r.stderr:
            raise Failure(f"ctl --type float: exit {r.returncode}, {r.stderr.strip()}")
        # A map of counters from the command line (MapOfCounters<int64_t>): incr --key, get, remove.
        c.ctl(0, "--wait", "4", "--key-type", "int", "--key", "7", "incr", "votes", "5")
        c.ctl(1, "--wait", "4", "--key-type", "int", "--key", "-3", "incr", "votes", "-2")
        got = c.ctl(2, "--key-type", "int", "get", "votes")
        if got != ["-3=-2", "7=5"]:
            raise Failure(f"map of counters on node 3: {got}")
        c.ctl(2, "--wait", "4", "--key-type", "int", "remove", "votes", "7")
        if c.ctl(4, "--key-type", "int", "get", "votes") != ["-3=-2"]:
            raise Failure(f"map of counters after remove, node 5: {c.ctl(4, '--key-type', 'int', 'get', 'votes')}")
        r = c.ctl_run(0, "--key", "7", "get", "votes")
        if r.returncode != 2 or "--key goes with incr" not in r.stderr:
            raise Failure(f"ctl --key with get: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "--key", "x", "incr", "motd-counter-kind", "1")
        if r.returncode != 0:
            raise Failure(f"ctl incr --key on a new name: exit {r.returncode}, {r.stderr.strip()}")
        # Registers and flags from the command line.
        c.ctl(0, "--wait", "4", "set", "motd", "hello")
        c.ctl(1, "--wait", "4", "enable", "beta")
        for i in range(NODES):
            if c.ctl(i, "get", "motd") != ["hello"] or c.ctl(i, "get", "beta") != ["true"]:
                raise Failure(f"node {i + 1}: motd {c.ctl(i, 'get', 'motd')}, beta {c.ctl(i, 'get', 'beta')}")
        r = c.ctl_run(0, "enable", "motd")
        if r.returncode != 1 or "lww-register" not in r.stderr:
            raise Failure(f"ctl enable on a register: exit {r.returncode}, {r.stderr.strip()}")
        # Deleting an object: gone everywhere, its name retired.
        c.ctl(0, "put", "scratch", "k", "v")
        c.ctl(0, "--wait", "4", "delete", "scratch")
        for i in range(NODES):
            if "scratch aw-lww-map" in c.ctl(i, "objects") or c.ctl(i, "get", "scratch") != []:
                raise Failure(f"node {i + 1} still shows the deleted 'scratch'")
        r = c.ctl_run(3, "put", "scratch", "k", "again")
        if r.returncode != 1 or "object 'scratch' was deleted" not in r.stderr:
            raise Failure(f"ctl put to a deleted object: exit {r.returncode}, {r.stderr.strip()}")

        # kill -9 node 3; the others declare it down and keep writing.
        c.kill(2)
        others = [0, 1, 3, 4]
        t = wait_for("node 3 down at node 1",
                     lambda: any(l.split()[0] == "3" and l.split()[2] == "down" for l in c.ctl(0, "members")), 60)
        print(f"node 3 (SIGKILL) declared down at node 1 after {t:.2f} s")
        w.concurrently(c, others, "b", 10)
        # Restart it at the same address with empty state (no data directory: `crash` tests that), so
        # under a new replica id (reusing an id without its state would mint dots the cluster has
        # seen): it must catch up on everything, including what was written while it was down.
        c.start(2, seed=0, ident=NODES + 1)
        t = wait_for("restarted node 3 caught up", lambda: w.converged_on(c, range(NODES)), 60)
        print(f"restarted node 3 caught up in {t:.2f} s")
        w.concurrently(c, [2], "c", 5)
        wait_for("convergence after restart", lambda: w.converged_on(c, range(NODES)), 60)
        w.check(c, range(NODES))

        # Propagation latency, write on one node -> visible on all (polled with ctl, so coarse).
        samples = []
        for k in range(10):
            src = k % NODES
            e = f"lat-{k}"
            c.ctl(src, "add", "s", e)
            w.elements.add(e)
            start = time.monotonic()
            pending = set(range(NODES)) - {src}
            while pending:
                pending = {n for n in pending if e not in c.ctl(n, "get", "s")}
                if time.monotonic() - start > 30:
                    raise Failure(f"{e} not visible everywhere after 30 s")
            samples.append(time.monotonic() - start)
        samples.sort()
        print(f"write -> visible on all 5 (polled by ctl): median {samples[len(samples) // 2] * 1000:.0f} ms, "
              f"max {samples[-1] * 1000:.0f} ms (gossip interval 50 ms)")
        w.check(c, range(NODES))
    finally:
        c.stop_all()
    return f"loopback: {len(w.elements)} acknowledged elements, {w.hits} increments, 0 lost, 5 nodes equal"


def tls(binary, workdir, tls_dir):
    hosts = [f"127.0.0.{i + 1}" for i in range(3)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts], tls_dir=tls_dir)
    try:
        for i in range(3):
            c.start(i)
        wait_for("3 members alive at every node", lambda: all(len(c.live(i)) == 3 for i in range(3)), 60)
        w = Writes()
        w.concurrently(c, range(3), "tls", 10)
        t = wait_for("convergence under TLS", lambda: w.converged_on(c, range(3)), 60)
        w.check(c, range(3))
        try:
            c.ctl(0, "add", "s", "rogue", cert="rogue-9")
        except (Failure, subprocess.TimeoutExpired):
            pass
        else:
            raise Failure("ctl with a certificate of another CA was accepted")
        w.check(c, range(3))  # nothing of it applied
    finally:
        c.stop_all()
    return f"tls: {len(w.elements)} acknowledged elements on 3 nodes under mutual TLS, converged {t:.2f} s; rogue refused"


def http(address, request, timeout=10):
    """Sends raw bytes to an HTTP endpoint; returns what comes back until it closes (or times out)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                out += data
        except socket.timeout:
            pass
    return out


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise Failure(f"no metric {name}")


def hardening(binary, workdir):
    # The command line itself: --version, and a verb without its arguments is a usage error.
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0 or not re.fullmatch(r"deltasync \d+\.\d+\.\d+\n", r.stdout):
        raise Failure(f"deltasync --version: exit {r.returncode}, {r.stdout!r}")
    r = subprocess.run([binary, "ctl", "127.0.0.1:1", "add", "s"], capture_output=True, text=True, timeout=10)
    if r.returncode != 2 or "NAME ELEMENT..." not in r.stderr:
        raise Failure(f"ctl add without an element: exit {r.returncode}, {r.stderr.strip()}")
    r = subprocess.run([binary, "node", "--listen", "127.0.0.1:0", "--prune-after", "soon"], capture_output=True,
                       text=True, timeout=10)
    if r.returncode != 2 or "--prune-after" not in r.stderr:
        raise Failure(f"node --prune-after soon: exit {r.returncode}, {r.stderr.strip()}")
    hosts = ["127.0.0.1", "127.0.0.2"]
    port = free_port(hosts)
    metrics = f"127.0.0.1:{free_port(['127.0.0.1'])}"
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    log1 = os.path.join(workdir, "node1.log")
    results = []
    try:
        client_secret = os.path.join(workdir, "client-secret")
        with open(client_secret, "wb") as f:
            f.write(os.urandom(24).hex().encode())
        os.chmod(client_secret, 0o600)
        c.start(0, extra=["--metrics", metrics, "--client-secret-file", client_secret], max_fds=64)
        c.start(1)
        c.client_secrets[0] = client_secret
        wait_for("both members alive at both nodes", lambda: all(len(c.live(i)) == 2 for i in range(2)), 60)

        # 0. Node 1 has a client secret: ctl proves it (every call below does); the cluster
        # secret no longer opens its control interface.
        r = subprocess.run([binary, "ctl", c.addresses[0], "--secret-file", c.secret, "get", "m"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 1 or "proof is wrong" not in r.stderr:
            raise Failure(f"ctl with the cluster secret on a node with a client secret: exit {r.returncode}, "
                          f"{r.stderr.strip()!r}")
        results.append("ctl needs the client secret where one is set")

        # 1. A key over the peers' limit is refused where it is written, and later writes flow.
        r = c.ctl_run(0, "put", "m", "k" * (70 << 10), "v")
        if r.returncode != 1 or "limits.maxKeyBytes" not in r.stderr or len(r.stderr.splitlines()) != 1:
            raise Failure(f"a 70 KiB key: ctl exited {r.returncode} with {r.stderr.strip()!r}, "
                          "expected 1 and one line naming limits.maxKeyBytes")
        c.ctl(0, "put", "m", "after", "1")
        wait_for("the write after the refused one at node 2", lambda: c.ctl(1, "get", "m") == ["after=1"], 60)
        results.append("oversized key refused locally, replication unaffected")

        # 2. A flood of idle connections exhausts node 1's descriptors (peer and metrics ports):
        # from 20 source addresses, as one address may hold only 8 unauthenticated connections.
        flood = []
        targets = [(c.addresses[0], f"127.0.0.{10 + k % 20}") for k in range(160)] + [(metrics, "127.0.0.1")] * 40
        for target, source in targets:
            host, p = target.rsplit(":", 1)
            try:
                flood.append(socket.create_connection((host, int(p)), timeout=5, source_address=(source, 0)))
            except OSError:
                break
        # Held until node 1 has failed an accept for want of descriptors (it logs each, rate-limited).
        wait_for("node 1 to run out of descriptors",
                 lambda: b"accept on the peer port failed" in open(log1, "rb").read(), 60)
        for sock in flood:
            sock.close()
        t = wait_for("ctl on node 1 after the flood", lambda: c.ctl(0, "add", "s", "after-flood") == [], 60)
        stats = "\n".join(c.ctl(0, "stats"))
        failures = metric(stats, "deltasync_accept_failures_total")
        if metric(stats, 'deltasync_inbound_refused_total{reason="per_source"}') != 0:
            raise Failure("20 sources of 8 connections each were held to the per-source cap of 8")
        if failures == 0:
            raise Failure(f"the flood of {len(flood)} connections never exhausted node 1's descriptors")
        wait_for("node 2 sees the write made after the flood", lambda: "after-flood" in c.ctl(1, "get", "s"), 60)
        wait_for("both members alive after the flood", lambda: all(len(c.live(i)) == 2 for i in range(2)), 60)
        results.append(f"{len(flood)} idle connections, {failures:.0f} failed accepts, ctl back after {t:.2f} s")

        # 2b. One address opening 30 connections and never authenticating gets 8 admitted; ctl
        # (from another address) gets through meanwhile.
        host0, port0 = c.addresses[0].rsplit(":", 1)
        hog = [socket.create_connection((host0, int(port0)), timeout=5, source_address=("127.0.0.50", 0))
               for _ in range(30)]
        wait_for("node 1 to refuse the hog's connections beyond 8",
                     lambda: metric("\n".join(c.ctl(0, "stats")), 'deltasync_inbound_refused_total{reason="per_source"}') >= 22, 60)
        c.ctl(0, "add", "s", "during-hog")
        for sock in hog:
            sock.close()
        results.append("one address's 30 idle connections: 22 refused, ctl served throughout")

        # 3. Malformed HTTP: bare error answers (no kj text or stack addresses), a few log lines.
        bad = [b"GET /metrics HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n", b"BREW /pot HTTP/1.1\r\n\r\n",
               b"GET /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: bogus\r\n\r\n", b"\x00\xff garbage\r\n\r\n"]
        before = open(log1, "rb").read().count(b"metrics endpoint")
        for k in range(300):
            answer = http(metrics, bad[k % len(bad)])
            # The status line's reason phrase is the whole body: nothing of the server's internals.
            m = re.match(rb"HTTP/1\.1 [45]\d\d ([A-Za-z ]+)\r\n.*\r\n\r\n(.*)$", answer, re.S)
            if not m or m.group(1) != m.group(2):
                raise Failure(f"malformed request {bad[k % len(bad)]!r} answered {answer[:300]!r}")
        lines = open(log1, "rb").read().count(b"metrics endpoint") - before
        if lines > 5:
            raise Failure(f"300 malformed requests logged {lines} lines (rate limit: one per 10 s)")
        if not http(metrics, b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200"):
            raise Failure("the metrics endpoint does not answer after malformed requests")
        results.append(f"300 malformed HTTP requests: bare answers, {lines} log line(s)")

        # 4. ctl against an address that accepts and never answers: --timeout, then SIGTERM.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            where = "127.0.0.1:%d" % silent.getsockname()[1]
            cmd = [binary, "ctl", where, "--secret-file", c.secret, "--timeout", "2", "get", "x"]
            start = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            took = time.monotonic() - start
            if r.returncode != 1 or "timed out after 2 s" not in r.stderr or len(r.stderr.splitlines()) != 1:
                raise Failure(f"ctl against a silent peer: exit {r.returncode}, {r.stderr.strip()!r}")
            silent.accept()[0].close()  # that ctl's connection: the next one must be the SIGTERM run's
            p = subprocess.Popen(cmd[:-4] + ["--timeout", "600", "get", "x"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            wait_for("the silent listener to have ctl's connection", lambda: select_readable(silent), 30)
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
            if p.returncode != 1 or "interrupted" not in err:
                raise Failure(f"ctl on SIGTERM: exit {p.returncode}, {err.strip()!r}")
        results.append(f"ctl gave up on a silent peer after {took:.2f} s (--timeout 2) and on SIGTERM")
    finally:
        c.stop_all()
    return "hardening: " + "; ".join(results)


def presence(binary, workdir):
    """Presences held by ctl processes on three nodes: listed everywhere with their origin; a holder
    that exits and a node killed with SIGKILL make theirs leave everywhere; a node that closes
    (SIGTERM: a graceful leave) takes its presences with it at once."""
    hosts = [f"127.0.0.{i + 1}" for i in range(3)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    holders = []
    try:
        for i in range(3):
            c.start(i)
        wait_for("3 members alive at every node", lambda: all(len(c.live(i)) == 3 for i in range(3)), 60)
        held = {}
        for i, key in enumerate(["alice", "bob", "carol"]):
            p, ref = c.hold(i, "room", key, f'{{"node":{i + 1}}}')
            holders.append(p)
            held[key] = ref
            if not ref.startswith(f"{i + 1:016x}."):
                raise Failure(f"ref {ref} of a presence tracked on node {i + 1} does not name it")
        everyone = {(k, r) for k, r in held.items()}
        t = wait_for("every presence listed on every node",
                     lambda: all(c.presences(i, "room") == everyone for i in range(3)), 30)
        print(f"3 presences held on 3 nodes, listed on all after {t:.2f} s")
        if c.ctl(1, "presence", "topics") != ["room 3"]:
            raise Failure(f"presence topics: {c.ctl(1, 'presence', 'topics')}")
        lines = c.ctl(0, "presence", "list", "room")
        if not any(l.startswith("bob ") and l.endswith('{"node":2}') for l in lines):
            raise Failure(f"bob's meta missing from {lines}")

        # The holder exits: its presence leaves everywhere.
        holders[0].send_signal(signal.SIGTERM)
        holders[0].wait(timeout=10)
        everyone.discard(("alice", held["alice"]))
        t = wait_for("alice gone everywhere", lambda: all(c.presences(i, "room") == everyone for i in range(3)), 30)
        print(f"holder exited: its presence left every node after {t:.2f} s")

        # kill -9 node 3: carol leaves at nodes 1 and 2 once it is declared down.
        c.kill(2)
        everyone.discard(("carol", held["carol"]))
        t = wait_for("carol gone at nodes 1 and 2", lambda: all(c.presences(i, "room") == everyone for i in (0, 1)), 60)
        status = {l.split()[0]: l.split()[1] for l in c.ctl(0, "presence", "replicas")}
        if status.get("3") not in ("down", "gone"):
            raise Failure(f"node 3 is {status.get('3')} in presence replicas at node 1: {status}")
        print(f"node 3 killed: its presence left nodes 1 and 2 after {t:.2f} s")

        # Node 2 closes (a graceful leave): bob leaves node 1 at once, as gone.
        c.kill(1, signal.SIGTERM)
        t = wait_for("bob gone at node 1", lambda: c.presences(0, "room") == set(), 30)
        status = {l.split()[0]: l.split()[1] for l in c.ctl(0, "presence", "replicas")}
        if status.get("2") != "gone":
            raise Failure(f"node 2 left but is {status.get('2')} in presence replicas at node 1")
        print(f"node 2 left: its presence left node 1 after {t:.2f} s")

        r = c.ctl_run(0, "presence", "bogus")
        if r.returncode != 2 or "usage" not in r.stderr:
            raise Failure(f"ctl presence bogus: exit {r.returncode}, {r.stderr.strip()}")
        r = c.ctl_run(0, "presence", "hold", "", "k", "{}")
        if r.returncode != 1 or "topic is empty" not in r.stderr:
            raise Failure(f"ctl presence hold with an empty topic: exit {r.returncode}, {r.stderr.strip()}")
    finally:
        reap(holders)
        c.stop_all()
    return "presence: held, listed everywhere, left on holder exit, SIGKILL and graceful leave"


def select_readable(sock):
    import select
    return bool(select.select([sock], [], [], 0)[0])


def run(cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class Net:
    """n hosts, each in a network namespace of its own (veth pairs on a bridge in one more
    namespace), all created here and deleted by close(); partitions are iptables rules in the
    hosts' namespaces. Needs root."""

    PORT = 7000

    @staticmethod
    def usable():
        return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None

    def __init__(self, n):
        tag = f"{os.getpid() % 100000}"
        self.switch = f"dsw{tag}"
        self.spaces = [f"dsn{i + 1}-{tag}" for i in range(n)]
        subnet = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
        self.ips = [f"{subnet}.{i + 1}" for i in range(n)]
        self.created = []
        try:
            run(["ip", "netns", "add", self.switch])
            self.created.append(self.switch)
            run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", self.switch, "link", "set", "br0", "up"])
            for i, ns in enumerate(self.spaces):
                run(["ip", "netns", "add", ns])
                self.created.append(ns)
                run(["ip", "-n", self.switch, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns])
                run(["ip", "-n", self.switch, "link", "set", f"v{i}", "master", "br0", "up"])
                run(["ip", "-n", ns, "addr", "add", f"{self.ips[i]}/24", "dev", "eth0"])
                run(["ip", "-n", ns, "link", "set", "eth0", "up"])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
        except BaseException:
            self.close()
            raise

    def addresses(self):
        return [f"{ip}:{self.PORT}" for ip in self.ips]

    def wrappers(self):
        return [["ip", "netns", "exec", ns] for ns in self.spaces]

    def iptables(self, host, *rule):
        run(["ip", "netns", "exec", self.spaces[host], "iptables", *rule])

    def cut(self, group, other):
        """Nothing passes between the two groups, either way."""
        for n in group:
            for m in other:
                for a, b in ((n, m), (m, n)):
                    self.iptables(a, "-A", "INPUT", "-s", self.ips[b], "-j", "DROP")
                    self.iptables(a, "-A", "OUTPUT", "-d", self.ips[b], "-j", "DROP")

    def one_way(self, host):
        """host can no longer open connections to the others (its messages to them never leave),
        while their connections to it still work: it hears everyone, nobody hears it."""
        for m in range(len(self.ips)):
            if m != host:
                self.iptables(host, "-A", "OUTPUT", "-d", self.ips[m], "-p", "tcp", "--dport", str(self.PORT), "-j", "DROP")

    def heal(self):
        for i in range(len(self.spaces)):
            self.iptables(i, "-F")

    def close(self):
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []


def partition(binary, workdir):
    if not Net.usable():
        print("skipped: needs root, ip (iproute2) and iptables")
        return None
    net = Net(NODES)
    holders = []
    c = None
    try:
        c = Cluster(binary, workdir, net.addresses(), net.wrappers())
        durable = [["--data-dir", os.path.join(workdir, f"data{i + 1}")] for i in range(NODES)]
        for i in range(NODES):
            c.start(i, extra=durable[i])
        wait_for("all 5 members alive at every node", lambda: all(len(c.live(i)) == NODES for i in range(NODES)), 60)
        w = Writes()
        w.concurrently(c, range(NODES), "pre", 5)
        wait_for("convergence before the partition", lambda: w.converged_on(c, range(NODES)), 60)
        # A presence held on every node.
        held = {}
        for i in range(NODES):
            p, ref = c.hold(i, "room", f"user{i + 1}")
            holders.append(p)
            held[i] = (f"user{i + 1}", ref)
        wait_for("every presence on every node",
                 lambda: all(c.presences(i, "room") == set(held.values()) for i in range(NODES)), 60)

        side_a, side_b = [0, 1, 2], [3, 4]
        net.cut(side_a, side_b)
        t = wait_for("each side sees the other down",
                     lambda: len(c.live(0)) == 3 and len(c.live(3)) == 2, 60)
        print(f"3|2 partition: each side sees the other down after {t:.2f} s")
        # Each side lists only its own presences: the far side's left with their nodes.
        for side in (side_a, side_b):
            mine = {held[i] for i in side}
            wait_for("each side's presence list is its own",
                     lambda: all(c.presences(n, "room") == mine for n in side), 60)
        # A long partition: thousands of writes on each side, and a node of side B stopped and
        # restarted from its data directory meanwhile (it comes back with its state, offline
        # from side A).
        w_a, w_b = Writes(), Writes()
        w_a.concurrently(c, side_a, "side-a", 10)
        w_b.concurrently(c, side_b, "side-b", 10)
        w_a.concurrently(c, side_a, "bulk-a", PARTITION_WRITES // len(side_a), bulk=True)
        w_b.concurrently(c, side_b, "bulk-b", PARTITION_WRITES // len(side_b) // 2, bulk=True)
        c.kill(4, signal.SIGTERM)
        holders[4].wait(timeout=30)  # its held presence ended with the connection: it left
        del held[4]
        c.start(4, seed=3, extra=durable[4])
        w_b.concurrently(c, side_b, "bulk-b2", PARTITION_WRITES // len(side_b) // 2, bulk=True)
        # Each side converges on its own writes (plus everything from before).
        both = Writes()
        both.elements = w.elements | w_a.elements | w_b.elements
        both.hits = w.hits + w_a.hits + w_b.hits
        inside_a = Writes()
        inside_a.elements, inside_a.hits = w.elements | w_a.elements, w.hits + w_a.hits
        inside_b = Writes()
        inside_b.elements, inside_b.hits = w.elements | w_b.elements, w.hits + w_b.hits
        wait_for("side A converged on its writes", lambda: inside_a.converged_on(c, side_a), 60)
        wait_for("side B converged on its writes", lambda: inside_b.converged_on(c, side_b), 60)

        heal_at = time.monotonic()
        net.heal()
        wait_for("convergence after the heal", lambda: both.converged_on(c, range(NODES)), 120)
        latency = time.monotonic() - heal_at
        wait_for("every presence back on every node",
                 lambda: all(c.presences(i, "room") == set(held.values()) for i in range(NODES)), 120)
        presence_back = time.monotonic() - heal_at
        both.check(c, range(NODES))
        t = wait_for("all 5 members alive again", lambda: all(len(c.live(i)) == NODES for i in range(NODES)), 120)
        print(f"healed: converged {latency:.2f} s after the heal, presences back after {presence_back:.2f} s "
              f"(membership whole {t:.2f} s later)")
        # The other shapes, once each: a bridge (node 3 hears both sides, which do not hear each
        # other) and a one-way cut (node 5 hears everyone, nobody hears it).
        heals = {"3|2": latency}
        for shape in ("bridge", "one-way"):
            heals[shape] = partition_and_heal(c, net, shape, both, 60, still_receives=True)
        both.check(c, range(NODES))
    finally:
        reap(holders)
        if c is not None:
            c.stop_all()
        net.close()
    return (f"partition: durable nodes, {len(w_a.elements)} | {len(w_b.elements)} acknowledged writes on the two "
            f"sides (a node restarted from its directory meanwhile), {len(both.elements)} elements in all, 0 lost; "
            f"converged after the heal in " + ", ".join(f"{v:.2f} s ({k})" for k, v in heals.items()))


SHAPES = ("3|2", "bridge", "one-way")


def partition_and_heal(c, net, shape, writes, limit, tag=None, still_receives=False):
    """Cuts the network in `shape`, waits until the cut is seen (the far side down), writes on
    every node meanwhile (added to `writes`), heals, and returns the seconds from the heal until
    every node holds every acknowledged write. still_receives (one-way): first waits until every
    node holds them while the cut lasts."""
    n = len(net.ips)
    tag = tag or shape
    if shape == "3|2":
        net.cut([0, 1, 2], [3, 4])
        seen = lambda: len(c.live(0)) == 3 and len(c.live(3)) == 2
    elif shape == "bridge":
        # Node 2 still reaches both sides, so the far side stays alive (probed through node 2)
        # and the writes may cross through it while the cut lasts.
        net.cut([0, 1], [3, 4])
        seen = lambda: True
    elif shape == "one-way":
        net.one_way(4)
        # Seen when node 5's own links fail: its peers may keep it alive (it answers on the
        # return path), so membership shows nothing.
        seen = lambda: metric("\n".join(c.ctl(4, "stats")), "deltasync_replies_sent_total") > 0
    else:
        raise ValueError(shape)
    wait_for(f"the {shape} cut seen", seen, limit)
    during = Writes()
    during.concurrently(c, range(n), f"{tag}", 2)
    writes.elements |= during.elements
    writes.hits += during.hits
    if shape == "one-way" and still_receives:
        # The node that reaches nobody is answered on its peers' own deliveries (the return
        # path): everything converges while the cut lasts.
        t = wait_for("convergence during the one-way cut", lambda: writes.converged_on_all(c, range(n)), limit)
        print(f"one-way cut: converged {t:.2f} s after the writes, while the cut lasted")
    heal_at = time.monotonic()
    net.heal()
    wait_for(f"convergence after the {shape} heal", lambda: writes.converged_on_all(c, range(n)), limit)
    return time.monotonic() - heal_at


def crash(binary, workdir):
    cycles = int(os.environ.get("CRASH_CYCLES", "20"))
    seed = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 30))))
    print(f"crash: CRASH_CYCLES={cycles} CRASH_SEED={seed}")
    rng = random.Random(seed)
    hosts = [f"127.0.0.{i + 1}" for i in range(3)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    dirs = [os.path.join(workdir, f"data{i + 1}") for i in range(3)]
    victim = 2
    elements, puts = set(), {}
    hits = 0          # acknowledged increments
    in_flight = 0     # increments whose ctl did not return 0 (killed mid-call): may or may not be applied
    try:
        for i in range(3):
            c.start(i, extra=["--data-dir", dirs[i]])
        wait_for("3 members alive at every node", lambda: all(len(c.live(i)) == 3 for i in range(3)), 60)
        for cycle in range(cycles):
            stop_at = time.monotonic() + rng.uniform(0.1, 0.8)

            def writer(w):
                # -> (elements acked, (last acked put, put in flight or None), increments acked, in flight)
                done, acked, unacked, k, last = set(), 0, 0, 0, None
                while time.monotonic() < stop_at + 5:
                    e = f"c{cycle}-w{w}-{k}"
                    if c.ctl_run(victim, "add", "s", e).returncode != 0:
                        return done, (last, None), acked, unacked
                    done.add(e)
                    if c.ctl_run(victim, "incr", "n", "1").returncode != 0:
                        return done, (last, None), acked, unacked + 1
                    acked += 1
                    if c.ctl_run(victim, "put", "m", f"w{w}", e).returncode != 0:
                        return done, (last, e), acked, unacked
                    last = e
                    k += 1
                raise Failure(f"cycle {cycle}: writer {w} still succeeding 5 s after the kill")

            with concurrent.futures.ThreadPoolExecutor(5) as pool:
                futures = [pool.submit(writer, w) for w in range(4)]
                time.sleep(max(0.0, stop_at - time.monotonic()))
                c.kill(victim)
                for w, f in enumerate(futures):
                    done, (last, attempted), acked, unacked = f.result()
                    elements |= done
                    hits += acked
                    in_flight += unacked
                    key = f"w{w}"
                    if last is not None:
                        puts[key] = {last}
                    if attempted is not None:
                        puts.setdefault(key, {None}).add(attempted)
            c.start(victim, extra=["--data-dir", dirs[victim]])
            # Every acknowledged write is there at once, from disk.
            got = set(c.ctl(victim, "get", "s"))
            lost = elements - got
            if lost:
                raise Failure(f"cycle {cycle}: {len(lost)} acknowledged elements missing after restart: {sorted(lost)[:5]}")
            n = int((c.ctl(victim, "get", "n") or ["0"])[0])
            if not hits <= n <= hits + in_flight:
                raise Failure(f"cycle {cycle}: counter {n} after restart, expected {hits}..{hits + in_flight}")
            entries = dict(l.split("=", 1) for l in c.ctl(victim, "get", "m"))
            for key, allowed in puts.items():
                if entries.get(key) not in allowed:
                    raise Failure(f"cycle {cycle}: map entry {key}={entries.get(key)} after restart, "
                                  f"expected one of {sorted(map(str, allowed))}")
        wait_for("all 3 nodes equal", lambda: all(c.ctl(i, "get", "s") == c.ctl(0, "get", "s") and
                                                c.ctl(i, "get", "n") == c.ctl(0, "get", "n") and
                                                c.ctl(i, "get", "m") == c.ctl(0, "get", "m") for i in range(3)), 60)
        for i in range(3):
            got = set(c.ctl(i, "get", "s"))
            if elements - got:
                raise Failure(f"node {i + 1}: {len(elements - got)} acknowledged elements lost: {sorted(elements - got)[:5]}")
        final = int(c.ctl(0, "get", "n")[0])
        if not hits <= final <= hits + in_flight:
            raise Failure(f"counter {final} at the end, expected {hits}..{hits + in_flight}")
        # Stopped (cleanly) while its peers take writes, restarted from its directory: it has its
        # state at once, and catches up what the others wrote meanwhile.
        c.kill(victim, signal.SIGTERM)
        meanwhile = {f"meanwhile-{k}" for k in range(200)}
        c.ctl(0, "add", "s", *sorted(meanwhile))
        elements |= meanwhile
        c.start(victim, extra=["--data-dir", dirs[victim]])
        got = set(c.ctl(victim, "get", "s"))
        if (elements - meanwhile) - got:
            raise Failure(f"restarted node: {len((elements - meanwhile) - got)} of its elements missing at start")
        wait_for("the restarted node has what its peers wrote meanwhile",
                 lambda: elements <= set(c.ctl(victim, "get", "s")), 60)
    finally:
        c.stop_all()
    return (f"crash: {cycles} SIGKILL cycles, {len(elements)} acknowledged elements and {hits} increments, "
            f"0 lost, 3 nodes equal")


FAKETIME_LIBS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/faketime/libfaketime.so.1"]


def clock(binary, workdir):
    """A node whose clock is an hour fast (libfaketime) beside two correct ones: its stamps are
    refused and reported, correct-clock writes made after its write are not lost; then its clock
    steps back an hour, and it reports the jump."""
    lib = next((p for p in FAKETIME_LIBS if os.path.exists(p)), None)
    if lib is None:
        print("skipped: needs libfaketime (Debian package faketime; scripts/setup installs it)")
        return None
    hosts = [f"127.0.0.{i + 1}" for i in range(3)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    offset = os.path.join(workdir, "clock-offset")
    with open(offset, "w") as f:
        f.write("+1h\n")
    fast = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": offset, "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    try:
        c.start(0)
        c.start(1)
        c.start(2, env=fast)
        wait_for("3 members alive at every node", lambda: all(len(c.live(i)) == 3 for i in range(3)), 60)
        c.ctl(2, "put", "m", "k", "from-the-fast-clock")
        c.ctl(2, "put", "m", "fast-only", "1")
        # The correct nodes refuse the fast node's stamps, count and log it.
        wait_for("the correct nodes refusing the fast node's stamps",
                 lambda: all(metric("\n".join(c.ctl(i, "stats")), "deltasync_clock_skew_refused_total") >= 1
                             for i in (0, 1)), 60)
        for i in (0, 1):
            with open(os.path.join(workdir, f"node{i + 1}.log")) as f:
                if "ahead of this node's clock" not in f.read():
                    raise Failure(f"node {i + 1} did not log the refused stamp")
        # A correct-clock write made after the fast one, and another to a key of its own: neither
        # is lost to the fast node's future stamp on the correct nodes.
        c.ctl(0, "put", "m", "k", "from-a-correct-clock")
        c.ctl(1, "put", "m", "j", "also-correct")
        want = ["j=also-correct", "k=from-a-correct-clock"]
        wait_for("the correct writes on both correct nodes", lambda: all(c.ctl(i, "get", "m") == want for i in (0, 1)), 60)
        # The clock steps back to the right time: the node reports the jump.
        with open(offset, "w") as f:
            f.write("+0\n")
        wait_for("the fast node reporting its clock's jump",
                 lambda: metric("\n".join(c.ctl(2, "stats")), "deltasync_clock_jumps_total") >= 1, 60)
        last = metric("\n".join(c.ctl(2, "stats")), "deltasync_clock_last_jump_ms")
        if not -3_700_000 < last < -3_500_000:
            raise Failure(f"clock_last_jump_ms {last}, expected about -3600000")
        with open(os.path.join(workdir, "node3.log")) as f:
            if "wall clock jumped back" not in f.read():
                raise Failure("node 3 did not log its clock's jump")
        for i in (0, 1):
            if c.ctl(i, "get", "m") != want:
                raise Failure(f"node {i + 1} lost a correct-clock write: {c.ctl(i, 'get', 'm')}")
    finally:
        c.stop_all()
    return (f"clock: the fast node's stamps refused and counted on both correct nodes, 0 correct writes lost; "
            f"its jump back of {-last} ms reported")


def watch(binary, workdir):
    """Two writers overwrite one key while three nodes watch it (ctl watch): no watched state
    lacks the key once it appeared (read safety, issue 14)."""
    seconds = float(os.environ.get("WATCH_SECONDS", "15"))
    hosts = [f"127.0.0.{i + 1}" for i in range(NODES)]
    port = free_port(hosts)
    c = Cluster(binary, workdir, [f"{h}:{port}" for h in hosts])
    watchers = []
    try:
        for i in range(NODES):
            c.start(i)
        wait_for("all members alive at every node", lambda: all(len(c.live(i)) == NODES for i in range(NODES)), 60)
        for i in (2, 3, 4):
            cmd = [binary, "ctl", c.addresses[i], *c.auth(i, "admin"), "watch", "m"]
            watchers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        stop = time.monotonic() + seconds

        def writer(node):
            n = 0
            while time.monotonic() < stop:
                c.ctl(node, "put", "m", "watched", f"n{node + 1}-{n}")
                # Other keys come and go for real around it, so removals keep flowing.
                c.ctl(node, "put", "m", f"other-{node}-{n % 3}", "x")
                c.ctl(node, "remove", "m", f"other-{node}-{(n + 1) % 3}")
                n += 1
            return n

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            writes = sum(pool.map(writer, [0, 1]))
        wait_for("every node equal", lambda: len({tuple(c.ctl(i, "get", "m")) for i in range(NODES)}) == 1, 60)
        states = 0
        for i, p in zip((2, 3, 4), watchers):
            p.send_signal(signal.SIGINT)
            out, _ = p.communicate(timeout=30)
            seen = False
            for state in out.split("--\n"):
                lines = [l for l in state.splitlines() if l]
                if not lines and state == "":
                    continue
                states += 1
                has = any(l.startswith("watched=") for l in lines)
                if has:
                    seen = True
                elif seen:
                    raise Failure(f"node {i + 1} showed a state without the key nobody removed: {lines}")
            if not seen:
                raise Failure(f"node {i + 1}'s watch never showed the key")
    finally:
        reap(watchers)
        c.stop_all()
    return f"watch: {writes} overwrites by 2 writers for {seconds:.0f} s, {states} states watched on 3 nodes, none lacks the key"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deltasync", required=True, help="the deltasync binary")
    ap.add_argument("--tls-dir", help="test certificates (tests/lib/tls), for the tls scenario")
    ap.add_argument("scenario", choices=["loopback", "partition", "tls", "hardening", "presence", "crash", "clock",
                                         "watch"])
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="deltasync-cluster-")
    try:
        binary = os.path.abspath(args.deltasync)
        if args.scenario == "tls":
            if not args.tls_dir:
                raise Failure("the tls scenario needs --tls-dir")
            summary = tls(binary, workdir, os.path.abspath(args.tls_dir))
        else:
            summary = {"loopback": loopback, "partition": partition, "hardening": hardening,
                       "presence": presence, "crash": crash, "clock": clock,
                       "watch": watch}[args.scenario](binary, workdir)
    except (Failure, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {e}")
        for name in sorted(os.listdir(workdir)):
            if name.endswith(".log"):
                with open(os.path.join(workdir, name), errors="replace") as f:
                    tail = f.read()[-2000:]
                if tail:
                    print(f"--- {name} (tail)\n{tail}")
        shutil.rmtree(workdir, ignore_errors=True)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    if summary is None:
        return SKIP
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
