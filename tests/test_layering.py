"""The import layering: ganbrush_core at the bottom, stylegan_ops <- inversion <- manipulate,
inpainting on the foundation alone, the pipeline, CLI and app on top, and no cycles.

Every ``import`` / ``from ... import`` in the packages' source (top level or inside functions) is
read with ``ast``, so a lazy import inside a function cannot hide a wrong dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ganbrush_core", "stylegan_ops", "inversion", "manipulate", "inpainting")
TOP = ("ganbrush_pipeline", "ganbrush_semantic", "ganbrush_cli", "app", "ganbrush_compare")
# What each package may import, besides itself and third-party code.
ALLOWED: dict[str, set[str]] = {
    "ganbrush_core": set(),
    "stylegan_ops": {"ganbrush_core"},
    "inversion": {"ganbrush_core", "stylegan_ops"},
    "manipulate": {"ganbrush_core", "stylegan_ops", "inversion"},
    "inpainting": {"ganbrush_core"},
}
OURS = set(PACKAGES) | set(TOP)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (relative imports resolve to its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the package
                names.add(path.relative_to(REPO).parts[0])
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    """``{file: our packages it imports}`` for every ``.py`` file of ``package``."""
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    return {str(f.relative_to(REPO)): (imported_modules(f) & OURS) - {package} for f in files}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_the_layers_below_it(package):
    wrong = {f: sorted(names - ALLOWED[package]) for f, names in package_imports(package).items()
             if names - ALLOWED[package]}
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'third-party code'}; found {wrong}"


def test_the_allowed_graph_has_no_cycles_and_the_foundation_is_at_the_bottom():
    graph = {p: {d for names in package_imports(p).values() for d in names} for p in PACKAGES}
    assert graph["ganbrush_core"] == set()
    assert all("ganbrush_core" in deps for p, deps in graph.items() if p != "ganbrush_core"), graph
    order: list[str] = []
    visiting: set[str] = set()

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join(trail + (node,))}"
        if node in order:
            return
        visiting.add(node)
        for dep in sorted(graph[node]):
            visit(dep, trail + (node,))
        visiting.discard(node)
        order.append(node)

    for package in PACKAGES:
        visit(package, ())
    assert order[0] == "ganbrush_core"


def test_nothing_below_the_top_imports_the_pipeline_cli_or_app():
    for package in PACKAGES:
        for f, names in package_imports(package).items():
            assert not names & set(TOP), f"{f} imports {sorted(names & set(TOP))}, which sit on top of every package"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\ndef f():\n    from manipulate.edit import edit\n    import inversion.align as a\n")
    assert imported_modules(probe) == {"os", "manipulate", "inversion"}
