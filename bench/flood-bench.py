#!/usr/bin/env python3
"""A node under a flood of reconnecting unauthenticated connections (issue 15's measure).

  bench/flood-bench.py --deltasync build/cli/deltasync [--connections 5000] [--seconds 20]

Starts one `deltasync node` on 127.0.0.1 (descriptor limit 1024, as on common systems), then
keeps `--connections` TCP connections open against it from 250 source addresses
(127.0.0.10-259 wrap within 127.0.0.0/8), each closed and reopened at random within a second and
never authenticating. Meanwhile it measures what a legitimate user gets: `deltasync ctl` calls
(from 127.0.0.1; success rate and latency) and a new member joining from 127.0.0.2 (time until
both see each other alive), and samples the node's RSS. Prints one line per measure.
"""
import argparse
import os
import random
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deltasync", required=True)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 1000), hard))
    work = tempfile.mkdtemp(prefix="flood-bench-")
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write(os.urandom(24).hex())
    port = free_port()
    addr = f"127.0.0.1:{port}"
    node = subprocess.Popen([args.deltasync, "node", "--listen", addr, "--secret-file", secret, "--id", "1",
                             "--log-level", "warn"], stdout=subprocess.PIPE, stderr=open(os.path.join(work, "node.log"), "w"),
                            text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    node.stdout.readline()
    base_rss = rss_kib(node.pid)
    stop = threading.Event()
    opened = [0]

    def flood():
        socks = []
        sources = [f"127.0.{1 + k // 250}.{10 + k % 250}" for k in range(250)]
        deadline = {}
        while not stop.is_set():
            now = time.monotonic()
            while len(socks) < args.connections and not stop.is_set():
                try:
                    s = socket.socket()
                    s.setblocking(False)
                    s.bind((random.choice(sources), 0))
                    s.connect_ex(("127.0.0.1", port))
                    socks.append(s)
                    deadline[s] = now + random.random()
                    opened[0] += 1
                except OSError:
                    break
            keep = []
            for s in socks:
                if deadline[s] <= now:
                    s.close()
                    del deadline[s]
                else:
                    keep.append(s)
            socks = keep
            time.sleep(0.01)
        for s in socks:
            s.close()

    flooder = threading.Thread(target=flood)
    flooder.start()
    time.sleep(2)  # the flood at full strength before measuring
    samples, failures, peak = [], 0, base_rss
    joiner = None
    join_started = time.monotonic()
    end = time.monotonic() + args.seconds
    joined_at = None
    while time.monotonic() < end:
        peak = max(peak, rss_kib(node.pid))
        t = time.monotonic()
        r = subprocess.run([args.deltasync, "ctl", addr, "--secret-file", secret, "--timeout", "10", "add", "s",
                            f"x{len(samples) + failures}"], capture_output=True, text=True)
        if r.returncode == 0:
            samples.append(time.monotonic() - t)
        else:
            failures += 1
        if joiner is None:
            join_started = time.monotonic()
            joiner = subprocess.Popen([args.deltasync, "node", "--listen", f"127.0.0.2:{free_port()}", "--secret-file",
                                       secret, "--id", "2", "--seed", addr, "--log-level", "error"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if joined_at is None:
            m = subprocess.run([args.deltasync, "ctl", addr, "--secret-file", secret, "members"], capture_output=True,
                               text=True)
            if any(l.split()[:1] == ["2"] and l.split()[2] == "alive" for l in m.stdout.splitlines()):
                joined_at = time.monotonic() - join_started
    stop.set()
    flooder.join()
    stats = subprocess.run([args.deltasync, "ctl", addr, "--secret-file", secret, "stats"], capture_output=True,
                           text=True).stdout
    refused = [l for l in stats.splitlines() if l.startswith("deltasync_inbound_refused_total") or
               l.startswith("deltasync_handshake_timeouts_total") or l.startswith("deltasync_accept_failures_total")]
    for p in (joiner, node):
        if p:
            p.terminate()
            p.wait()
    samples.sort()
    total = len(samples) + failures
    print(f"flood: {args.connections} concurrent unauthenticated connections from 250 addresses, reconnecting "
          f"(opened {opened[0]} in {args.seconds + 2:.0f} s)")
    if samples:
        print(f"ctl during the flood: {len(samples)}/{total} succeeded; latency median "
              f"{statistics.median(samples) * 1000:.0f} ms, max {samples[-1] * 1000:.0f} ms")
    else:
        print(f"ctl during the flood: 0/{total} succeeded")
    print("a member joining during the flood: " +
          (f"alive at the flooded node after {joined_at:.2f} s" if joined_at is not None else "NOT admitted"))
    print(f"node RSS: {base_rss / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB during")
    for l in refused:
        print("  " + l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
