"""The package as a user installs it: a wheel built from this checkout, installed into a fresh virtual environment
(no system site-packages), answers the packaged demo batch from a directory outside the checkout.

torch is installed first with the Makefile's pin (pip takes the local CPU wheel, not a CUDA build), then the wheel with
its dependencies from the package index; pip's cache keeps this to a couple of minutes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

TORCH = re.search(r"^TORCH \?= (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
PIP = ["-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]  # no .pyc: they cost more than they save here


def run(*command, cwd, env=None):
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the wheel, a directory outside the checkout, the wheel)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # what the build reads, copied: setuptools builds in the source tree
    shutil.copytree(REPO / "bertl11", source / "bertl11", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", source, cwd=root)
    (wheel,) = (root / "dist").glob("bertl11-*.whl")
    run(sys.executable, "-m", "venv", root / "venv", cwd=root)
    python = root / "venv" / "bin" / "python"
    run(python, *PIP, TORCH, cwd=root)
    run(python, *PIP, wheel, cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere, wheel


def test_the_wheel_holds_the_package_data(installed):
    _, _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "bertl11/data/input_data.json" in names
    assert "bertl11/data/qa_app.ipynb" in names, "bertl11 app serves it"
    assert not any(name.startswith(("tests/", "notebooks/", "data/")) for name in names)
    assert "bertl11/NOTICE" in names, "the credits travel with the package"
    assert any(re.fullmatch(r"bertl11-[^/]+\.dist-info/licenses/LICENSE", name) for name in names), names


def test_the_installed_command_says_its_version(installed):
    python, elsewhere, wheel = installed
    version = run(python.parent / "bertl11", "--version", cwd=elsewhere).strip()
    assert version == f"bertl11 {wheel.name.split('-')[1]}"


def test_installed_demo_answers_outside_the_checkout(installed, tmp_path):
    python, elsewhere, _ = installed
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "BERTL11_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    where = run(python, "-c", "import bertl11; print(bertl11.__file__)", cwd=elsewhere, env=env)
    assert str(python.parents[1]) in where and str(REPO) not in where, where
    report = json.loads(run(python.parent / "bertl11", "demo", "--model", "tiny", "--json", cwd=elsewhere, env=env))
    assert report["batch"] == 12 and len(report["answers"]) == 12
    for answer in report["answers"]:
        assert answer["context"][answer["start"]:answer["end"]] == answer["answer"]
    presets = run(python, "-c", "from bertl11.widget import presets; print(len(presets()))", cwd=elsewhere, env=env)
    packaged = json.loads((REPO / "bertl11" / "data" / "input_data.json").read_text())
    assert int(presets) == len({item["context"] for item in packaged}), "the app's presets: every held-out passage"
