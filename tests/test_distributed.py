"""`torchrun -m bertl11 squad` over two CPU processes (gloo): the same files as one process, and a killed rank
ending the job in bounded time with one line that names it."""

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bertl11.cli import main
from bertl11.distributed import Ranks, shard, threads_per_rank
from bertl11.errors import UserError
from bertl11.commands.squad import OUT_LOCK
from conftest import REPO, SQUAD_DEV, run_cli

TORCHRUN = Path(sys.executable).with_name("torchrun")
SQUAD = ["squad", "--model", "tiny", "--config", "FLOAT32", "--data", str(SQUAD_DEV)]
OUTPUTS = ("predictions.json", "na_probs.json", "eval.json")


def torchrun(*args, **popen):
    """`torchrun --nproc-per-node 2 -m bertl11 ARGS`, offline, started (not waited for)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([str(TORCHRUN), "--nproc-per-node", "2", "-m", "bertl11", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_two_ranks_write_what_one_process_writes(tmp_path):
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    alone = run_cli(*SQUAD, "--limit", "200", "--out", str(single))
    assert alone.returncode == 0, alone.stderr
    job = torchrun(*SQUAD, "--limit", "200", "--out", str(ranks), text=True)
    stdout, stderr = job.communicate(timeout=600)
    assert job.returncode == 0, stderr
    # predictions.json bit for bit; na_probs.json too, whose floats come straight from each window's logits
    for name in OUTPUTS:
        assert (ranks / name).read_bytes() == (single / name).read_bytes(), name
    scores = [line for line in alone.stdout.splitlines() if "EM " in line]
    assert "2 ranks" in stdout and [line for line in stdout.splitlines() if "EM " in line] == scores  # rank 0 alone reports


def _child_with(parent: int, variable: str) -> int | None:
    """The pid of `parent`'s child whose environment holds `variable` (torchrun's worker of one local rank)."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(stat[1]) == parent and variable.encode() in environ:
            return int(entry.name)
    return None


def test_a_killed_rank_fails_the_job_with_one_line_naming_it(tmp_path):
    out = tmp_path / "out"
    job = torchrun(*SQUAD, "--limit", "1000", "--out", str(out))  # ~1000 windows: seconds of work to interrupt
    stderr, reader = _read_stderr(job)
    try:
        deadline = time.monotonic() + 300
        while b"feature" not in stderr:  # rank 0's progress bar: the ranks are running the model
            assert job.poll() is None and time.monotonic() < deadline, stderr.decode(errors="replace")
            time.sleep(0.02)
        os.kill(_child_with(job.pid, "LOCAL_RANK=1"), signal.SIGKILL)
        killed = time.monotonic()
        job.wait(timeout=60)  # the bound: torchrun's agent notices at once; the roll call takes 4 s
    finally:
        job.kill()
        reader.join()
    seconds = time.monotonic() - killed
    text = stderr.decode(errors="replace")
    ours = [line for line in text.splitlines() if line.startswith("bertl11 squad: error:")]
    assert job.returncode != 0 and seconds < 30, text
    assert ours == ["bertl11 squad: error: rank 1 of 2 stopped without a word (killed or crashed; torchrun stopped "
                    "the job); nothing was written"], text
    assert "Traceback" not in text.split("failed (exitcode")[0]  # no rank's traceback; torchrun's own report follows
    assert not any((out / name).exists() for name in OUTPUTS)
    assert [p.name for p in out.iterdir()] == [OUT_LOCK]  # and no temporary files


def _read_stderr(process) -> tuple[bytearray, threading.Thread]:
    """`process`'s stderr, collected as it comes (tqdm's bar has no newlines), by a started thread."""
    collected = bytearray()
    reader = threading.Thread(target=lambda: [collected.extend(chunk) for chunk in iter(lambda: process.stderr.read1(4096), b"")])
    reader.start()
    return collected, reader


