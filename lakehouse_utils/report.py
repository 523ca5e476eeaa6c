"""Counts that every stage returns, and the reconciliation they must satisfy.

For every table a stage writes: rows_in = rows_out + duplicates + quarantined
(+ ignored, for lines that carry no record at all, such as blank lines).
rows_in is counted on the stage's input; rows_out and quarantined are counted on
what the writes received (`io.replace_table` / `io.overwrite_partitions` return
them), never derived from each other, so a row a transform silently drops shows
up as unaccounted and `assert_reconciles` raises `ReconciliationError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


class ReconciliationError(AssertionError):
    """A stage's counts do not add up: rows were lost or invented between input and output."""


@dataclass
class TableCounts:
    table: str
    rows_in: int
    rows_out: int
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0
    details: dict = field(default_factory=dict)

    @property
    def unaccounted(self) -> int:
        return self.rows_in - (self.rows_out + self.duplicates + self.quarantined + self.ignored)

    @property
    def reconciles(self) -> bool:
        return self.unaccounted == 0


@dataclass
class StageReport:
    stage: str
    run_id: str
    tables: list[TableCounts] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    # What the user should know though nothing failed (e.g. landing files a stage did not read); printed by `format`.
    warnings: list[str] = field(default_factory=list)

    def add(self, counts: TableCounts) -> TableCounts:
        self.tables.append(counts)
        return counts

    def table(self, name: str) -> TableCounts:
        for counts in self.tables:
            if counts.table == name:
                return counts
        raise KeyError(f"stage {self.stage} reported no table {name!r}")

    @property
    def reconciles(self) -> bool:
        return all(counts.reconciles for counts in self.tables)

    def assert_reconciles(self) -> None:
        """Raise `ReconciliationError` naming every table whose counts do not add up, with its figures."""
        broken = [c for c in self.tables if not c.reconciles]
        if broken:
            lines = "; ".join(
                f"{c.table}: in {c.rows_in} != out {c.rows_out} + duplicates {c.duplicates} + quarantined "
                f"{c.quarantined} + ignored {c.ignored} ({c.unaccounted:+d} rows unaccounted)" for c in broken)
            raise ReconciliationError(
                f"stage {self.stage} (run {self.run_id}) does not reconcile: {lines}. A transform lost or "
                "invented rows; the tables were written, inspect them before re-running")

    def as_rows(self) -> list[dict]:
        rows = []
        for counts in self.tables:
            row = asdict(counts)
            row.pop("details")
            row["reconciles"] = counts.reconciles
            rows.append({"stage": self.stage, **row})
        return rows

    def to_dict(self) -> dict:
        return {"stage": self.stage, "run_id": self.run_id, "seconds": round(self.seconds, 2),
                "tables": [asdict(c) | {"reconciles": c.reconciles} for c in self.tables], "extra": self.extra,
                "warnings": self.warnings}

    def format(self) -> str:
        header = f"{'table':<28}{'in':>10}{'out':>10}{'dups':>8}{'quar':>8}{'ign':>6}  ok"
        lines = [f"[{self.stage}] run {self.run_id} ({self.seconds:.1f}s)", header]
        for c in self.tables:
            lines.append(f"{c.table:<28}{c.rows_in:>10}{c.rows_out:>10}{c.duplicates:>8}{c.quarantined:>8}"
                         f"{c.ignored:>6}  {'yes' if c.reconciles else 'NO'}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """Rows as a fixed-width text table (the CLI's `--format table`): header, rule, rows, row count."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines + [f"({len(rows)} rows)"])


def _cell(value) -> str:
    # Up to 6 decimals, trailing zeros dropped: an FX rate of 1.04985 stays 1.04985, 121 requests stay 121.
    if isinstance(value, float) and math.isfinite(value):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return "" if value is None else str(value)
