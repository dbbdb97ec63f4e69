#!/usr/bin/env python3
"""heal-bench: time from the heal of a partition to every acknowledged write visible on every
node, on 5 real `deltasync node` processes in network namespaces (tests/cluster's Net and
Cluster), with the nodes' default tuning unless told otherwise.

  sudo python3 bench/heal-bench.py --deltasync build/cli/deltasync [--heals 20] [--fast]

For each partition shape (3|2; bridge: nodes 1-2 and 4-5 cut apart, node 3 reaching both;
one-way: node 5 cannot open connections to the others, theirs to it work) it cuts the network,
waits until the cut is seen (the far side down, where it can be seen), writes on every node
(2 set elements and 2 increments each, through ctl), heals, and measures until every node holds
every acknowledged write (all nodes polled at once, every ~20 ms). Prints each heal and p50 / p99
per shape. --fast: the test suite's tuning (gossip 50 ms, probe 200 ms) instead of the defaults.
Needs root (namespaces, iptables).
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("cluster_test", os.path.join(HERE, "..", "tests", "cluster", "cluster-test.py"))
ct = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ct)


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deltasync", required=True)
    ap.add_argument("--heals", type=int, default=20)
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args()
    if not ct.Net.usable():
        print("heal-bench needs root, ip (iproute2) and iptables")
        return 2
    workdir = tempfile.mkdtemp(prefix="deltasync-heal-")
    net = ct.Net(5)
    c = ct.Cluster(os.path.abspath(args.deltasync), workdir, net.addresses(), net.wrappers(),
                   tuning=None if args.fast else [])
    results = {}
    try:
        for i in range(5):
            c.start(i)
        ct.wait_for("all members alive", lambda: all(len(c.live(i)) == 5 for i in range(5)), 120)
        writes = ct.Writes()
        for shape in ct.SHAPES:
            results[shape] = []
            for k in range(args.heals):
                t = ct.partition_and_heal(c, net, shape, writes, 120, tag=f"{shape}-{k}")
                results[shape].append(t)
                print(f"{shape:8} heal {k + 1:2}: {t:.2f} s", flush=True)
                # Whole again before the next cut (membership too).
                ct.wait_for("all members alive", lambda: all(len(c.live(i)) == 5 for i in range(5)), 120)
        writes.check(c, range(5))
    finally:
        c.stop_all()
        net.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"heal-bench: 5 nodes, {'test tuning (gossip 50 ms, probe 200 ms)' if args.fast else 'default tuning'}, "
          f"{args.heals} heals per shape, {len(writes.elements)} acknowledged elements, 0 lost")
    for shape, ts in results.items():
        print(f"{shape:8} p50 {percentile(ts, 50):.2f} s  p99 {percentile(ts, 99):.2f} s  max {max(ts):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
