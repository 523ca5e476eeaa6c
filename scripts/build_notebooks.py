"""Write notebooks/0*.ipynb from the cell lists in scripts/notebooks/ (outputs are added by run_notebooks).

    python -m scripts.build_notebooks          # rewrite the five notebooks without outputs
    python -m scripts.run_notebooks --commit   # then execute them on the course data

Notebooks are generated so that their structure (title, badge, overview, setup cell,
parameters, evidence) stays uniform; edit the cell lists, not the .ipynb JSON.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import nbformat

from scripts.notebook_cells import header_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_bronze_batch", "02_bronze_stream", "03_silver", "04_gold", "05_serving"]


def build(name: str) -> nbformat.NotebookNode:
    spec = importlib.import_module(f"scripts.notebooks.nb{name}")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
    }
    cells = header_cells(name, spec.TITLE, spec.OVERVIEW) + spec.CELLS
    for kind, source in cells:
        source = source.strip("\n")
        if kind == "markdown":
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        elif kind == "parameters":
            notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]}))
        else:
            notebook.cells.append(nbformat.v4.new_code_cell(source))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids keep diffs readable
    return notebook


def main() -> int:
    for name in NOTEBOOKS:
        target = ROOT / "notebooks" / f"{name}.ipynb"
        nbformat.write(build(name), target)
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
