#!/usr/bin/env python3
"""Enforces shared/DESIGN.md's layering on include closures.

crdt/ may not reach capnp or kj (no I/O, no event loop). System include paths make such headers
reachable to any compiler invocation, so the check runs the preprocessor on every crdt/ source and
header and inspects the full dependency list it reports.
"""
import argparse
import pathlib
import subprocess
import sys

# layer -> (repo folders it may not include, system header path fragments it may not reach)
FORBIDDEN = {
    "crdt": (("gossip/", "lib/", "cli/", "examples/", "tests/"), ("/capnp/", "/kj/", "/sqlite3", "/boost/asio")),
    "gossip": (("lib/", "cli/", "examples/", "tests/"), ("/sqlite3", "/boost/asio")),
    "lib": (("cli/", "examples/", "tests/"), ()),
    # What applications include: no Cap'n Proto or KJ headers (they compile slowly and would
    # tie applications to our transport); the runtime's headers are lib/-internal.
    "lib/node.h": ((), ("/capnp/", "/kj/")),
}


def deps(compiler, root, build_root, path):
    cmd = [compiler, "-std=c++20", "-x", "c++", "-M", "-I", str(root), "-I", str(build_root), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"preprocessing {path} failed:\n{out.stderr}")
    return [tok for tok in out.stdout.replace("\\\n", " ").split()[1:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--compiler", default="c++")
    ap.add_argument("--source-root", default=".")
    ap.add_argument("--build-root", default="build", help="where generated headers live")
    args = ap.parse_args()
    root = pathlib.Path(args.source_root).resolve()
    failures = 0
    checked = 0
    for layer, (bad_repo, bad_system) in FORBIDDEN.items():
        paths = [root / layer] if (root / layer).is_file() else sorted((root / layer).glob("**/*"))
        for path in paths:
            if path.suffix not in (".h", ".c++"):
                continue
            checked += 1
            for dep in deps(args.compiler, root, pathlib.Path(args.build_root).resolve(), path):
                resolved = pathlib.Path(dep).resolve()
                if resolved.is_relative_to(pathlib.Path(args.build_root).resolve()):
                    bad = False  # generated code (e.g. gossip/wire.capnp.h)
                elif resolved.is_relative_to(root):
                    bad = str(resolved.relative_to(root)).startswith(bad_repo)
                else:
                    bad = any(b in str(resolved) for b in bad_system)
                if bad:
                    print(f"layering violation: {path.relative_to(root)} reaches {dep}")
                    failures += 1
    print(f"checked {checked} files of {', '.join(FORBIDDEN)}: {failures} violations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
