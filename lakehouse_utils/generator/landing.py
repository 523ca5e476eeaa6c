"""Deterministic synthetic landing data with the course's contract, plus optional faults.

`generate(out_dir, ...)` writes the seven master CSVs and `usage_events_stream/*.jsonl`,
and returns (and saves as `_generator_manifest.json`) a manifest with the exact counts
every later zone must reproduce. Events are generated and written one file at a time.
CLI: `python -m lakehouse_utils generate --out DIR [--seed N] [--scale K] ...`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from lakehouse_utils.generator.events import EventPlan, base_events, event_line, file_rng, make_event, to_line
from lakehouse_utils.generator.faults import LATE_DAYS, EventFaults, MasterFile, master_files, plan_event_faults
from lakehouse_utils.generator.ledger import EventLedger
from lakehouse_utils.generator.masters import HEADERS, build_masters
from lakehouse_utils.paths import EVENTS_DIR

MANIFEST_NAME = "_generator_manifest.json"
IDS_NAME = "_expected_bronze_event_ids.txt"


def default_files(scale: float) -> int:
    """120 × scale files (360 events each), at least 4."""
    return round(120 * scale) if scale >= 1 else max(4, round(120 * scale))


def generate(out_dir: str | os.PathLike, *, seed: int = 7, scale: float = 1.0, files: int | None = None,
             days: int = 60, start_date: str = "2025-07-03", duplicates: bool = False, malformed: bool = False,
             late_files: bool = False, bad_rows: bool = False, progress: bool = False) -> dict:
    """Write a landing dataset into `out_dir` and return its manifest."""
    if scale <= 0 or days < 1 or (files is not None and files < 1):
        raise ValueError(f"need scale > 0, days >= 1 and files >= 1 (got scale={scale}, days={days}, files={files})")
    try:
        start = date.fromisoformat(start_date)
    except ValueError:
        raise ValueError(f"start_date must be YYYY-MM-DD (got {start_date!r})") from None
    masters = build_masters(random.Random(f"{seed}:masters"), scale, start, days)
    plan = EventPlan.create(seed, start, days, max(1, round(720 * scale)), files or default_files(scale))
    faults = plan_event_faults(random.Random(f"{seed}:faults"), plan, masters.resources, masters.org_ids,
                               duplicates=duplicates, malformed=malformed, late_files=late_files, bad_rows=bad_rows)
    out = Path(out_dir)
    _prepare_out_dir(out)  # only once every argument has been checked
    master_stats = _write_masters(out, master_files(random.Random(f"{seed}:master-faults"), masters, duplicates, bad_rows))
    ledger = EventLedger(set(masters.org_ids), {resource[0] for resource in masters.resources})
    resources = masters.resources
    del masters  # master rows are written; only the resource lookup is needed from here on
    arrival, events_info = _write_events(out / EVENTS_DIR, plan, resources, faults, ledger, progress)
    ledger.write_sorted_ids(out / IDS_NAME)
    manifest = {
        "status": "complete", "seed": seed, "scale": scale, "days": days, "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=days - 1)).isoformat(), "events_per_day": plan.per_day,
        "options": {"duplicates": duplicates, "malformed": malformed, "late_files": late_files, "bad_rows": bad_rows},
        "files": arrival, "events_dir": EVENTS_DIR, "masters": master_stats,
        "events": {**events_info, **ledger.summary(), "expected_bronze_event_ids_file": IDS_NAME},
    }
    _write_json(out / MANIFEST_NAME, manifest)
    _set_mtimes(out, arrival, start + timedelta(days=days))
    return manifest


def _prepare_out_dir(out: Path) -> None:
    """Create `out`, or clear a previous generator output; refuse any other non-empty folder."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"generator output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST_NAME).is_file():
            raise FileExistsError(f"refusing to write into {out}: it is not empty and has no {MANIFEST_NAME} "
                                  "(not a previous generator output); choose a new or empty folder")
        for name in [f"{source}.csv" for source in HEADERS] + [IDS_NAME]:
            (out / name).unlink(missing_ok=True)
        events_dir = out / EVENTS_DIR
        for path in events_dir.glob("*.jsonl") if events_dir.is_dir() else []:
            path.unlink()
    (out / EVENTS_DIR).mkdir(parents=True, exist_ok=True)
    # Marks the folder as ours from the start, so a crashed run can be overwritten by the next one.
    _write_json(out / MANIFEST_NAME, {"status": "incomplete"})


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _write_masters(out: Path, master_output: dict[str, MasterFile]) -> dict[str, dict]:
    stats = {}
    for source, master_file in master_output.items():
        with open(out / f"{source}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(HEADERS[source])
            for entry in master_file.entries:
                if isinstance(entry, str):
                    handle.write(entry + "\n")
                else:
                    writer.writerow(entry)
        stats[source] = {"file": f"{source}.csv", **master_file.stats}
    return stats


def _write_lines(path: Path, lines: list[str], *, bom: bool = False, crlf: bool = False) -> None:
    newline = "\r\n" if crlf else "\n"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(("\ufeff" if bom else "") + "".join(line + newline for line in lines))


def _fault_line(kind: str, payload: object, pool: dict[int, dict], ledger: EventLedger, bad_kinds: dict) -> str:
    if kind == "replay":
        ledger.replay()
        return event_line(pool[payload])
    if kind == "conflict":
        ledger.conflict()
        original = pool[payload]
        # Same event_id, different content: a corrected cost re-sent later.
        return event_line({**original, "cost_usd_increment": round(abs(original["cost_usd_increment"]) * 1.5 + 0.5, 4)})
    if kind == "blank":
        ledger.blank()
        return ""
    if kind == "bad_row":
        bad_kind, event = payload
        bad_kinds[bad_kind] = bad_kinds.get(bad_kind, 0) + 1
        ledger.bronze(event)
        return to_line(event)
    ledger.bad_line(kind)
    return str(payload)


def _write_events(events_dir: Path, plan: EventPlan, resources: list, faults: EventFaults, ledger: EventLedger,
                  progress: bool) -> tuple[list[str], dict]:
    """Base files (with injected lines), then whole-file replays, then late files; returns arrival order."""
    pool: dict[int, dict] = {}
    arrival: list[str] = []
    bad_kinds: dict[str, int] = {}
    n_steps = plan.n_files + len(faults.replay_files) + faults.late_files
    for file_index in range(plan.n_files):
        events = base_events(plan, resources, file_index)
        for position, slot in faults.capture.get(file_index, {}).items():
            pool[slot] = events[position]
        lines = []
        for event in events:
            ledger.bronze(event)
            lines.append(event_line(event))
        positions = file_rng(plan.seed, "positions", file_index)
        for kind, payload in faults.inserts.get(file_index, []):
            lines.insert(positions.randint(0, len(lines)), _fault_line(kind, payload, pool, ledger, bad_kinds))
        name = f"events_part_{file_index:04d}.jsonl"
        _write_lines(events_dir / name, lines, bom=file_index == faults.bom_file, crlf=file_index == faults.crlf_file)
        arrival.append(name)
        _report_progress(progress, len(arrival), n_steps)
    replayed = []
    for file_index in faults.replay_files:
        lines = [event_line(event) for event in base_events(plan, resources, file_index)]
        for _ in lines:
            ledger.replay()
        name = f"events_replay_{file_index:04d}.jsonl"
        _write_lines(events_dir / name, lines)
        arrival.append(name)
        replayed.append({"name": name, "copy_of": f"events_part_{file_index:04d}.jsonl"})
        _report_progress(progress, len(arrival), n_steps)
    late_names, late_events = _write_late_files(events_dir, plan, resources, faults.late_files, ledger)
    arrival.extend(late_names)
    if late_names:
        _report_progress(progress, len(arrival), n_steps)
    info = {
        "base_files": plan.n_files, "base_events": plan.total, "replayed_files": replayed,
        "late_files": late_names, "late_events": late_events,
        "bom_files": [] if faults.bom_file is None else [arrival[faults.bom_file]],
        "crlf_files": [] if faults.crlf_file is None else [arrival[faults.crlf_file]],
        "single_exact_replays": faults.counts.get("single_replays", 0),
        "bad_rows_by_kind": dict(sorted(bad_kinds.items())),
    }
    return arrival, info


def _write_late_files(events_dir: Path, plan: EventPlan, resources: list, n_late: int,
                      ledger: EventLedger) -> tuple[list[str], int]:
    """New unique events, all from the first week, arriving after everything else."""
    per_file = len(plan.file_slots(0))
    days_text = [plan.day_text(day) for day in range(plan.days)]
    names = []
    for late_index in range(n_late):
        rng = file_rng(plan.seed, "late", late_index)
        lines = []
        for n in range(per_file):
            index = plan.total + late_index * per_file + n
            event = make_event(rng, plan, resources, index, rng.randrange(min(LATE_DAYS, plan.days)), days_text)
            ledger.bronze(event)
            lines.append(event_line(event))
        name = f"events_late_{late_index:04d}.jsonl"
        _write_lines(events_dir / name, lines)
        names.append(name)
    return names, n_late * per_file


def _set_mtimes(out: Path, arrival: list[str], after: date) -> None:
    """Fixed, strictly increasing modification times: masters, then events in arrival order, then side files.

    Fixed rather than "now" so that a seed gives the same bytes and the same mtimes; the
    streaming file source orders new files by modification time.
    """
    paths = ([out / f"{source}.csv" for source in HEADERS] + [out / EVENTS_DIR / name for name in arrival]
             + [out / IDS_NAME, out / MANIFEST_NAME])
    epoch = datetime.combine(after, time(0), tzinfo=timezone.utc).timestamp()
    for seconds, path in enumerate(paths):
        os.utime(path, (epoch + seconds, epoch + seconds))


def _report_progress(enabled: bool, done: int, total: int) -> None:
    step = max(1, total // 20)
    if enabled and (done % step == 0 or done == total):
        print(f"generate: {100 * done // total:3d}% ({done}/{total} event files)", file=sys.stderr, flush=True)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (new, empty, or a previous generator output)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="1 = course size (43,200 events); may be fractional")
    parser.add_argument("--files", type=int, default=None, help="number of base event files (default 120 × scale)")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--start-date", default="2025-07-03")
    for flag in ("duplicates", "malformed", "late-files", "bad-rows"):
        parser.add_argument(f"--{flag}", action="store_true", help=f"inject {flag.replace('-', ' ')}")
    parser.add_argument("--progress", action="store_true", help="print progress lines (automatic at scale >= 10)")


def run_cli(args: argparse.Namespace) -> int:
    try:
        manifest = generate(args.out, seed=args.seed, scale=args.scale, files=args.files, days=args.days,
                            start_date=args.start_date, duplicates=args.duplicates, malformed=args.malformed,
                            late_files=args.late_files, bad_rows=args.bad_rows,
                            progress=args.progress or args.scale >= 10)
    except (FileExistsError, NotADirectoryError, ValueError) as error:
        print(f"generate: {error}", file=sys.stderr)
        return 2
    events = manifest["events"]
    print(f"wrote {len(manifest['files'])} event files ({events['lines_total']} lines, {events['bronze_rows']} "
          f"expected Bronze rows, {events['silver_rows']} expected Silver rows) and "
          f"{len(manifest['masters'])} master CSVs to {args.out}; manifest: {Path(args.out) / MANIFEST_NAME}")
    return 0
