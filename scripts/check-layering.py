#!/usr/bin/env python3
"""Enforces shared/DESIGN.md's layering on include closures.

crdt/ may not reach capnp or kj (no I/O, no event loop). System include paths make such headers
reachable to any compiler invocation, so the check runs the preprocessor on every crdt/ source and
header and inspects the full dependency list it reports.

The public headers (include/deltasync/) are what applications include: each must compile on its
own with only include/ on the path, and include nothing but other public headers and the C++
standard library.
"""
import argparse
import pathlib
import re
import subprocess
import sys

PUBLIC = "include/deltasync"

# The C++20 standard library's headers (C++ names only: <cstdint>, not <stdint.h>).
STANDARD_HEADERS = set("""
algorithm any array atomic barrier bit bitset cassert cctype cerrno cfenv cfloat charconv chrono
cinttypes climits clocale cmath codecvt compare complex concepts condition_variable coroutine
csetjmp csignal cstdarg cstddef cstdint cstdio cstdlib cstring ctime cuchar cwchar cwctype deque
exception execution expected filesystem format forward_list fstream functional future
initializer_list iomanip ios iosfwd iostream istream iterator latch limits list locale map memory
memory_resource mutex new numbers numeric optional ostream queue random ranges ratio regex
scoped_allocator semaphore set shared_mutex source_location span sstream stack stdexcept
stop_token streambuf string string_view syncstream system_error thread tuple type_traits
typeindex typeinfo unordered_map unordered_set utility valarray variant vector version
""".split())

# layer -> (repo folders it may not include, system header path fragments it may not reach)
FORBIDDEN = {
    "crdt": (("gossip/", "lib/", "cli/", "examples/", "tests/"), ("/capnp/", "/kj/", "/sqlite3", "/boost/asio")),
    "gossip": (("lib/", "cli/", "examples/", "tests/"), ("/sqlite3", "/boost/asio")),
    "lib": (("cli/", "examples/", "tests/"), ()),
    # What applications include: no internal layer, no Cap'n Proto or KJ headers (they compile
    # slowly and would tie applications to our transport), no other library either.
    PUBLIC: (("crdt/", "gossip/", "lib/", "cli/", "examples/", "tests/", "bench/"),
             ("/capnp/", "/kj/", "/fmt/", "/openssl/", "/zlib", "/sqlite3", "/boost/")),
}


def deps(compiler, root, build_root, path):
    cmd = [compiler, "-std=c++20", "-x", "c++", "-M", "-I", str(root), "-I", str(root / "include"),
           "-I", str(build_root), str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"preprocessing {path} failed:\n{out.stderr}")
    return [tok for tok in out.stdout.replace("\\\n", " ").split()[1:]]


def check_public(compiler, root):
    """Each public header: direct includes only <deltasync/...> and the standard library, and it
    compiles alone with include/ as the only include path."""
    failures = 0
    public = root / PUBLIC
    for path in sorted(public.glob("*.h")):
        rel = path.relative_to(root)
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r'\s*#\s*include\s*([<"])([^>"]+)[>"]', line)
            if not m:
                continue
            name = m.group(2)
            ok = (m.group(1) == "<" and
                  (name in STANDARD_HEADERS or
                   (name.startswith("deltasync/") and (root / "include" / name).is_file())))
            if not ok:
                print(f"layering violation: {rel}:{n} includes {m.group(1)}{name}: a public header "
                      f"includes only <deltasync/...> and C++ standard headers")
                failures += 1
        cmd = [compiler, "-std=c++20", "-fsyntax-only", "-x", "c++", "-I", str(root / "include"), str(path)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"layering violation: {rel} does not compile on its own with only include/ on the "
                  f"include path:\n{out.stderr}")
            failures += 1
    return failures


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
    failures += check_public(args.compiler, root)
    print(f"checked {checked} files of {', '.join(FORBIDDEN)}: {failures} violations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
