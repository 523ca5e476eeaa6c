"""Draw diagram.png, the architecture at a glance, from this file (run `make diagram`).

Kept as code so the picture changes in the same commit as the pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUTPUT = Path(__file__).resolve().parent.parent / "diagram.png"

# name -> (x, y, width, height, colour, text)
BOXES = {
    "landing_csv": (0.2, 5.6, 2.6, 1.3, "#eeeeee", "Landing (immutable)\n7 CSV masters\ncustomers, users, resources,\ntickets, touches, NPS, billing"),
    "landing_events": (0.2, 2.6, 2.6, 1.3, "#eeeeee", "Landing (immutable)\nusage_events_stream/*.jsonl\nout of time order, v1/v2"),
    "bronze_batch": (3.6, 5.6, 2.6, 1.3, "#d9a066", "01 Bronze batch\ntyped, deduped by key,\ningest_ts, source_file, run_id\natomic snapshot swap"),
    "bronze_stream": (3.6, 2.6, 2.6, 1.3, "#d9a066", "02 Bronze stream\nStructured Streaming, availableNow\nwithWatermark, dedupe event_id,\nlate = flagged, never dropped"),
    "silver": (7.0, 4.1, 2.6, 1.3, "#c0c0c0", "03 Silver\nDQ rules as data, conformed,\nenriched (broadcast joins),\ndaily features, 3 anomaly methods"),
    "gold": (10.4, 4.1, 2.6, 1.3, "#e6c34d", "04 Gold marts\norg_daily_usage_by_service,\nrevenue, anomalies, tickets,\nGenAI tokens, top services 14d"),
    "cassandra": (13.8, 4.1, 2.6, 1.3, "#7fb3d5", "05 Serving\nforeachBatch upsert\nlocal Cassandra 5.0 / AstraDB\nkeyspace cloud_analytics"),
    "queries": (13.8, 6.3, 2.6, 0.9, "#aed6f1", "Dashboards: demo queries Q1-Q5\n(CQL, query-first tables)"),
    "quarantine": (5.3, 0.4, 4.6, 1.1, "#f1948a", "Quarantine (Parquet): raw line or row + rule + reason + run_id\nunparsable rows, malformed lines, conflicting duplicates, DQ failures"),
    "checkpoints": (10.4, 0.4, 6.0, 1.1, "#d5f5e3", "_checkpoints + _state: stream offsets, batch commit markers,\nincremental watermarks, loaded-key mirrors (exactly once, idempotent re-runs)"),
}
ARROWS = [
    ("landing_csv", "bronze_batch"), ("landing_events", "bronze_stream"),
    ("bronze_batch", "silver"), ("bronze_stream", "silver"), ("silver", "gold"),
    ("gold", "cassandra"), ("cassandra", "queries"),
]
DASHED = [("bronze_batch", "quarantine"), ("bronze_stream", "quarantine"), ("silver", "quarantine"),
          ("bronze_stream", "checkpoints"), ("cassandra", "checkpoints")]


def _anchor(name: str, towards: str) -> tuple[float, float]:
    x, y, w, h, *_ = BOXES[name]
    tx, ty, tw, th, *_ = BOXES[towards]
    cx, cy, tcx, tcy = x + w / 2, y + h / 2, tx + tw / 2, ty + th / 2
    if abs(tcx - cx) >= abs(tcy - cy) * 1.5:
        return (x + w, cy) if tcx > cx else (x, cy)
    return (cx, y) if tcy < cy else (cx, y + h)


def draw(output: Path = OUTPUT) -> Path:
    fig, ax = plt.subplots(figsize=(16.5, 7.6), dpi=110)
    ax.set_xlim(0, 16.6)
    ax.set_ylim(0, 7.6)
    ax.axis("off")
    for x, y, w, h, colour, text in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#333333", lw=1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)
    for style, pairs in (("-", ARROWS), ("--", DASHED)):
        for source, target in pairs:
            ax.add_patch(FancyArrowPatch(_anchor(source, target), _anchor(target, source), arrowstyle="-|>",
                                         mutation_scale=14, lw=1.3, ls=style, color="#333333"))
    ax.text(0.2, 7.25, "Cloud Provider Analytics - Lambda architecture (batch masters + streaming events), "
            "partitioned Parquet zones, Cassandra serving", fontsize=11, weight="bold")
    ax.text(10.4, 3.7, "Parquet, partitioned by date / month; ≤ 4 files per partition", fontsize=7.5, style="italic")
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


if __name__ == "__main__":
    print(f"wrote {draw()}")
    sys.exit(0)
