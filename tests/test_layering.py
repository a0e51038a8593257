"""The core library runs without Streamlit: only app.py and ogaudit/ui/ may import it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ogaudit"


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
