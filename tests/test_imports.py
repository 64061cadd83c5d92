"""The package's imports run one way: no module reaches itself again through project imports,
whether the import sits at the module's top or inside a function (a function-level import never
fails at import time, so only reading the imports finds such a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gsm8k_lab"

#: Project modules that may be imported inside a function, each because importing it loads a heavy
#: library at module level (what the lazy import keeps out of `--help`, bad input and `plan`).
LAZY_ALLOWED = {
    "gsm8k_lab.callbacks": "subclasses transformers.TrainerCallback, so importing it loads transformers and torch",
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, int, bool]]:
    """``(module imported, line, at module level)`` for every project import in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    top = {id(node) for node in tree.body}
    # a node is at module level when it is a top-level statement, or inside a top-level if/try
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    known = {module_name(p, root) for p in root.rglob("*.py")}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(root.name):
                continue
            for alias in node.names:  # `from . import runtime` imports a module, not a name
                sub = f"{target}.{alias.name}"
                out.append((sub if sub in known else target, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(root.name):
                    out.append((alias.name, node.lineno, id(node) in top))
    return [(m, line, at_top) for m, line, at_top in out if m != here]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): {m for m, _, _ in project_imports(p, root)} for p in sorted(root.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    pkg = tmp_path / "gsm8k_lab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle == ["gsm8k_lab.a", "gsm8k_lab.b", "gsm8k_lab.sub.c", "gsm8k_lab.a"]
    (pkg / "sub" / "c.py").write_text("import json\n")
    assert find_cycle(import_graph(pkg)) is None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_project_imports_sit_at_the_module_top(path):
    """A project import inside a function hides the layering; only modules that load a heavy library
    (LAZY_ALLOWED, each with its reason) are imported lazily, and the lazy line says why."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for module, line, at_top in project_imports(path):
        if at_top:
            continue
        assert module in LAZY_ALLOWED, f"{path.name}:{line} imports {module} inside a function"
        assert "#" in lines[line - 1], f"{path.name}:{line}: say why {module} is imported lazily"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_public_functions_come_first(path):
    """A reader meets a module's entry points before its private helpers."""
    seen_private = None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            if node.name.startswith("_"):
                seen_private = seen_private or node.name
            else:
                assert seen_private is None, f"{path.name}: public {node.name} after private {seen_private}"
