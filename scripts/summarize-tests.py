#!/usr/bin/env python3
"""Sums test-case counts over one or more meson test logs (meson-logs/testlog.json).

Doctest executables report their own case counts; any other test (or a doctest binary that died
before its summary) counts as one case, passed or failed by its meson result. Prints per-run lines
and ends with the plain line 'N passed, N failed'. Exit status 1 if anything failed.
"""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")


def summarize(path):
    passed = failed = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            entry = json.loads(line)
            ok = entry.get("result") in ("OK", "EXPECTEDFAIL")
            m = None
            for m in DOCTEST.finditer(entry.get("stdout", "") or ""):
                pass
            if m is not None:
                p, fl = int(m.group(2)), int(m.group(3))
                if not ok and fl == 0:
                    fl = 1  # crashed or timed out after printing a summary
                passed += p
                failed += fl
            elif ok:
                passed += 1
            else:
                failed += 1
            if not ok:
                print(f"FAILED: {entry.get('name')} ({entry.get('result')})")
    return passed, failed


def main():
    total_p = total_f = 0
    for label_path in sys.argv[1:]:
        label, _, path = label_path.partition("=")
        try:
            p, f = summarize(path)
        except FileNotFoundError:
            print(f"{label}: no test log at {path} (build or run failed)")
            p, f = 0, 1
        print(f"{label}: {p} passed, {f} failed")
        total_p += p
        total_f += f
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
