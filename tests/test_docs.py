"""The README and docs say what the code does: quoted error messages exist, named modules and links resolve."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Rows of the troubleshooting table whose message another program prints (the JVM, cqlsh, argparse's prefix), and
# the one about a slow run, which quotes a command.
NOT_OURS = ("WARNING: Using incubator modules", "WARNING: cqlsh was built against", "error: ...", "make demo")


def package_messages() -> list[str]:
    """Every string literal of the package, an f-string's replacement fields as `{}`."""
    messages = []
    for source in sorted((ROOT / "lakehouse_utils").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                messages.append("".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                messages.append(node.value)
    return messages


def troubleshooting_messages() -> list[str]:
    """The backquoted messages of the first column of README's troubleshooting table (`a` / `b`: both)."""
    section = README.read_text(encoding="utf-8").split("## Troubleshooting", 1)[1]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    # The message, or alternatives joined by " / ", opens the cell; what follows is an example or a command.
    leading = [re.match(r"\s*`[^`]+`(?:\s*/\s*`[^`]+`)*", cell).group(0) for cell in rows]
    return [quoted for cell in leading for quoted in re.findall(r"`([^`]+)`", cell)]


def matches(message: str, literal: str) -> bool:
    """`...` in the README's message stands for any text (a path, a name, a number)."""
    pattern = ".*?".join(re.escape(fragment) for fragment in message.split("..."))
    return re.search(pattern, literal, re.DOTALL) is not None


def test_every_troubleshooting_message_is_one_the_code_prints():
    literals = package_messages()
    quoted = [m for m in troubleshooting_messages() if not m.startswith(NOT_OURS)]
    assert len(quoted) >= 10, quoted  # the table was found and read
    unknown = [m for m in quoted if not any(matches(m, literal) for literal in literals)]
    assert not unknown, f"README quotes messages the package never prints (use ... for variable parts): {unknown}"


def test_the_message_check_fails_on_a_message_the_code_does_not_print():
    literals = package_messages()
    assert any(matches("cannot reach Cassandra at ...", literal) for literal in literals)
    assert not any(matches("Cassandra is unreachable at host:port", literal) for literal in literals)


def documented_files() -> list[tuple[str, str]]:
    """(document, path) for every `lakehouse_utils/...` path, and every backquoted `name.py`, that README.md,
    docs/*.md and the header of each decision record (its owner, code and tests lines, before its first section
    or paragraph in bold) name. A decision's body is history and may name modules that were moved since."""
    texts = {README: README.read_text(encoding="utf-8")}
    texts |= {doc: doc.read_text(encoding="utf-8") for doc in sorted((ROOT / "docs").glob("*.md"))}
    for doc in sorted((ROOT / "docs" / "decisions").glob("*.md")):
        lines = doc.read_text(encoding="utf-8").splitlines()[1:]
        end = next((i for i, line in enumerate(lines) if line.startswith(("#", "**"))), len(lines))
        texts[doc] = "\n".join(lines[:end])
    found = []
    for doc, text in texts.items():
        paths = re.findall(r"lakehouse_utils/[\w/]+\.py", text) + re.findall(r"`([\w/]+\.py)`", text)
        found += [(doc.relative_to(ROOT).as_posix(), path) for path in paths if "NN_name" not in path]
    return found


def test_every_module_the_docs_name_exists():
    project_files = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    named = documented_files()
    assert len(named) >= 20, named
    missing = [(doc, path) for doc, path in named
               if path not in project_files and not any(f.endswith("/" + path) for f in project_files)]
    assert not missing, f"documents name files that do not exist: {missing}"


@pytest.mark.parametrize("doc", [README, *sorted((ROOT / "docs").rglob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    text = doc.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.MULTILINE)
    relative = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    broken = [t for t in relative if t and not (doc.parent / t).exists()]
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"
