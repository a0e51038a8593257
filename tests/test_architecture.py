"""The package's shape: one package per stage, no import circle, no import that points up a stage.

The order below is docs/ARCHITECTURE.md's. Every ``import`` counts, also one inside a function: a lazy import is
still a dependency (it only moves the cost). ``if TYPE_CHECKING:`` imports count too, so a type hint never hides a
dependency on a stage above.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ogaudit"

STAGES = (
    "errors progress storage settings",  # the foundation: no stage of its own
    "cache",
    "data",
    "models",
    "gradients",
    "detectors",
    "map",
    "engines",
    "results",
    "review",
    "pipeline",
    "project",
    "server",
    "api",
    "cli",
    "ui",
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names.split()}
TOP_LEVEL_MODULES = 10


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``ogaudit`` module that ``path`` imports, absolute or relative, at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "ogaudit")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "ogaudit":
                continue
            for alias in node.names:  # ``from ogaudit.data import text`` imports the module ogaudit.data.text
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _exists(candidate) else base)
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in imported_modules(path) if m in modules and m != name} for name, path in modules.items()}


def test_every_module_has_a_stage():
    unknown = sorted(
        {stage_of(m) for m in graph() if stage_of(m) not in RANK and stage_of(m) not in (None, "__main__")}
    )
    assert unknown == [], f"modules outside the stage order {STAGES}: {unknown}"


def test_no_import_points_up_a_stage():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if stage_of(module) in RANK and stage_of(target) in RANK and RANK[stage_of(target)] > RANK[stage_of(module)]
    )
    assert upward == []


def test_no_import_circle():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_few_top_level_modules():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(modules) <= TOP_LEVEL_MODULES, modules


def test_import_ogaudit_loads_no_torch():
    code = "import sys, ogaudit; ogaudit.__all__; print(sorted(m for m in ('torch', 'streamlit', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- optional heavy dependencies stay at the edge


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_ui_package_imports_streamlit():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "ui" not in path.relative_to(PACKAGE).parts[:1] and "streamlit" in _imports(path)
    ]
    assert offenders == []


def test_only_the_ray_engine_imports_ray_and_only_inside_functions():
    """Ray is an optional extra: importing any ogaudit module must work without it."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "ray_engine.py" and "ray" in _imports(path)
    ]
    assert offenders == []
    tree = ast.parse((PACKAGE / "engines" / "ray_engine.py").read_text(encoding="utf-8"))
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert "ray" not in top_level
