"""environment.yml (conda users) and pyproject.toml (pip users) describe the same environment."""

import re
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
