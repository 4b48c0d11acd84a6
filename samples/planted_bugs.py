"""The planted-bug table: each bug of tests/plants.py planted in the product, its target tests run, and which fail.

    python samples/planted_bugs.py                      # every plant: bug -> failing tests (exit 1 if one goes unnoticed)
    python samples/planted_bugs.py --only beam-is-greedy --baseline   # one plant; first check its targets pass unplanted
    python samples/planted_bugs.py --json               # the table as JSON

Each plant runs `python -m pytest <targets>` in a fresh process with RNNEDGE_PLANT=<name> (tests/conftest.py plants it
before any test module is imported). A plant is caught when at least one target test fails; the table lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from plants import PLANTS  # noqa: E402


def run_targets(targets, plant: str | None, timeout: int = 1200) -> tuple[int, list[str], float]:
    """(pytest exit code, failed test ids, seconds) of the targets, with `plant` planted (None: unplanted)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("RNNEDGE_PLANT", None)
    if plant:
        env["RNNEDGE_PLANT"] = plant
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *targets], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", done.stdout, re.MULTILINE)))
    return done.returncode, failed, time.perf_counter() - start


def table(names, baseline: bool) -> list[dict]:
    rows = []
    for name in names:
        plant = PLANTS[name][0]
        row = {"plant": name, "bug": plant.what, "targets": list(plant.targets)}
        if baseline:
            code, failed, _ = run_targets(plant.targets, None)
            row["baseline_ok"] = code == 0
            row["baseline_failed"] = failed
        code, failed, seconds = run_targets(plant.targets, name)
        row.update(caught=code == 1 and bool(failed), failing=failed, exit_code=code, seconds=round(seconds, 1))
        rows.append(row)
        print(f"{'caught' if row['caught'] else 'MISSED':7} {plant.what:55} -> {', '.join(t.split('::')[-1] for t in failed) or '(nothing failed)'}",
              file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(PLANTS), help="run this plant (repeatable); default: all")
    parser.add_argument("--baseline", action="store_true", help="first check each plant's targets pass without it")
    parser.add_argument("--json", action="store_true", help="print the table as JSON on stdout")
    args = parser.parse_args(argv)
    rows = table(args.only or list(PLANTS), args.baseline)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"| {r['bug']} | {'caught' if r['caught'] else 'MISSED'} | {'; '.join(r['failing'])} |")
    good = all(r["caught"] and r.get("baseline_ok", True) for r in rows)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
