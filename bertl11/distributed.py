"""Many processes: `torchrun --nproc-per-node N -m bertl11 squad ...` and how its ranks work together.

torchrun starts N copies of the command with RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE set
(`Ranks.from_environment`); MASTER_ADDR/MASTER_PORT name its rendezvous store. `Job` joins them:

- a process group: gloo on CPU, nccl on CUDA with one device per local rank; its collectives give up after
  --rank-timeout seconds instead of waiting forever on a host that vanished.
- the rendezvous store, for what is not a collective, so that ranks never wait on each other mid-run: how many
  windows the ranks have finished (rank 0's progress bar shows the global count), and a heartbeat per rank,
  sent by a thread, so that a rank that died is noticed and named.

The work: every rank encodes and batches the same windows the same way, so each batch is the very tensor a
single process would run, padded to the same length; `shard` deals whole batches to ranks (their cost is the
positions they compute, so no rank waits on a long tail) and each rank runs its share. Once every window is done
the logits, float32 as computed, are gathered to rank 0, which post-processes and writes. A window's logits
depend only on its batch, so the predictions are those of one process, bit for bit.

Faults. A rank that raises prints its own one line and marks itself failed in the store. When a rank dies
without a word (killed, out of memory), torchrun's agent stops the other processes of its node with SIGTERM;
ranks on other nodes notice its heartbeat stop for --rank-timeout seconds, or a collective fail. Either way
every live rank takes a roll call, whose heartbeat still moves, and the lowest live rank prints one line naming
the ranks that stopped; all exit 1. Rank 0 writes its files only after the gather, atomically, so a failed
job leaves nothing new in --out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

from .errors import JobStopped, UserError

BEAT_SECONDS = 0.2  # a rank's heartbeat period
ROLL_CALL_SECONDS = 2.0  # ten beats: a live rank's heartbeat moves in this window even on a loaded machine
POLL_SECONDS = 0.2  # how often a rank that finished its share looks at the others' progress
CHECK_SECONDS = 1.0  # how often a rank reads the others' heartbeats (each read is a store round trip per rank)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    node: int = 0  # torchrun's GROUP_RANK: which machine

    @classmethod
    def from_environment(cls, environ=os.environ) -> Ranks:
        """torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (and GROUP_RANK); one process when they are absent."""
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            ranks = cls(*(int(environ[name]) for name in names), int(environ.get("GROUP_RANK", 0)))
        except (KeyError, ValueError):
            raise UserError(f"{', '.join(names)} must all be set to whole numbers (torchrun sets them)") from None
        if not (0 <= ranks.rank < ranks.size and 0 <= ranks.local_rank < ranks.local_size <= ranks.size):
            raise UserError(f"rank {ranks.rank} of {ranks.size} (local {ranks.local_rank} of {ranks.local_size}) is not a place in a job")
        return ranks

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1


def threads_per_rank(local_size: int) -> int:
    """This machine's cores shared out among the ranks on it."""
    return max(1, len(os.sched_getaffinity(0)) // local_size)


def shard(costs: list[int], size: int) -> list[list[int]]:
    """The indexes of `costs` dealt to `size` ranks: costliest first, each to the rank with the least cost so
    far (ties to the lower rank); each rank's indexes in order. Greedy longest-first, within one item of even."""
    loads = [0] * size
    shares: list[list[int]] = [[] for _ in range(size)]
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        rank = min(range(size), key=lambda r: (loads[r], r))
        shares[rank].append(index)
        loads[rank] += costs[index]
    return [sorted(share) for share in shares]


def batch_shares(batches, size: int) -> list[list[int]]:
    """`shard` over batches by the positions each computes (rows x padded length)."""
    return shard([batch.input_ids.numel() for batch in batches], size)


class _Stop(BaseException):
    """The job cannot finish (a BaseException, so that no `except Exception` on the way swallows it)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


def _first_line(error: BaseException) -> str:
    """torch's distributed errors run to many lines; a cause is said in one."""
    return str(error).splitlines()[0]


@contextmanager
def _store_call():
    """A store round trip: its RuntimeError (the store's host went away) stops the job."""
    try:
        yield
    except RuntimeError as error:
        raise _Stop(f"the store failed: {_first_line(error)}") from None


class Job:
    """The process group and store of a torchrun job, for the length of a `with` block.

    A `UserError` inside the block marks this rank failed and is named after it; a rank that stopped
    without a word ends the block with `JobStopped` (one rank says which; exit 1).
    """

    def __init__(self, ranks: Ranks, device: str, timeout_s: float):
        self.ranks = ranks
        self.device = device
        self.timeout_s = timeout_s
        self.backend = "nccl" if device == "cuda" else "gloo"
        self._passes = 0
        self._heard: dict[int, tuple[int, float]] = {}  # rank -> (heartbeat count, when it last moved)
        self._checked = 0.0
        self._stopping = threading.Event()

    # -- joining and leaving -------------------------------------------------------------------------------
    def __enter__(self) -> Job:
        import torch.distributed as dist

        if not dist.is_available():
            raise UserError("this torch build has no torch.distributed; run one process, without torchrun")
        if self.device == "cuda":
            if torch.cuda.device_count() < self.ranks.local_size:
                raise UserError(f"{self.ranks.local_size} ranks on this node but {torch.cuda.device_count()} CUDA devices; "
                                "start one rank per device (--nproc-per-node)")
            torch.cuda.set_device(self.ranks.local_rank)  # "cuda" is now this rank's device
        timeout = timedelta(seconds=self.timeout_s)
        try:
            store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
            store.set_timeout(timeout)
            dist.init_process_group(self.backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                                    world_size=size, timeout=timeout)
        except (RuntimeError, ValueError) as error:  # torch's DistError and store errors are RuntimeErrors
            raise UserError(f"rank {self.ranks.rank}: cannot join the job's other ranks: {_first_line(error)}") from None
        self.store = dist.PrefixStore("bertl11", store)
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        threading.Thread(target=self._beat, name="bertl11-heartbeat", daemon=True).start()
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        try:
            if isinstance(error, _Stop):
                self._stop(error.cause)
            if error is not None and not isinstance(error, JobStopped):
                self._mark_failed()  # this rank speaks for itself (a UserError's line, Ctrl-C, a bug's traceback)
            if isinstance(error, UserError) and not self.ranks.main:
                raise UserError(f"rank {self.ranks.rank}: {error}") from None
        finally:
            self._stopping.set()
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            if error is None:
                import torch.distributed as dist

                dist.destroy_process_group()
        return False

    def _mark_failed(self) -> None:
        """Tell the other ranks' roll calls that this rank has said why it stops."""
        try:
            self.store.set(f"failed/{self.ranks.rank}", "1")
        except RuntimeError:
            pass  # no store, no roll call to tell

    def _on_sigterm(self, signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the roll call; torchrun SIGKILLs after its grace period
        raise _Stop("torchrun stopped the job")

    def _beat(self) -> None:
        key = f"beat/{self.ranks.rank}"
        while not self._stopping.wait(BEAT_SECONDS):
            try:
                self.store.add(key, 1)
            except RuntimeError:
                return  # the store went with its host: the job is over, and the roll call will say so

    # -- faults --------------------------------------------------------------------------------------------
    def _beats(self) -> list[int]:
        return [int(self.store.add(f"beat/{rank}", 0)) for rank in range(self.ranks.size)]

    def _check_heartbeats(self) -> None:
        """`_Stop` if another rank's heartbeat has not moved for the timeout."""
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return
        self._checked = now
        with _store_call():
            beats = self._beats()
        for rank, count in enumerate(beats):
            last = self._heard.get(rank)
            if last is None or last[0] != count:
                self._heard[rank] = (count, now)
            elif now - last[1] > self.timeout_s:
                raise _Stop(f"no heartbeat for {self.timeout_s:g} s")

    def _stop(self, cause: str) -> None:
        """Every live rank's way out: the roll call, one line from the lowest live rank, and JobStopped."""
        try:
            before = self._beats()
            time.sleep(ROLL_CALL_SECONDS)
            after = self._beats()
            failed = {rank for rank in range(self.ranks.size) if self.store.check([f"failed/{rank}"])}
        except RuntimeError:  # the store is gone: its host (torchrun's agent, or rank 0 without one) stopped
            raise JobStopped(f"rank {self.ranks.rank} lost the job's rendezvous store ({cause}); nothing was written") from None
        silent = [rank for rank in range(self.ranks.size) if before[rank] == after[rank] and rank not in failed]
        live = [rank for rank in range(self.ranks.size) if rank not in silent and rank not in failed]
        time.sleep(ROLL_CALL_SECONDS)  # stay alive, heart beating, for the roll calls of slower ranks
        if silent and live and self.ranks.rank == live[0]:
            names = ", ".join(map(str, silent))
            raise JobStopped(f"rank{'s' if len(silent) > 1 else ''} {names} of {self.ranks.size} stopped without "
                             f"a word (killed or crashed; {cause}); nothing was written")
        raise JobStopped(None)

    # -- the work ------------------------------------------------------------------------------------------
    @contextmanager
    def node_leader_first(self):
        """The block (loading the model) runs on this machine's local rank 0 before its other ranks: a weight
        conversion then happens once, with one progress bar, and the others load the cache it wrote quietly
        (and a bad --model is reported by that rank alone)."""
        key = f"loaded/{self.ranks.node}"
        while self.ranks.local_rank != 0 and not self._has(key):
            self._check_heartbeats()
            time.sleep(POLL_SECONDS)
        yield
        if self.ranks.local_rank == 0:
            self.store.set(key, "1")

    def _has(self, key: str) -> bool:
        with _store_call():
            return self.store.check([key])

    def share(self, batches) -> list:
        """This rank's batches, in order."""
        return [batches[i] for i in batch_shares(batches, self.ranks.size)[self.ranks.rank]]

    def start_pass(self) -> None:
        self._passes += 1

    def _done(self, windows: int) -> int:
        """Windows finished by all ranks in this pass, after adding this rank's `windows`."""
        with _store_call():
            return int(self.store.add(f"done/{self._passes}", windows))

    def finished(self, windows: int, bar) -> None:
        """This rank finished `windows` more; rank 0's bar shows every rank's total."""
        bar.update(self._done(windows) - bar.n)
        self._check_heartbeats()

    def wait_for_all(self, total: int, bar) -> None:
        """Until every rank has finished its share of this pass (or one stopped)."""
        while (done := self._done(0)) < total:
            bar.update(done - bar.n)
            self._check_heartbeats()
            time.sleep(POLL_SECONDS)
        bar.update(done - bar.n)

    def gather(self, logits: list, batches) -> list | None:
        """Every window's (start, end) logits on rank 0, from the rank that computed it; None elsewhere.

        Each rank sends its windows' logits as one float32 vector (start then end of each window, windows in
        the order of its share); every rank knows every share, so no sizes travel."""
        import torch.distributed as dist

        shares = [[batches[i] for i in share] for share in batch_shares(batches, self.ranks.size)]

        lengths = [[(window, int(n)) for batch in share
                    for window, n in zip(batch.windows, batch.attention_mask.sum(dim=1).tolist())]
                   for share in shares]  # per share: (window, its length) in the share's order
        sizes = [2 * sum(n for _, n in share) for share in lengths]
        mine = [part for window, _ in lengths[self.ranks.rank] for part in logits[window]]
        vector = torch.zeros(max(sizes), dtype=torch.float32)
        if mine:
            vector[:sizes[self.ranks.rank]] = torch.from_numpy(np.concatenate(mine))
        device = "cuda" if self.backend == "nccl" else "cpu"
        vector = vector.to(device)
        received = [torch.empty_like(vector) for _ in shares] if self.ranks.main else None
        try:
            dist.gather(vector, received, dst=0)
        except RuntimeError as error:  # a peer's connection closed, or the collective timed out
            raise _Stop(f"the gather failed: {_first_line(error)}") from None
        if not self.ranks.main:
            return None
        gathered = list(logits)
        for share, vector in zip(lengths, received):
            flat, offset = vector.cpu().numpy(), 0
            for window, n in share:
                gathered[window] = (flat[offset:offset + n], flat[offset + n:offset + 2 * n])
                offset += 2 * n
        return gathered
