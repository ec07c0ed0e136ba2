"""The layout keeps its promises: imports point down the pipeline, no module imports
itself back through others, and README's layout names every module."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bot"

# metrics: the metric objects and their text format, no I/O; counted in at every level,
# down to the integrations' one HTTP seam, so it sits with the foundation.
FOUNDATION = {"model", "config", "logs", "jsonvalues", "locks", "metrics"}
# Which parts each part of bot/ may import (besides itself). Clients know nothing of
# outputs, storage nothing of the queue or the outputs, routers only plan jobs.
ALLOWED: dict[str, set[str]] = {
    "jsonvalues": set(),
    "logs": set(),
    "config": set(),
    "locks": set(),
    "metrics": set(),
    "model": {"jsonvalues"},
    "embedded": {"logs"},
    "error_tracking": {"config", "logs", "model"},
    "integrations": {"config", "logs", "model", "metrics"},
    "store": {"config", "logs", "model", "jsonvalues"},
    "queue": {"logs", "model"},
    "routers": {"logs", "model"},
    "outputs": FOUNDATION | {"integrations", "store"},
    # Checks of every configured part, used by the web home page, worker start-up and
    # the `doctor` command alike, so it sits below all three.
    "doctor": FOUNDATION | {"integrations", "store", "queue", "outputs"},
    "worker": FOUNDATION | {"integrations", "store", "queue", "outputs", "doctor"},
    "web": FOUNDATION | {"integrations", "store", "queue", "routers", "doctor"},
    "cli": FOUNDATION
    | {"embedded", "error_tracking", "integrations", "store", "queue", "routers", "outputs"}
    | {"doctor"}
    | {"worker", "web"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(BOT.rglob("*.py"))}


def part_of(module: str) -> str:
    """``bot.web.app`` is part of ``web``; ``bot.__main__`` of ``cli``."""
    name = module.split(".")[1] if "." in module else ""
    return "cli" if name == "__main__" else name


def imports_of(module: str) -> Iterator[str]:
    """Every bot module ``module`` imports, wherever the import statement is."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            # ``from bot.store import jobs`` imports the module bot.store.jobs.
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == "bot" or name.startswith("bot."):
                yield name


GRAPH = {module: set(imports_of(module)) - {module} for module in MODULES}


def test_every_import_points_down() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if part_of(target) != part_of(module)
        and part_of(target) not in ALLOWED[part_of(module) or "cli"]
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if target not in GRAPH:
                continue
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_part_is_known() -> None:
    assert {part_of(m) for m in MODULES if m != "bot"} <= set(ALLOWED)


def layout_paths(readme: str) -> set[str]:
    """The paths README's layout tree names, two spaces of indent per level."""
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    paths: set[str] = set()
    parents: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        del parents[depth:]
        path = "".join(parents) + name
        paths.add(path.rstrip("/"))
        if name.endswith("/"):
            parents.append(name)
    return paths


def test_the_readme_layout_names_every_module() -> None:
    named = layout_paths((ROOT / "README.md").read_text())
    modules = {str(p.relative_to(ROOT)) for p in MODULES.values() if p.name != "__init__.py"}
    folders = {str(p.parent.relative_to(ROOT)) for p in MODULES.values()}
    assert sorted(modules - named) == []
    assert sorted(folders - named) == []
    # And names nothing that is gone.
    gone = [p for p in named if p.startswith("bot") and not (ROOT / p).exists()]
    assert gone == []


def test_no_comment_quotes_a_measured_figure() -> None:
    figure = re.compile(r"[0-9][0-9,.]* ?(req/s|µs|ms of CPU|jobs/s)")
    quoted = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in [*BOT.rglob("*.py"), *BOT.rglob("*.sql")]
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if figure.search(line)
    ]
    assert quoted == [], "measured figures belong in BENCHMARKS.md"
