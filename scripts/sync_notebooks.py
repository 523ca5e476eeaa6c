"""Keep each notebook pair in step: `notebooks/NN_name.py` (jupytext percent, the source people
edit and review) and `notebooks/NN_name.ipynb` (the same cells plus the committed outputs).

    python -m scripts.sync_notebooks                          # every .py -> its .ipynb, outputs kept
    python -m scripts.sync_notebooks --check                  # exit 1 if a pair differs (what the test checks)
    python -m scripts.sync_notebooks --from-ipynb 05_serving  # an edit saved to the .ipynb (Colab) -> the .py

`make notebooks-sync` runs the first form. A cell keeps its outputs while its source is unchanged;
an edited cell keeps its old outputs until the notebooks are re-executed (`make notebooks`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
FORMAT = "py:percent"
SOURCE_NAME = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
# Written by nbclient when a cell runs: timestamps that change at every run and mean nothing to a reader.
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")


def notebook_names(directory: Path = NOTEBOOK_DIR) -> list[str]:
    """`NN_name` of every notebook source in `directory`, in order (01_…, 02_…, and any added later)."""
    return sorted(path.stem for path in directory.glob("*.py") if SOURCE_NAME.match(path.name))


def source_path(name: str, directory: Path = NOTEBOOK_DIR) -> Path:
    return directory / f"{name}.py"


def ipynb_path(name: str, directory: Path = NOTEBOOK_DIR) -> Path:
    return directory / f"{name}.ipynb"


def clean_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop execution timing from every cell and give cells without an id a stable one."""
    for index, cell in enumerate(notebook.cells):
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if not cell.get("id"):
            cell["id"] = f"cell-{index:02d}"
    return notebook


def paired_notebook(name: str, directory: Path = NOTEBOOK_DIR) -> nbformat.NotebookNode:
    """The cells of the .py with the outputs (and notebook metadata) of the existing .ipynb, if any."""
    source = jupytext.read(source_path(name, directory), fmt=FORMAT)
    target = ipynb_path(name, directory)
    if target.exists():
        source = combine_inputs_with_outputs(source, nbformat.read(target, as_version=4), fmt=FORMAT)
    else:
        source.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
        source.metadata.get("jupytext", {}).pop("text_representation", None)
    return clean_metadata(source)


def cell_sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def differences(name: str, directory: Path = NOTEBOOK_DIR) -> str | None:
    """None when the .ipynb holds exactly the cells of the .py (type and source), else what differs."""
    target = ipynb_path(name, directory)
    if not target.exists():
        return f"{target.name} is missing"
    expected = cell_sources(jupytext.read(source_path(name, directory), fmt=FORMAT))
    found = cell_sources(nbformat.read(target, as_version=4))
    if expected == found:
        return None
    if len(expected) != len(found):
        return f"{len(expected)} cells in the .py, {len(found)} in the .ipynb"
    index = next(i for i, (a, b) in enumerate(zip(expected, found, strict=True)) if a != b)
    first_line = (expected[index][1].splitlines() or [""])[0]
    return f"cell {index} differs (the .py's starts with {first_line!r})"


def write_ipynb(name: str, directory: Path = NOTEBOOK_DIR) -> Path:
    target = ipynb_path(name, directory)
    nbformat.write(paired_notebook(name, directory), target)
    return target


def write_source(name: str, directory: Path = NOTEBOOK_DIR) -> Path:
    """The .ipynb's cells back into the .py (after an edit made in Jupyter or Colab)."""
    notebook = nbformat.read(ipynb_path(name, directory), as_version=4)
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    target = source_path(name, directory)
    jupytext.write(notebook, target, fmt=FORMAT)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report pairs whose cells differ; exit 1 if any")
    mode.add_argument("--from-ipynb", nargs="+", metavar="NAME", help="write these .ipynb's cells into their .py")
    parser.add_argument("names", nargs="*", help="notebooks to sync (default: every notebooks/NN_*.py)")
    args = parser.parse_args(argv)
    if args.from_ipynb:
        for name in args.from_ipynb:
            print(f"wrote {write_source(Path(name).stem).relative_to(ROOT)} from its .ipynb; "
                  "now run `make lint` and `make notebooks-sync`")
        return 0
    names = args.names or notebook_names()
    if args.check:
        stale = {name: problem for name in names if (problem := differences(name)) is not None}
        for name, problem in stale.items():
            print(f"{name}: {problem}; run `make notebooks-sync` (or --from-ipynb {name} if the .ipynb was edited)")
        return 1 if stale else 0
    for name in names:
        print(f"wrote {write_ipynb(name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
