"""What the event folder holds that the stream will never read, said after every run (ADR 081, 087).

Spark's file source reads a file once, by its path, and remembers the modification time it saw in
`<checkpoint>/sources/0/`. A file written to after that (a producer that was still writing, a zero-byte
file filled later, content replaced under the same name) is never read again: those lines are lost
unless someone notices. Files the source never reads at all (not `*.jsonl`, in a subfolder) and an
event folder without any event file are named too. Each is a warning, not an error: everything else
in the folder streamed, and the fix is on the producer's side.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.paths import join, relative_to

SHOWN = 5
EVENT_FILE_SUFFIX = ".jsonl"
COMPACT_SUFFIX = ".compact"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _log_number(uri: str) -> int | None:
    name = uri.rstrip("/").rpartition("/")[2].removesuffix(COMPACT_SUFFIX)
    return int(name) if name.isdigit() else None


def read_file_log(spark: SparkSession, checkpoint: str) -> dict[str, int]:
    """File name -> the modification time (ms) the file source saw when it read it.

    Spark compacts its file log every few batches (`N.compact` holds every entry up to N) and
    deletes older log files later, so the latest compact file and the batch files after it are
    the whole list.
    """
    logs = sorted((n, uri) for uri in io.glob(spark, join(checkpoint, "sources", "0", "*"))
                  if (n := _log_number(uri)) is not None)
    compacted = [n for n, uri in logs if uri.endswith(COMPACT_SUFFIX)]
    first = max(compacted, default=-1)
    seen: dict[str, int] = {}
    for n, uri in logs:
        if n < first:
            continue
        for line in (io.read_text(spark, uri) or "").splitlines()[1:]:  # the first line is the log's version
            entry = json.loads(line)
            # Spark logs the path URL-encoded (`a%20b.jsonl`); the folder lists the name as it is.
            seen[unquote(entry["path"].rstrip("/").rpartition("/")[2])] = int(entry["timestamp"])
    return seen


def event_folder_warnings(spark: SparkSession, folder: str, checkpoint: str) -> list[str]:
    """One sentence per kind of file the stream did not, or will not, read in full; [] when there is none."""
    folder = folder.rstrip("/")
    entries = {relative_to(folder, entry.path): entry for entry in io.list_files(spark, folder)}
    unread = sorted(name for name in entries if "/" in name or not name.endswith(EVENT_FILE_SUFFIX))
    warnings = []
    if len(unread) == len(entries):
        warnings.append(f"no *.jsonl file in {folder}, so there is nothing to stream: put the event "
                        "files directly in that folder, or point LANDING_DIR (or --landing) at the landing that holds "
                        "them")
    if unread:
        warnings.append(f"{len(unread)} file(s) in {folder} were not read: only *.jsonl files directly "
                        f"in that folder are events ({_listed(unread)}); rename or move them there to stream them")
    # Spark's file source skips names starting with `_` or `.` (producers' temporary names, ADR 081); an event
    # file under such a name is never read. A `.x.tmp` being written is not an event file yet and is not named.
    hidden = [name for name in io.list_names(spark, folder) if name.startswith(("_", ".")) and name.endswith(".jsonl")]
    if hidden:
        warnings.append(f"{len(hidden)} event file(s) in {folder} were not read because their names start with _ or "
                        f". ({_listed(hidden)}): Spark takes such names for temporary files. Rename them without "
                        "the leading character to stream them")
    changed = sorted(name for name, seen_ms in read_file_log(spark, checkpoint).items()
                     if name in entries and entries[name].modified_ms not in (0, seen_ms))
    if changed:
        warnings.append(
            f"{len(changed)} file(s) in {folder} changed after the stream read them ({_listed(changed)}): a file is "
            "read once, so what was written to it later will never be streamed. Producers must deliver each file "
            "complete (write it under a name ending in .tmp, then rename it; docs/decisions/080-failure-modes.md, "
            "081). To stream such a file in full, copy it under a new name: the events already read are recognised "
            "as duplicates and not counted twice")
    return warnings
