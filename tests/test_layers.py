"""The import graph of the three packages, read from the source (every import, also those inside functions):
no cycle, and no edge against the layers.

Layers, bottom up: ``firmware_host`` (runtime and shared basics) < ``converters`` (conversion) < ``edge_age``.
Inside ``firmware_host``: the basics at its top (errors, logs, progress, quiet) < ``files`` < ``capture`` <
``infer`` < ``detect`` < ``sinks`` < ``pipeline`` < ``serve``; at most MAX_TOP_MODULES modules at its top and
MAX_ROOM_MODULES in a room.
Inside ``edge_age``: ``data`` < ``eval`` < ``report`` < ``train`` < ``bench`` < ``cli``; ``eval`` reaches up to
``train`` only for model I/O (``edge_age.train.model_io``), and the top-level modules sit beside ``data``
(``conversion`` beside ``bench``). Run ``python tests/test_layers.py`` to print the graph and its cycles.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("firmware_host", "converters", "edge_age")
# Third-party modules a layer must never import (the runtime runs without them).
FORBIDDEN_LIBRARIES = {"firmware_host": ("tensorflow", "tf_keras", "tensorflow_model_optimization", "matplotlib")}
# Rank of each group; an import may only go to the same or a lower rank (exceptions in ALLOWED_UP).
RANKS = {"firmware_host": 0, "firmware_host.files": 0.1, "firmware_host.capture": 0.2, "firmware_host.infer": 0.3,
         "firmware_host.detect": 0.4, "firmware_host.sinks": 0.5, "firmware_host.pipeline": 0.6,
         "firmware_host.serve": 0.7, "converters": 1, "edge_age": 2, "edge_age.members": 2, "edge_age.data": 3,
         "edge_age.eval": 4, "edge_age.report": 5, "edge_age.train": 6, "edge_age.bench": 7,
         "edge_age.conversion": 7, "edge_age.cli": 8, "edge_age.__main__": 9}
ALLOWED_UP = {("edge_age.eval", "edge_age.train.model_io")}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the three packages, by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported(module: str, path: Path) -> set[str]:
    """Every absolute name ``module`` imports, anywhere in its source: ``a.b`` for ``import a.b`` and
    ``from a import b`` alike (``b`` may be a module or a name in ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            names.update(f"{parent}.{alias.name}" for alias in node.names)
    return names


def graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between the packages' modules, third-party top-level names each module imports); an imported
    name counts as an edge to the innermost module that holds it."""
    mods = modules(root)
    edges, external = {}, {}
    for module, path in mods.items():
        edges[module], external[module] = set(), set()
        for name in imported(module, path):
            if name.split(".")[0] not in PACKAGES:
                external[module].add(name.split(".")[0])
                continue
            target = name
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target != module:
                edges[module].add(target)
    return edges, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def group(module: str) -> str:
    """The layer group of a module: the longest key of RANKS it falls under."""
    return max((g for g in RANKS if module == g or module.startswith(g + ".")), key=len)


def violations(edges: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if RANKS[group(target)] > RANKS[group(module)] and (group(module), target) not in ALLOWED_UP:
                out.append(f"{module} -> {target} ({group(module)} may not import {group(target)})")
        for package, libraries in FORBIDDEN_LIBRARIES.items():
            if module.split(".")[0] == package:
                out.extend(f"{module} imports {lib}" for lib in sorted(external[module] & set(libraries)))
    return out


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_imports_follow_the_layers():
    assert violations(*graph()) == []


MAX_POSITIONAL = 5  # beyond about four parameters, the rest are keyword-only (``self`` and CLI commands aside)


def long_positional_signatures(root: Path = ROOT) -> list[str]:
    """Functions of the three packages that take more than MAX_POSITIONAL positional parameters."""
    found = []
    for module, path in modules(root).items():
        if module.startswith("edge_age.cli"):
            continue  # typer maps every parameter of a command to an option
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(names) > MAX_POSITIONAL:
                    found.append(f"{module}.{node.name}({', '.join(names)})")
    return found


def test_long_signatures_are_keyword_only():
    assert long_positional_signatures() == []


MAX_TOP_MODULES, MAX_ROOM_MODULES = 8, 10


def crowded_rooms(root: Path = ROOT) -> list[str]:
    """``firmware_host``'s top and its rooms that hold more modules than allowed (``__init__.py`` counts)."""
    top = root / "firmware_host"
    found = []
    for room in [top, *sorted(p for p in top.iterdir() if (p / "__init__.py").is_file())]:
        count, limit = len(list(room.glob("*.py"))), MAX_TOP_MODULES if room == top else MAX_ROOM_MODULES
        if count > limit:
            found.append(f"{room.relative_to(root)}: {count} modules (at most {limit})")
    return found


def test_firmware_host_rooms_stay_small():
    assert crowded_rooms() == []


def test_the_reader_sees_imports_inside_functions_and_cycles(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "firmware_host" / "a.py").write_text("def f():\n    from firmware_host import b\n")
    (tmp_path / "firmware_host" / "b.py").write_text("from . import a\nimport tensorflow\n")
    (tmp_path / "firmware_host" / "c.py").write_text("from edge_age.data import x\n")
    edges, external = graph(tmp_path)
    assert cycles(edges) == [["firmware_host.a", "firmware_host.b"]]
    found = violations(edges, external)
    assert "firmware_host.b imports tensorflow" in found
    assert any(v.startswith("firmware_host.c -> edge_age") for v in found)


def test_a_lower_room_may_not_import_a_higher_one(tmp_path):
    for room in ("firmware_host", "firmware_host/infer", "firmware_host/serve", "converters", "edge_age"):
        (tmp_path / room).mkdir(parents=True, exist_ok=True)
        (tmp_path / room / "__init__.py").write_text("")
    (tmp_path / "firmware_host" / "infer" / "model.py").write_text("from firmware_host.serve.app import x\n")
    (tmp_path / "firmware_host" / "serve" / "app.py").write_text("from firmware_host.infer import model\n")
    found = violations(*graph(tmp_path))
    assert found == ["firmware_host.infer.model -> firmware_host.serve.app "
                     "(firmware_host.infer may not import firmware_host.serve)"]


if __name__ == "__main__":
    edges, external = graph()
    for component in cycles(edges):
        print("cycle:", " <-> ".join(component))
    for line in violations(edges, external):
        print("against the layers:", line)
    if "-v" in sys.argv:
        for module in sorted(edges):
            print(module, "->", " ".join(sorted(edges[module])))
