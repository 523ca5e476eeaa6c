"""Execute the notebooks headless, in order, with the notebooks' own code.

    python -m scripts.run_notebooks --demo      # executed copies in build/notebooks, prints Q1/Q2 + idempotency
    python -m scripts.run_notebooks --commit    # re-executes notebooks/*.ipynb in place on the course data

The cells come from the sources `notebooks/NN_name.py` (every one present, in order), so what
runs is what was reviewed. Parameters reach the notebooks as environment variables (LAKE_ROOT,
LANDING_DIR, ...), which is exactly how a user configures them, so no notebook code differs
between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from lakehouse_utils.evidence.inventory import compare
from lakehouse_utils.report import format_table
from scripts.sync_notebooks import clean_metadata, notebook_names, paired_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebook_names()
COURSE_LANDING = ROOT.parent / "shared" / "course_landing"


def execute(name: str, output_dir: Path, timeout: int = 900) -> Path:
    """Run one notebook (the cells of its .py) in a fresh kernel (cwd = notebooks/) and save the executed copy."""
    notebook = paired_notebook(name)
    started = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    try:
        client.execute()
    finally:
        output_dir.mkdir(parents=True, exist_ok=True)
        target = output_dir / f"{name}.ipynb"
        nbformat.write(clean_metadata(notebook), target)
    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
    print(f"  {name}: {time.perf_counter() - started:.1f}s -> {shown}")
    return target


def run_chain(output_dir: Path, names: list[str]) -> None:
    for name in names:
        execute(name, output_dir)


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "lakehouse_utils", *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"`python -m lakehouse_utils {' '.join(args)}` failed:\n{out.stderr[-3000:]}")
    return out.stdout


def demo(args: argparse.Namespace) -> int:
    output_dir = ROOT / "build" / "notebooks"
    print(f"landing: {os.environ.get('LANDING_DIR') or '(default)'}\nlake:    {os.environ['LAKE_ROOT']}")
    print("running the chain 01 -> 05:")
    run_chain(output_dir, NOTEBOOKS)
    print("\nQ1 - daily cost and requests per org and service:")
    print(_cli("query", "q1"))
    print("Q2 - top services by cost over the last 14 days:")
    print(_cli("query", "q2"))
    print("idempotency: inventory of every zone and Cassandra table, re-run of the whole chain, inventory again:")
    before = json.loads(_cli("evidence", "--format", "json"))
    run_chain(output_dir / "rerun", NOTEBOOKS)
    after = json.loads(_cli("evidence", "--format", "json"))
    comparison = compare(before, after)
    print(format_table(comparison))
    same = all(row["identical"] for row in comparison)
    print(f"idempotency check: counts before and after re-running 01 -> 05 are {'IDENTICAL' if same else 'DIFFERENT'}")
    return 0 if same else 1


def commit(args: argparse.Namespace) -> int:
    landing = Path(os.environ.get("LANDING_DIR") or COURSE_LANDING)
    if not (landing / "customers_orgs.csv").exists():
        print(f"course data not found at {landing}; set LANDING_DIR", file=sys.stderr)
        return 1
    os.environ["LANDING_DIR"] = str(landing)
    lake = ROOT / "build" / "course_lake"
    shutil.rmtree(lake, ignore_errors=True)
    os.environ["LAKE_ROOT"] = str(lake)
    os.environ["CASSANDRA_KEYSPACE"] = os.environ.get("CASSANDRA_KEYSPACE", "cloud_analytics")
    print(f"re-executing the committed notebooks on {landing} (fresh lake {lake}):")
    run_chain(ROOT / "notebooks", args.only or NOTEBOOKS)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="run the chain into build/notebooks and print the demo")
    mode.add_argument("--commit", action="store_true", help="re-execute notebooks/ in place on the course data")
    parser.add_argument("--only", nargs="*", help="with --commit: only these notebooks")
    args = parser.parse_args(argv)
    os.environ.setdefault("LAKE_ROOT", str(ROOT / "data" / "lake"))
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return demo(args) if args.demo else commit(args)


if __name__ == "__main__":
    sys.exit(main())
