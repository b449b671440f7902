"""environment.yml (conda users) and pyproject.toml (pip users) describe the same environment."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


# ttnn ships wheels for CPython 3.10 and 3.12 only; environment.yml is a Python 3.11 environment.
NOT_IN_ENVIRONMENT_YML = {"tt"}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    extras = project["optional-dependencies"]
    assert NOT_IN_ENVIRONMENT_YML <= set(extras)
    for extra in set(extras) - NOT_IN_ENVIRONMENT_YML:
        wanted |= set(extras[extra])
    conda = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip_section if not r.startswith("-e")}
    by_name = {requirement_name(r): r.replace(" ", "") for r in listed}
    for requirement in wanted:
        name = requirement_name(requirement)
        assert name in by_name, f"environment.yml lacks {name}"
        if name != "torch":  # the yml pins torch like the Makefile does
            assert by_name[name] == requirement.replace(" ", ""), f"{name}: {by_name[name]} vs {requirement}"
    assert set(by_name) <= {requirement_name(r) for r in wanted}, "environment.yml lists packages pyproject.toml lacks"


def test_makefile_pins_the_same_torch_as_environment_yml():
    pinned = re.search(r"^TORCH \?= (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert pinned in (REPO / "environment.yml").read_text()


def hidden_path(tmp_path):
    """An environment whose PATH holds make and a Python 3.11 only, and no pyenv: a machine without 3.10 or 3.12."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").symlink_to(shutil.which("make"))
    (bin_dir / "python3.11").symlink_to(sys.executable)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "no-pyenv")}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_without_a_ttnn_python_stops_in_one_line(tmp_path):
    env = hidden_path(tmp_path)
    stopped = subprocess.run(["make", "test"], cwd=REPO, env=env, capture_output=True, text=True)
    assert stopped.returncode == 2 and stopped.stdout == "", stopped.stdout
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1 and "Python 3.12 or 3.10" in lines[0] and "make test-fast" in lines[0], stopped.stderr
    planned = subprocess.run(["make", "-n", "test-fast"], cwd=REPO, env=env, capture_output=True, text=True)
    assert planned.returncode == 0 and "pytest" in planned.stdout, planned.stderr
