"""What may import what in d2lhub/, read from the source with `ast`, and what `d2lhub status` loads.

The layers (docs/architecture.md): the base modules (d2lhub/*.py) import no subpackage; the hub,
the course pipeline and grading never import the CLI or the operator's tools (d2lhub.ops); the
scripts in d2lhub/image/ run inside containers and import nothing from d2lhub; nothing imports
in a cycle, function-level imports included.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "d2lhub"
MAX_LINES = 420
HEAVY = ("jupyterhub", "nbgrader", "d2lbook", "dockerspawner", "nbformat")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The d2lhub module an imported name lands in: itself, else the package holding it; None outside d2lhub."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The d2lhub modules `module` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from d2lhub.cli import common` imports the submodule d2lhub.cli.common
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(target for target in map(resolve, names) if target and target != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def edges(sources, targets_start):
    return sorted(
        f"{module} -> {target}"
        for module in MODULES
        if sources(module)
        for target in GRAPH[module]
        if any(target == start or target.startswith(start + ".") for start in targets_start)
    )


def subpackage(module: str) -> str | None:
    """d2lhub.hub.spawner -> hub; a base module (d2lhub.config) or d2lhub itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py") else None


def test_the_graph_was_read():
    assert "d2lhub.cli.common" in GRAPH["d2lhub.cli.classroom"]  # `from d2lhub.cli import common`
    assert "d2lhub.course.build" in GRAPH["d2lhub.cli.course"]  # imported inside the verb
    assert "d2lhub.config" in GRAPH["d2lhub.state"]


def test_no_import_cycle():
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_hub_course_and_grading_never_import_the_cli_or_ops():
    bad = edges(lambda m: subpackage(m) in {"hub", "course", "grading"}, ("d2lhub.cli", "d2lhub.ops"))
    assert bad == [], "\n".join(bad)


def test_base_modules_import_no_subpackage():
    bad = sorted(
        f"{module} -> {target}"
        for module in MODULES
        if module != "d2lhub" and subpackage(module) is None
        for target in GRAPH[module]
        if subpackage(target) is not None
    )
    assert bad == [], "\n".join(bad)


def test_in_image_scripts_import_nothing_from_d2lhub():
    bad = edges(lambda m: subpackage(m) == "image", ("d2lhub",))
    assert bad == [], "\n".join(bad)


def test_no_module_is_too_long():
    long = {
        str(path.relative_to(REPO)): count
        for path in MODULES.values()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_status_help_loads_nothing_heavy():
    """`d2lhub status --help` (and so every verb's start) loads neither the hub, nbgrader nor d2lbook."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from d2lhub.cli import app\n"
        "result = CliRunner().invoke(app, ['status', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"loaded by `d2lhub status --help`: {proc.stdout.strip()}"


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "d2lhub"}


def normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_what_d2lhub_imports_is_declared():
    """pyproject's dependencies name the distribution of every package d2lhub imports (outside d2lhub/image)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]}
    distributions = packages_distributions()
    missing = sorted(
        f"{name} ({', '.join(distributions.get(name, ['not installed']))}) in {module}"
        for module, path in MODULES.items()
        if subpackage(module) != "image"
        for name in third_party_imports(path)
        if not declared & {normalized(d) for d in distributions.get(name, [name])}
    )
    assert missing == [], "imported but not in pyproject's dependencies:\n" + "\n".join(missing)
