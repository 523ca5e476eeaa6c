"""The sections of docs/performance.md, each produced by its own module.

A section module is imported by name only when asked for (`--sections stages,stream`), so
a section whose module is absent or broken never stops the others. Contract of a module:

- `section(spark, settings, args) -> str`: runs its measurement and returns markdown
  (starting with a `## ` heading); parameters it does not declare are not passed;
- optionally `configure_parser(parser)`: adds its own `--options` to the benchmark command.

Adding a section is one line in SECTIONS. Every section is written between markers, so a
run of some sections replaces those and keeps the others already in the report.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re

# section name -> module (in report order)
SECTIONS: dict[str, str] = {
    "stages": "lakehouse_utils.benchmark.stages",
    "course": "lakehouse_utils.benchmark.course",  # issue 17: the whole command on the course data
    "stream": "lakehouse_utils.benchmark.stream",  # issue 16: cost per micro-batch (ADR 045)
    "freshness": "lakehouse_utils.benchmark.freshness",  # issue 21
}
DEFAULT_SECTIONS = "stages"
TITLE = "# Performance\n\n"


class SectionError(ValueError):
    """A requested benchmark section is unknown or its module cannot be imported."""


def parse_sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise SectionError(f"unknown benchmark section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    return names


def available() -> list[str]:
    """Sections whose module exists in this checkout."""
    return [name for name, module in SECTIONS.items() if importlib.util.find_spec(module) is not None]


def load(name: str):
    try:
        return importlib.import_module(SECTIONS[name])
    except ImportError as error:
        raise SectionError(f"benchmark section {name!r} needs {SECTIONS[name]}, which cannot be imported "
                           f"here ({error}); run without it, e.g. --sections {DEFAULT_SECTIONS}") from error


def configure_parsers(parser: argparse.ArgumentParser) -> None:
    """Let every available section module add its options (a broken one is skipped, and fails if asked for)."""
    for name in available():
        if name == "stages":
            continue
        try:
            module = load(name)
        except SectionError:
            continue
        if hasattr(module, "configure_parser"):
            module.configure_parser(parser)


def wants(name: str, parameter: str) -> bool:
    """Whether the section's `section` function declares `parameter` (e.g. spark: start a session for it)."""
    return parameter in inspect.signature(load(name).section).parameters


def run_section(name: str, **context) -> str:
    """Markdown of one section; the module gets the context arguments its `section` declares."""
    function = load(name).section
    accepted = inspect.signature(function).parameters
    return function(**{key: value for key, value in context.items() if key in accepted}).strip() + "\n"


def _block(name: str, markdown: str) -> str:
    return f"<!-- section:{name} -->\n{markdown.strip()}\n<!-- /section:{name} -->\n"


def existing_blocks(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- section:(\w+) -->\n(.*?)\n<!-- /section:\1 -->", re.S)
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}


def merge(existing: str, fresh: dict[str, str]) -> str:
    """The report: fresh sections replace their old text; sections not re-run are kept as they were."""
    old = existing_blocks(existing)
    if not old and existing.strip() and "stages" not in fresh:
        # A report from before sections existed is all stage figures: keep it as that section.
        old = {"stages": existing.split("\n", 1)[-1] if existing.startswith(TITLE.strip()) else existing}
    blocks = old | fresh
    order = [name for name in SECTIONS if name in blocks] + [name for name in blocks if name not in SECTIONS]
    return TITLE + "\n".join(_block(name, blocks[name]) for name in order)
