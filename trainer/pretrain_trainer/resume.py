"""The trainer's side of its checkpoint root, from taking it to resuming from it:

1. the run takes the root's lease (a second writer is refused, naming the owner and when its lease expires) and
   renews it before every checkpoint's manifest, so a run that lost it never publishes a checkpoint;
2. the leftovers of killed saves are removed (safe now: no other writer);
3. with `checkpoint.resumeFrom: N`, newer checkpoints written before that choice are set aside as superseded;
4. the newest checkpoint that verifies is loaded (a damaged one is set aside, and the next older one tried),
   after its saved spec and position are checked against this job (`checkpoint.compat`);
5. train.jsonl marks the records of the steps that will be trained again as superseded.

Every rank builds one `CheckpointSession` and calls each method; rank 0 alone holds the lease and writes logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pretrain_trainer.checkpoint import CheckpointError, CheckpointManager
from pretrain_trainer.checkpoint.compat import check_resumable
from pretrain_trainer.checkpoint.lease import Lease, claim, run_identity
from pretrain_trainer.checkpoint.recovery import Resumed
from pretrain_trainer.config import Job, to_dict
from pretrain_trainer.nonfinite import NonFiniteError
from pretrain_trainer.report import supersede_after

log = logging.getLogger("pretrain_trainer.train")

LogLine = Callable[[dict[str, Any]], None]


@dataclass
class Progress:
    """Where a run stands; a checkpoint holds it (with the loader's exact position)."""

    step: int = 0
    samples: int = 0  # the loader's position when training (re)starts
    tokens_seen: int = 0
    skipped: int = 0  # global batches consumed without an optimizer step (non-finite, or passed after a rollback)
    resumed_from: int | None = None


class CheckpointSession:
    """One run's hold on its checkpoint root (see the module doc)."""

    def __init__(
        self, manager: CheckpointManager, job: Job, run_dir: Path, global_samples: int, log_line: LogLine
    ) -> None:
        self.manager = manager
        self.job = job
        self.run_dir = run_dir
        self.global_samples = global_samples
        self.log_line = log_line
        self.is_main = manager.rank == 0
        self.lease = Lease(manager.store, job.name, run_identity(run_dir)) if self.is_main else None

    def start(self) -> None:
        """Take the lease (LeaseHeld on every rank if another run owns the root) and clean up killed saves."""
        claim(self.lease, self.manager.agree)
        if self.lease is not None:
            self.manager.fence = self.lease.renew
        removed = self.manager.clean_up()
        if removed and self.is_main:
            self.log_line({"event": "checkpoint_partial_removed", "steps": removed})

    def stop(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def resume(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, *, rollback: bool = False) -> Progress:
        """Load the newest usable checkpoint (at or after `checkpoint.resumeFrom`, unless this is a `rollback`)
        into model, optimizer and scheduler; its progress, or a fresh start's without one."""
        floor = None if rollback else self.job.spec.checkpoint.resume_from or None
        if floor is not None:
            self._supersede_after(floor)
        spec = to_dict(self.job.spec)

        def check(manifest: dict[str, Any]) -> None:
            uri = self.manager.checkpoint_uri(int(manifest["step"]))
            check_resumable(manifest, spec, self.global_samples, uri, report=self.is_main and not rollback)

        try:
            resumed = self.manager.resume(model, optimizer, scheduler, floor=floor, check=check)
        except CheckpointError as exc:
            if floor is None:
                raise
            raise ValueError(f"spec.checkpoint.resumeFrom: {exc}") from exc
        if resumed is None:
            return Progress()
        if self.is_main:
            for step, moved_to, why in resumed.set_aside:
                self.log_line({"event": "checkpoint_set_aside", "step": step, "uri": moved_to, "reason": why})
        self.rewind(resumed.step, "rollback" if rollback else "resume")
        return _progress(resumed)

    def roll_back(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, start: int) -> Progress:
        """Reload the newest good checkpoint after a non-finite step on the global batch at `start`."""
        progress = self.resume(model, optimizer, scheduler, rollback=True)
        if progress.resumed_from is None:
            raise NonFiniteError(
                "spec.training.nonFinite.action is rollback, but no checkpoint was written before the non-finite "
                f"step (global batch of samples {start}..); lower checkpoint.everySteps or use action: skip"
            )
        return progress

    def rewind(self, step: int, why: str) -> None:
        """Training goes back to `step`: mark the log records of later steps superseded (rank 0)."""
        if not self.is_main:
            return
        marked = supersede_after(self.run_dir, step)
        self.log_line({"event": why, "step": step, "superseded_records": marked})

    def _supersede_after(self, floor: int) -> None:
        """Set aside the checkpoints newer than `floor` that this choice did not write (their saved spec names
        another resumeFrom), so the run continues from `floor` and its own later saves are resumed on restart.
        Nothing moves unless `floor` has a complete checkpoint."""
        complete, newer = [], []
        if self.is_main:
            complete = self.manager.steps()
            for step in complete:
                saved = self.manager.manifest(step)["trainer_state"].get("spec", {}) if step > floor else {}
                if step > floor and saved.get("checkpoint", {}).get("resumeFrom") != floor:
                    newer.append(step)
        complete, newer = self.manager.agree(None, (complete, newer))[0]
        if floor not in complete:
            raise ValueError(
                f"spec.checkpoint.resumeFrom: no complete checkpoint at step {floor} under {self.manager.uri}; "
                f"complete checkpoints: {', '.join(map(str, complete)) or 'none'}"
            )
        for step in newer:
            moved_to = self.manager.set_aside(step, "superseded")
            if self.is_main:
                log.warning("checkpoint.resumeFrom is %d: set step %d aside as %s", floor, step, moved_to)
                self.log_line({"event": "checkpoint_superseded", "step": step, "uri": moved_to})


def trainer_state(progress: Progress, loader: dict[str, Any], global_samples: int, job: Job) -> dict[str, Any]:
    """What a checkpoint's manifest holds about the run (`check_resumable` reads it back on resume)."""
    return {
        "step": progress.step,
        "loader": loader,
        "tokens_seen": progress.tokens_seen,
        "skipped_batches": progress.skipped,
        "global_batch_samples": global_samples,
        "spec": to_dict(job.spec),
        "job": job.name,
    }


def _progress(resumed: Resumed) -> Progress:
    state = resumed.trainer_state
    if not state:  # every checkpoint was set aside
        return Progress()
    return Progress(
        step=state["step"],
        samples=state["loader"]["samples_consumed"],
        tokens_seen=state["tokens_seen"],
        skipped=state.get("skipped_batches", 0),
        resumed_from=resumed.step,
    )


__all__ = ["CheckpointSession", "Progress", "trainer_state"]
