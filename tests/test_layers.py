"""The package's layers: imports point one way (no cycle, counting imports inside functions), the command line
lives in `cli.py` and `commands/` only, and the commands that must start instantly import no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bertl11"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from . import x` and `from .a import b` may name modules or attributes: count the modules.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph = {name: imported(name, path, known) for name, path in found.items()}
    # A module imports its package's __init__ on the way; that arrow is Python's, not the code's.
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["bertl11.errors"] = graph["bertl11.errors"] | {"bertl11.cli"}  # the bottom importing the top
    assert find_cycle(graph) is not None


def test_imports_inside_functions_count():
    graph = import_graph()
    # commands/doctor.py imports the probe only inside `report_lines`
    assert "bertl11.machine" in graph["bertl11.commands.doctor"]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_probe_imports_no_backend():
    """machine.py times the int8 linears (quantize.py); it must not reach a backend, which asks it what to run."""
    graph = import_graph()
    assert "bertl11.quantize" in graph["bertl11.machine"]
    backends = {t for t in reachable(graph, "bertl11.machine") if t.startswith("bertl11.backends")}
    assert not backends, f"bertl11.machine reaches {sorted(backends)}"


def test_the_domain_imports_nothing_from_the_command_line():
    for name, targets in import_graph().items():
        if not name.startswith(("bertl11.commands", "bertl11.cli", "bertl11.__main__")):
            upward = {t for t in targets if t.startswith("bertl11.commands") or t == "bertl11.cli"}
            assert not upward, f"{name} imports {sorted(upward)}"


def test_argparse_lives_in_the_command_line_only():
    for name, path in modules().items():
        if name.startswith("bertl11.commands") or name == "bertl11.cli":
            continue
        assert "argparse" not in path.read_text(), f"{path} uses argparse"


@pytest.mark.parametrize("argv", [["--help"], ["score", "--help"], ["doctor", "--help"]])
def test_help_imports_no_torch(argv):
    code = ("import sys\nfrom bertl11.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: bertl11" in result.stdout
