"""Rules of the code that a reader relies on, checked over the package's source."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "directanimator"
MAX_LINES = 80


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from `def` to its last line, less its docstring (a diffusers-style argument
    list documents, it does not add logic)."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > limit:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({code_lines(node)} lines)")
    return found


def test_no_function_in_the_package_is_over_80_lines():
    assert long_functions(PACKAGE) == []


def test_the_length_check_finds_a_long_function_and_skips_docstrings(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    doc = '    """' + "\n".join("    doc" for _ in range(30)) + '"""\n'
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n\ndef documented():\n{doc}    return 1\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/m.py:1 long ({MAX_LINES + 1} lines)"]