def test_without_torchruns_agent_a_silent_rank_is_named_after_the_timeout(tmp_path):
    """Ranks on another machine get no SIGTERM from the dead rank's agent: its heartbeat stopping is what they see.
    Two ranks started by hand (no torchrun; rank 0 hosts the store) stand in for them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = []
    for rank in range(2):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        ranks.append(subprocess.Popen([sys.executable, "-m", "bertl11", *SQUAD, "--limit", "1000", "--out", str(tmp_path / "out"),
                                       "--rank-timeout", "3"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    stderr, reader = _read_stderr(ranks[0])
    try:
        deadline = time.monotonic() + 300
        while b"feature" not in stderr:
            assert ranks[0].poll() is None and time.monotonic() < deadline, stderr.decode(errors="replace")
            time.sleep(0.02)
        ranks[1].kill()
        ranks[0].wait(timeout=60)
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
        reader.join()
    lines = stderr.decode(errors="replace").replace("\r", "\n").splitlines()
    assert ranks[0].returncode == 1 and "Traceback" not in stderr.decode(errors="replace")
    assert [line for line in lines if "error" in line] == [
        "bertl11 squad: error: rank 1 of 2 stopped without a word (killed or crashed; no heartbeat for 3 s); nothing was written"]
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_a_second_job_on_the_same_out_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / OUT_LOCK, "a+b") as held:  # what a running `bertl11 squad` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        job = torchrun(*SQUAD, "--limit", "5", "--out", str(out), text=True)
        _, stderr = job.communicate(timeout=300)
    ours = [line for line in stderr.splitlines() if line.startswith("bertl11 squad: error:")]
    assert job.returncode != 0 and len(ours) == 1, stderr  # rank 0 says it; rank 1, stopped by torchrun, is quiet
    assert f"another bertl11 squad writing to {out} holds the lock" in ours[0]
    assert not (out / "predictions.json").exists()


def test_shard_balances_whole_items_longest_first():
    costs = [384 * 8] * 3 + [256 * 8] * 5 + [96 * 8] * 7 + [32 * 3]
    for size in (1, 2, 3, 5):
        shares = shard(costs, size)
        assert sorted(i for share in shares for i in share) == list(range(len(costs)))
        loads = [sum(costs[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(costs)  # greedy longest-first: within one item of even
    assert shard([5, 5, 5, 5], 2) == [[0, 2], [1, 3]]
    assert shard([1], 3) == [[0], [], []]


def test_ranks_come_from_torchruns_environment():
    assert Ranks.from_environment({}) == Ranks(0, 1, 0, 1)
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert Ranks.from_environment(env) == Ranks(3, 4, 1, 2) and Ranks.from_environment({**env, "GROUP_RANK": "1"}).node == 1
    for bad in ({**env, "RANK": "x"}, {**env, "RANK": "4"}, {"WORLD_SIZE": "2"}):
        with pytest.raises(UserError):
            Ranks.from_environment(bad)
    assert threads_per_rank(1) == len(os.sched_getaffinity(0)) and threads_per_rank(10**6) == 1


def test_threads_default_to_the_cores_over_the_local_ranks(monkeypatch):
    import torch

    from bertl11.commands.options import apply_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("LOCAL_RANK", "1")
    try:
        for local_ranks, threads in ((2, None), (2, 3), (4, None)):
            monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))
            torch.set_num_threads(7)  # apply_threads must change it
            apply_threads(SimpleNamespace(threads=threads))
            assert torch.get_num_threads() == (threads or max(1, len(os.sched_getaffinity(0)) // local_ranks))
    finally:
        torch.set_num_threads(before)


def test_rank_timeout_must_be_positive(tmp_path, capsys):
    code = main([*SQUAD, "--out", str(tmp_path / "o"), "--rank-timeout", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--rank-timeout must be a number of seconds above 0" in err and len(err.strip().splitlines()) == 1
