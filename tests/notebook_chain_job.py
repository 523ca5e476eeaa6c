"""The headless notebooks chain of `test_notebooks`, as a process of its own (`background_jobs`).

    python tests/notebook_chain_job.py OUT     # LANDING_DIR, LAKE_ROOT, CASSANDRA_* from the environment

Generates a tenth of the course volume into OUT/landing, runs 01..05 in one kernel (as `make demo` does)
into OUT/executed, the package's `evidence --format json` in that kernel (OUT/evidence.json: its outputs),
then re-runs 02 and 05 into OUT/rerun, with the lake's file stamps before and after the re-runs
(OUT/stamps.json). The test reads these files; this script only runs things.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ZONES = ("bronze", "silver", "gold", "quarantine")


def main(out: Path) -> int:
    from conftest import file_stamps

    from lakehouse_utils.generator.landing import generate
    from scripts.run_notebooks import SharedKernel, execute
    from scripts.sync_notebooks import notebook_names

    lake = Path(os.environ["LAKE_ROOT"])
    generate(Path(os.environ["LANDING_DIR"]), seed=7, scale=0.1)
    with SharedKernel() as kernel:
        for name in notebook_names()[:5]:
            execute(name, out / "executed", kernel=kernel)
        executed = kernel.run_cells(["from lakehouse_utils.__main__ import main as lakehouse",
                                     "status = lakehouse(['evidence', '--format', 'json'])",
                                     "assert status == 0, f'evidence exit status {status}'"])
        (out / "evidence.json").write_text(json.dumps(executed.cells[2].outputs), encoding="utf-8")
        # A user re-runs a streaming notebook with nothing new to read: it must still finish, and change nothing.
        before = file_stamps(lake, ZONES)
        for name in ("02_bronze_stream", "05_serving"):
            execute(name, out / "rerun", kernel=kernel)
        stamps = {"before": before, "after": file_stamps(lake, ZONES)}
    (out / "stamps.json").write_text(json.dumps(stamps), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
