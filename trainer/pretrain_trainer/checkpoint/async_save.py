"""Checkpoints that do not stop training: the loop is blocked only while the state is copied to host memory.

    saver = CheckpointSaver(manager)               # all ranks, at the same point (it creates a process group)
    blocked_s = saver.save(step, model, optimizer, scheduler, trainer_state)
    ...                                           # train on; saver.poll() reports a save that completed
    saver.close()                                 # before exit, SIGTERM, or loading: the pending save completes

`CheckpointSaver(manager, background=False)` saves in place (`CheckpointManager.save`, then prune) behind the same
interface, so the training loop has one code path for `checkpoint.async: true` and `false`.

`save` copies the state with `torch.distributed.checkpoint`'s stager (`DefaultStager`: pinned host buffers on a
GPU, reused from one save to the next) and captures this rank's RNG states, then returns. A background thread per
rank writes the DCP files from that copy, uploads them, agrees with the other ranks and writes MANIFEST.json last,
exactly as a synchronous save (`CheckpointManager.commit`), then prunes. Its collectives run on a gloo group of
their own, so they never interleave with the loop's collectives on the default group.

One save is in flight at a time: the next `save` (and `wait`) first waits for the previous one and raises its
error, on every rank. A checkpoint counts only once its manifest exists, and the manifest is written after every
rank's upload finished, so a process killed in the middle of a background save leaves a manifest-less folder that
resume never picks (and `clean_up` removes).

Why not `dcp.async_save` itself: it runs only the DCP file writes in its thread; the upload, the agreement and
the manifest would need a second thread that waits for it. Staging with its `DefaultStager` and running the whole
commit in one thread keeps one ordered sequence of collectives per rank.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

from pretrain_trainer.checkpoint.layout import checked_trainer_state
from pretrain_trainer.checkpoint.manager import CheckpointManager
from pretrain_trainer.checkpoint.rng import rng_state


@dataclass(frozen=True)
class Saved:
    """A save that completed: its step, URI, and seconds from `save()` to its manifest."""

    step: int
    uri: str
    seconds: float


class CheckpointSaver:
    """Checkpoint saves for one CheckpointManager, in the background by default (see the module docstring).
    Every rank holds one."""

    def __init__(
        self, manager: CheckpointManager, *, background: bool = True, pinned_memory: bool | None = None
    ) -> None:
        """`pinned_memory`: stage into page-locked host memory (fast GPU→host copies); default: when CUDA is
        available. A collective when the manager is distributed: every rank constructs its saver together."""
        self.manager = manager
        self.background = background
        pinned = torch.cuda.is_available() if pinned_memory is None else pinned_memory
        self._stager = DefaultStager(
            StagingOptions(
                use_pinned_memory=pinned, use_shared_memory=False, use_async_staging=False, use_non_blocking_copy=False
            )
        )
        # gloo: the background thread's collectives (DCP planning, agreements) on host memory, apart from NCCL's.
        self._group = dist.new_group(backend="gloo") if manager.distributed and background else None
        self._pending: Future[Saved] | None = None
        self._reported = True

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        trainer_state: dict[str, Any],
        *,
        known_good: bool = True,
    ) -> float:
        """Start the checkpoint of `step` (all ranks call this) and return the seconds the caller was blocked:
        waiting for the previous save, then copying the state to host memory. Raises the previous save's error;
        a previous save not yet reported by `poll`/`wait` is not reported after this, so wait for it first."""
        started = time.monotonic()
        self.wait()
        state_json = checked_trainer_state(step, trainer_state)
        state = self.manager.state_dict(model, optimizer, scheduler)
        if not self.background:  # in place: an error raises here, the save is reported by the next poll
            saved = self._commit(step, state, rng_state(), state_json, known_good, started)
            self._pending, self._reported = Future(), False
            self._pending.set_result(saved)
            return time.monotonic() - started
        staged = self._stager.stage(state)
        rng = rng_state()
        blocked = time.monotonic() - started
        self._pending = future = Future()
        self._reported = False
        args = (step, staged, rng, state_json, known_good, started)
        # A daemon thread: a trainer that dies mid-save exits without finishing (or waiting for) an upload whose
        # checkpoint could no longer be trusted; its manifest is never written, so nothing of it counts.
        threading.Thread(target=self._run, args=(future, args), name="checkpoint-save", daemon=True).start()
        return blocked

    def _run(self, future: Future[Saved], args: tuple[Any, ...]) -> None:
        try:
            future.set_result(self._commit(*args))
        except BaseException as exc:  # handed to the loop, which raises it at its next poll/save/close
            future.set_exception(exc)

    def _commit(
        self, step: int, staged: dict[str, Any], rng: dict[str, Any], state_json: dict[str, Any], good: bool, t0: float
    ) -> Saved:
        group = self._group if self.background else None
        uri = self.manager.commit(step, staged, rng, state_json, known_good=good, group=group)
        self.manager.prune()  # rank 0 only, no collective
        return Saved(step, uri, time.monotonic() - t0)

    @property
    def in_flight(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def poll(self) -> Saved | None:
        """The save that completed since the last poll or wait, once; None while it runs (or none was started).
        Raises its error if it failed (on the rank that failed, or, via the agreement, on every rank)."""
        if self._pending is None or self._reported or not self._pending.done():
            return None
        self._reported = True
        return self._pending.result()

    def wait(self) -> Saved | None:
        """Block until the pending save completes; return it if not yet reported (see `poll`), raise its error."""
        if self._pending is None:
            return None
        saved = self._pending.result()
        if self._reported:
            return None
        self._reported = True
        return saved

    def close(self) -> Saved | None:
        """Wait for the pending save, then release the staging buffers (all ranks)."""
        try:
            return self.wait()
        finally:
            self._stager.close()


__all__ = ["CheckpointSaver", "Saved"]
