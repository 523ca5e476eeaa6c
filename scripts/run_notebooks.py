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
import atexit
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.util import run_sync
from traitlets.config import Config

from lakehouse_utils.config import COURSE_LANDING
from scripts.sync_notebooks import clean_metadata, notebook_names, paired_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebook_names()
# The pipeline chain; 06_live demonstrates the speed layer on a lake and keyspace of its own, so
# `make notebooks` executes it but `make demo` does not.
CHAIN = [name for name in NOTEBOOKS if name[:2] <= "05"]


class EchoingClient(NotebookClient):
    """A client that also prints each cell's stream output as it arrives (a progress line is seen live)."""

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            stream = sys.stderr if msg["content"]["name"] == "stderr" else sys.stdout
            stream.write(msg["content"]["text"])
            stream.flush()
        return super().output(outs, msg, display_id, cell_index)


@functools.cache
def _kernel_config() -> Config:
    """Kernels talk over Unix sockets in a private temporary folder, not over TCP on localhost.

    A TCP kernel prints a warning about plain-text traffic into every run's console. The socket
    folder must be absolute: by default the sockets are created in the kernel's working
    directory, `notebooks/`, which would leave files in the checkout.
    """
    if os.name == "nt":  # no Unix sockets
        return Config()
    folder = tempfile.mkdtemp(prefix="cpa-kernel-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})


def _client(notebook, timeout: int, km=None, echo: bool = False) -> NotebookClient:
    return (EchoingClient if echo else NotebookClient)(
        notebook, timeout=timeout, kernel_name="python3", km=km, record_timing=False, config=_kernel_config(),
        resources={"metadata": {"path": str(ROOT / "notebooks")}})


def execute(name: str, output_dir: Path, timeout: int = 900, kernel: SharedKernel | None = None) -> Path:
    """Run one notebook (the cells of its .py; cwd = notebooks/) in a fresh kernel, or in `kernel`; save the executed copy."""
    notebook = paired_notebook(name)
    started = time.perf_counter()
    try:
        if kernel is None:
            _client(notebook, timeout).execute()
        else:
            kernel.execute(notebook, timeout)
    finally:
        output_dir.mkdir(parents=True, exist_ok=True)
        target = output_dir / f"{name}.ipynb"
        nbformat.write(clean_metadata(notebook), target)
    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
    print(f"  {name}: {time.perf_counter() - started:.1f}s -> {shown}", flush=True)
    return target


class SharedKernel:
    """One kernel for a chain of notebooks, so the Spark JVM starts once (get_spark reuses the session).

    The user namespace is reset before every notebook after the first: a notebook cannot lean
    on a variable another one defined (each Colab notebook has its own runtime).
    """

    def __init__(self) -> None:
        self.km = None

    def execute(self, notebook, timeout: int) -> None:
        if self.km is not None:
            self._run(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%reset -f")]), timeout)
        self._run(notebook, timeout)

    def run_cells(self, sources: list[str], timeout: int = 900):
        """Run code cells in this kernel after a namespace reset, echoing what they print as they print it."""
        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in ["%reset -f", *sources]])
        self._run(notebook, timeout, echo=True)
        return notebook

    def _run(self, notebook, timeout: int, echo: bool = False) -> None:
        client = _client(notebook, timeout, km=self.km, echo=echo)
        try:
            client.execute(cleanup_kc=False)
        finally:
            self.km = client.km
            if client.kc is not None:
                client.kc.stop_channels()

    def __enter__(self) -> SharedKernel:
        return self

    def __exit__(self, *exc) -> None:
        if self.km is not None and self.km.has_kernel:
            run_sync(self.km.shutdown_kernel)(now=True)


def run_chain(output_dir: Path, names: list[str], kernel: SharedKernel | None = None) -> None:
    for number, name in enumerate(names, 1):
        print(f"[{number}/{len(names)}] {name} ...", flush=True)
        execute(name, output_dir, kernel=kernel)


def demo(args: argparse.Namespace) -> int:
    output_dir = ROOT / "build" / "notebooks"
    print(f"landing: {os.environ.get('LANDING_DIR') or '(default)'}\nlake:    {os.environ['LAKE_ROOT']}")
    print("running the chain 01 -> 05 (one kernel, so one Spark JVM; each notebook re-runs its own stage):",
          flush=True)
    started = time.perf_counter()
    with SharedKernel() as kernel:
        run_chain(output_dir, CHAIN, kernel)
        print(f"chain done in {time.perf_counter() - started:.0f}s", flush=True)
        # The queries and the idempotency proof run in the same kernel as the notebooks, through the
        # package's own command line, so they pay no second JVM start: the JVM is warm, the code is
        # what `python -m lakehouse_utils ...` runs. The notebooks were the first run (each already
        # re-ran its own stage); this is the whole chain once more: inventory, re-run, inventory, compare.
        executed = kernel.run_cells([
            "from lakehouse_utils.__main__ import main as lakehouse",
            "print('\\nQ1 - daily cost and requests per org and service:'); lakehouse(['query', 'q1'])",
            "print('Q2 - top services by cost over the last 14 days:'); lakehouse(['query', 'q2'])",
            "print('idempotency: inventory of every zone and Cassandra table, re-run of the whole chain '\n"
            "      '(one progress line per stage), inventory again:', flush=True)\n"
            "rerun_status = lakehouse(['evidence', '--rerun', 'all'])",
            "print(f'evidence exit status: {rerun_status}')",
        ])
    same = executed.cells[-1].outputs[-1].text.strip() == "evidence exit status: 0"
    print(f"idempotency check: rows, files and content fingerprints before and after re-running 01 -> 05 are "
          f"{'IDENTICAL' if same else 'DIFFERENT'}")
    print(f"demo done in {time.perf_counter() - started:.0f}s")
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
    release_keyspace(lake)
    return 0


def release_keyspace(lake: Path) -> None:
    """Hand the keyspace back: this lake is rebuilt by every `make notebooks`, so its claim (ADR 070.8)
    would only make the next lake that serves there (the demo's data/lake) be refused; without a
    claim, that lake reloads every table in full."""
    from lakehouse_utils.config import Settings
    from lakehouse_utils.paths import LakePaths, local_path
    from lakehouse_utils.serving.claim import lake_id_uri, release_claim
    from lakehouse_utils.serving.connection import open_session, target_from_settings

    identity = local_path(lake_id_uri(LakePaths.from_roots(lake, lake)))
    if identity is None or not identity.is_file():
        return  # serving did not run (--only without 05)
    target = target_from_settings(Settings.load())
    with open_session(target) as session:
        if release_claim(session, json.loads(identity.read_text(encoding="utf-8"))["lake_id"]):
            print(f"keyspace {target.keyspace} released: the next lake to serve into it reloads it in full")


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
