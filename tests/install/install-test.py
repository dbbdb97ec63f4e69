#!/usr/bin/env python3
"""An application builds and runs against deltasync the two ways README describes.

1. Installed: `meson install --destdir` of the build (only include/deltasync/*.h among the
   headers; no KJ or Cap'n Proto symbol exported), then tests/install/consumer configured
   against that tree through pkg-config only (PKG_CONFIG_PATH + PKG_CONFIG_SYSROOT_DIR), built,
   checked (no include path into the source or build tree, the installed libdeltasync is the one
   loaded) and run.
2. Subproject: the consumer again, with subprojects/deltasync a symlink to the source root and
   `dependency('deltasync', fallback: 'deltasync')`. No -Ddeltasync:tests=false etc. is passed:
   the check that no test, benchmark or example target was configured proves the defaults.

The consumer starts two nodes and waits until a map entry put on one is seen on the other
(tests/install/consumer/main.c++). Temp dirs are removed afterwards (kept with --keep).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile


class Failure(Exception):
    pass


def public_symbol(source_root):
    """A matcher of the demangled names the library may export, read from the version script
    (lib/libdeltasync.map: one list of the classes include/deltasync/ marks DELTASYNC_API, the log
    functions, and the exceptions' type information): `deltasync::X::*;` lines allow X's members,
    quoted lines the exact name."""
    text = (source_root / "lib" / "libdeltasync.map").read_text()
    scopes = re.findall(r"^\s*(deltasync::[\w:]+)::\*;", text, re.M)
    exact = re.findall(r'^\s*"([^"]+)";', text, re.M)
    if not scopes or not exact:
        raise Failure("lib/libdeltasync.map lists no classes or names: cannot tell what may be exported")
    return re.compile("(" + "|".join(re.escape(s) + "$" for s in exact) + ")|(" +
                      "|".join(re.escape(s) + "::" for s in scopes) + ")")


def run(cmd, env=None, cwd=None):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    out = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"command failed with exit status {out.returncode}: {' '.join(str(c) for c in cmd)}\n"
                      f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}")
    return out.stdout


def build_options(build_root):
    opts = json.loads(run(["meson", "introspect", "--buildoptions", build_root]))
    return {o["name"]: o["value"] for o in opts}


def compile_args(consumer_build):
    """Every argument of the consumer's own compile commands (main.c++ only)."""
    commands = json.loads((consumer_build / "compile_commands.json").read_text())
    mine = [c for c in commands if c["file"].endswith("main.c++")]
    if not mine:
        raise Failure(f"no compile command for main.c++ in {consumer_build}/compile_commands.json")
    return [arg for c in mine for arg in c["command"].split()]


def include_paths(args):
    paths = []
    for i, arg in enumerate(args):
        if arg in ("-I", "-isystem", "-iquote") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("-I"):
            paths.append(arg[2:])
        elif arg.startswith("-isystem") and len(arg) > len("-isystem"):
            paths.append(arg[len("-isystem"):])
    return paths


def sanitizer_options(opts):
    """A sanitized libdeltasync (scripts/test's ASan stage) needs a sanitized application: the
    sanitizer runtime must be loaded first."""
    if opts.get("b_sanitize", "none") == "none":
        return []
    return [f"-Db_sanitize={opts['b_sanitize']}", f"-Db_lundef={str(opts['b_lundef']).lower()}"]


def setup_and_build(consumer, build, env, extra):
    run(["meson", "setup", "--buildtype=plain", *extra, build, consumer], env=env)
    # Only the consumer and what it needs (not, e.g., a subproject's command-line tool).
    run(["meson", "compile", "-C", build, "-j", "2", "consumer"], env=env)


def installed(source_root, build_root, tmp):
    print("== 1. installed library, found through pkg-config", flush=True)
    destdir = tmp / "destdir"
    run(["meson", "install", "-C", build_root, "--no-rebuild", "--quiet", "--destdir", destdir])
    opts = build_options(build_root)
    prefix = pathlib.PurePath(opts["prefix"])
    libdir = pathlib.PurePath(opts["libdir"])
    if not libdir.is_absolute():
        libdir = prefix / libdir
    includedir = prefix / opts["includedir"]
    staged_lib = destdir / libdir.relative_to("/")
    staged_include = destdir / includedir.relative_to("/")

    # Only the public headers are installed.
    headers = sorted(str(p.relative_to(staged_include)) for p in staged_include.rglob("*") if p.is_file())
    print("installed headers: " + ", ".join(headers), flush=True)
    stray = [h for h in headers if not h.startswith("deltasync/") or "/" in h[len("deltasync/"):]]
    if stray or not headers:
        raise Failure(f"headers outside <includedir>/deltasync/ (or none) were installed: {stray or headers}")
    public = sorted("deltasync/" + p.name for p in (source_root / "include" / "deltasync").glob("*.h"))
    if headers != public:
        raise Failure(f"installed headers {headers} differ from include/deltasync/ {public}")

    # The library exports the public API only (hidden visibility + lib/libdeltasync.map): no
    # symbol of KJ, Cap'n Proto or an internal layer, and no standard-library instantiation.
    libs = sorted(staged_lib.glob("libdeltasync.so*"))
    if not libs:
        raise Failure(f"no libdeltasync.so installed in {staged_lib}")
    exported = [l.split(" ", 2)[2] for l in run(["nm", "-DC", "--defined-only", libs[0]]).splitlines()
                if l.count(" ") >= 2]
    leaked = [s for s in exported if "kj::" in s or "capnp::" in s]
    if leaked:
        raise Failure(f"{len(leaked)} KJ/Cap'n Proto symbols exported by {libs[0].name}, e.g.:\n" +
                      "\n".join(leaked[:10]))
    allowed = public_symbol(source_root)
    stray = [s for s in exported if not allowed.match(s)]
    if stray:
        raise Failure(f"{len(stray)} symbols outside the public API exported by {libs[0].name}, e.g.:\n" +
                      "\n".join(stray[:10]))
    print(f"{libs[0].name} exports {len(exported)} symbols, all of the public API", flush=True)

    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = str(staged_lib / "pkgconfig")
    # The sysroot prefixes every -I/-L pkg-config prints, including the (nonexistent)
    # <destdir>/usr/include from the private requirements' Cflags: harmless, and the check below
    # is that nothing points into the source or build tree.
    env["PKG_CONFIG_SYSROOT_DIR"] = str(destdir)
    print("pkg-config --cflags --libs deltasync: " +
          run(["pkg-config", "--cflags", "--libs", "deltasync"], env=env).strip(), flush=True)

    consumer = tmp / "consumer"
    shutil.copytree(source_root / "tests" / "install" / "consumer", consumer)
    build = tmp / "consumer-build"
    # nofallback: the dependency must come from pkg-config, never from a subproject.
    setup_and_build(consumer, build, env, ["--wrap-mode=nofallback", *sanitizer_options(opts)])

    args = compile_args(build)
    for path in include_paths(args):
        resolved = pathlib.Path(path if os.path.isabs(path) else build / path).resolve()
        for tree in (source_root, build_root):
            if resolved == tree or tree in resolved.parents:
                raise Failure(f"the consumer's compile reaches into {tree}: -I {path}\n{' '.join(args)}")
    if not any(pathlib.Path(p).resolve() == staged_include.resolve() for p in include_paths(args)):
        raise Failure(f"the consumer's compile has no -I {staged_include}:\n{' '.join(args)}")

    exe = build / "consumer"
    run_env = dict(os.environ)
    run_env["LD_LIBRARY_PATH"] = str(staged_lib)
    ldd = run(["ldd", exe], env=run_env)
    line = next((l for l in ldd.splitlines() if "libdeltasync.so" in l), None)
    if line is None or str(staged_lib.resolve()) not in str(pathlib.Path(line.split("=>")[1].split("(")[0].strip()).resolve()):
        raise Failure(f"the consumer does not load the installed libdeltasync from {staged_lib}:\n{ldd}")
    print("loads: " + line.strip(), flush=True)
    print(run([exe], env=run_env), end="", flush=True)


def subproject(source_root, build_root, tmp):
    print("== 2. deltasync as a meson subproject (default options)", flush=True)
    consumer = tmp / "sub-consumer"
    shutil.copytree(source_root / "tests" / "install" / "consumer", consumer)
    (consumer / "subprojects").mkdir()
    (consumer / "subprojects" / "deltasync").symlink_to(source_root, target_is_directory=True)
    build = tmp / "sub-consumer-build"
    env = dict(os.environ)
    # Whatever pkg-config knows, the subproject is what this build must use.
    setup_and_build(consumer, build, env,
                    ["--force-fallback-for=deltasync", *sanitizer_options(build_options(build_root))])

    targets = json.loads(run(["meson", "introspect", "--targets", build]))
    extra = [t["name"] for t in targets if t.get("subproject") == "deltasync" and
             (t["name"].endswith("-test") or t["name"] in ("kv", "counter", "converge") or
              "bench" in t["name"] or "/tests/" in t["defined_in"] or "/bench/" in t["defined_in"] or
              "/examples/" in t["defined_in"])]
    if extra:
        raise Failure(f"as a subproject, deltasync configured tests/benchmarks/examples by default: {extra}")

    for path in include_paths(compile_args(build)):
        p = pathlib.PurePath(path)
        if "deltasync" in p.parts and p.name != "include":
            raise Failure(f"the consumer's compile gets a deltasync include path other than include/: {path}")
    print(run([build / "consumer"]), end="", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")
    args = ap.parse_args()
    source_root = pathlib.Path(args.source_root).resolve()
    build_root = pathlib.Path(args.build_root).resolve()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="deltasync-install-test-"))
    print(f"temp dir: {tmp}", flush=True)
    try:
        installed(source_root, build_root, tmp)
        subproject(source_root, build_root, tmp)
    except Failure as e:
        print(f"install test FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("install test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
