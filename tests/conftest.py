import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SQUAD_DEV = REPO / "data" / "squad" / "dev-v2.0.json"

# Tests never reach for the hub: a missing model must fail fast, not wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The notebooks' checked outputs were made with the model each pins in its constants cell; a BERTL11_MODEL set in the
# shell (which a reader may use to try another model) would change them. nbval's kernels inherit this environment.
os.environ.pop("BERTL11_MODEL", None)
# One fresh weight cache per test session, shared by the xdist workers (they inherit the controller's
# environment), so tests neither read nor litter the user's ~/.cache/bertl11.
os.environ.setdefault("BERTL11_CACHE", tempfile.mkdtemp(prefix="bertl11-test-cache-"))
# Compiling the fast path's forward (bertl11/compiled.py) takes minutes per model on 2 cores, so tests run it
# eager unless they force it otherwise (tests/test_compiled.py), as a user can.
os.environ.setdefault("BERTL11_FAST_PATH", "eager")
# Under pytest-xdist two workers share the 2 cores: a second OpenMP thread per worker only waits at GEMM
# barriers (runs got 8-12x slower), so each worker, and the CLIs and notebook kernels it starts, use one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# The files that take longest, longest first. `make test` hands whole files to its two xdist workers
# (`--dist loadfile --no-loadscope-reorder`) in collection order, so starting these first lets the short files fill
# in at the end and both workers finish together; xdist's default order (most tests first) sent the two longest,
# single-test files last and ended the run with one worker idle for 76 s. Seconds per file, 2 workers, AMD EPYC
# AVX-512, 2026-12-07: compiled 93, squad_reference 89, shipped 59, emulator 56, wheel 55, distributed 48, the ttnn
# replay 47, notebook 03 37, fpu 28. A stale list costs only balance, never a result.
LONGEST_FILES = (
    "tests/test_compiled.py", "tests/test_squad_reference.py", "tests/test_shipped.py", "tests/test_emulator.py",
    "tests/test_wheel.py", "tests/test_distributed.py", "tests/contract/test_ttnn_replay.py",
    "notebooks/03_squad_v2.ipynb", "tests/test_fpu.py", "tests/test_finetune.py", "tests/test_soup.py",
    "tests/test_app.py", "notebooks/02_demo_batch.ipynb", "tests/test_parity.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: cells keep their order


# A test that wants one line shown at the end of the run (CI's log) records it as this user property
# (`record_property`); pytest-xdist forwards properties to the controller, which prints them.
SUMMARY_PROPERTY = "summary_line"


def pytest_terminal_summary(terminalreporter):
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == SUMMARY_PROPERTY and getattr(report, "when", "call") == "call":
                    terminalreporter.write_line(value)


@pytest.fixture(scope="session")
def squad_pairs():
    """(question, context) pairs from SQuAD v2 dev, of varied lengths, answerable and not."""
    articles = json.loads(SQUAD_DEV.read_text())["data"]
    pairs = []
    for article in articles[:6]:
        for paragraph in article["paragraphs"][:2]:
            qa = paragraph["qas"][0]
            pairs.append((qa["question"], paragraph["context"]))
    return pairs


@pytest.fixture(scope="session")
def small_squad(tmp_path_factory):
    """Three training-pool articles, a few paragraphs each, for short fine-tunes: the last one becomes the
    validation article."""
    from bertl11.squad.split import HELD_OUT_ARTICLES

    articles = [a for a in json.loads(SQUAD_DEV.read_text())["data"] if a["title"] not in HELD_OUT_ARTICLES][:3]
    path = tmp_path_factory.mktemp("data") / "small.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{**a, "paragraphs": a["paragraphs"][:4]} for a in articles]}))
    return path


def encode(tokenizer, pairs, max_length=384):
    """Tokenise like the seed's demo: question + context, truncated to max_length, padded to the longest."""
    questions, contexts = zip(*pairs)
    return tokenizer(
        list(questions), list(contexts), truncation="only_second", max_length=max_length, padding="longest", return_tensors="pt"
    )


def run_cli(*args, env=None, timeout=600):
    """`bertl11 ARGS` in a new process, offline, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bertl11.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def run_main(capsys, *args):
    """`bertl11 ARGS` in this process through `cli.main` (seconds faster than a new process, for the many
    argument checks), as a CompletedProcess like `run_cli`'s; for what needs a fresh process (its environment
    read at import, a real exit), use `run_cli`."""
    from bertl11.cli import main

    capsys.readouterr()  # what the test printed before is not the command's
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["bertl11", *args], code, out, err)


def assert_user_error(result, *words):
    """Exit 2 with exactly one line on stderr, no traceback, naming each of `words`."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
