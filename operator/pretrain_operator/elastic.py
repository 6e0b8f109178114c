"""Elastic worker counts: how many worker pods a job's gang should have, as pure decisions.

A job with `workers.minReplicas` below `workers.replicas` trains on any number of pods in that range. The gang
is static once started (torchrun's static rendezvous on a fixed `PET_NNODES`), so a new size means a gang restart;
the trainer keeps the global batch by gradient accumulation and resumes at the exact next sample.

    bounds = Bounds.of(spec.workers)
    decision = restart_size(bounds, size, gang)                # a gang restart after a preemption
    decision = decide(bounds, Observed(size, gang, now, spares, last_resize))  # each reconcile of a started gang

What the operator can see of the cluster's capacity is what the scheduler says about pods: a gang pod that stays
`PodScheduled=False/Unschedulable` for `scaleDownAfterSeconds` means there is no room for it, and a pod the node or
the scheduler took away (eviction, `DisruptionTarget`) means its place is gone. To find out whether room came back
the operator asks the scheduler the same question: once `scaleUpCooldownSeconds` have passed since the last resize,
it holds one spare pod per missing worker (same resources, node selector, tolerations, affinity and priority as a
worker, running nothing but a sleep), and a spare that gets placed is room for one more worker. The cool-down keeps
capacity that comes and goes from restarting the job over and over; shrinking never waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pretrain_trainer.spec_workers import WorkersSpec

from .workers import Worker

SCALED_DOWN = "ScaledDown"
SCALED_UP = "ScaledUp"


@dataclass(frozen=True)
class Bounds:
    """The sizes a job may train on and its timing, from spec.workers."""

    fewest: int
    most: int
    scale_down_after_s: float
    cooldown_s: float

    @classmethod
    def of(cls, workers: WorkersSpec) -> Bounds:
        return cls(
            fewest=min(workers.min_size, workers.replicas),
            most=workers.replicas,
            scale_down_after_s=float(workers.scale_down_after_seconds),
            cooldown_s=float(workers.scale_up_cooldown_seconds),
        )

    @property
    def elastic(self) -> bool:
        return self.fewest < self.most

    def clamp(self, size: int) -> int:
        """`size` moved into fewest..most (after an edit of the spec)."""
        return max(self.fewest, min(self.most, size))


@dataclass(frozen=True)
class Decision:
    """How many workers the gang should have, and what the operator should do meanwhile."""

    size: int
    reason: str = ""  # ScaledDown | ScaledUp when `size` differs from the current size; else ""
    message: str = ""  # why: for the event and the status message
    spares: int = 0  # spare pods to hold (capacity probes for indices size..size+spares-1)


def restart_size(bounds: Bounds, size: int, gang: Sequence[Worker]) -> Decision:
    """The size of the gang restart after a preemption: the workers whose node or scheduler took them away have
    lost their place, so the new gang leaves them out (never below minReplicas); the others merely stopped with
    the gang. A failure, or an exit 143 without an eviction, keeps the size."""
    taken = sum(w.displaced for w in gang)
    target = bounds.clamp(size - taken) if bounds.elastic else size
    if target >= size:
        return Decision(size)
    return Decision(
        target,
        SCALED_DOWN,
        f"{taken} of {size} workers taken away (evicted or preempted): restarting on {target} workers "
        f"(workers.minReplicas {bounds.fewest}, workers.replicas {bounds.most}); it grows back when capacity returns",
    )


@dataclass(frozen=True)
class Observed:
    """A started gang as the operator sees it: `gang` its worker pods, `spares` the spare pods held for growing,
    `last_resize` when the gang last changed size (or first started)."""

    size: int
    gang: Sequence[Worker]
    now: datetime
    spares: Sequence[Worker] = ()
    last_resize: datetime | None = None


def decide(bounds: Bounds, seen: Observed) -> Decision:
    """The size the started gang should have now; a job that is not elastic always keeps its size."""
    if not bounds.elastic:
        return Decision(seen.size)
    return _shrink(bounds, seen) or _grow(bounds, seen) or Decision(seen.size)


def _shrink(bounds: Bounds, seen: Observed) -> Decision | None:
    """Pods the scheduler cannot place: after scaleDownAfterSeconds, restart on the ones it placed."""
    size = seen.size
    since = [w.unschedulable_since for w in seen.gang if w.state == "pending" and w.unschedulable_since is not None]
    if not since:
        return None
    waited = max((seen.now - t).total_seconds() for t in since)
    target = bounds.clamp(size - len(since))
    if target >= size:  # already at the fewest: wait for the scheduler, as any gang does
        return Decision(size)
    if waited < bounds.scale_down_after_s:
        return Decision(size)
    return Decision(
        target,
        SCALED_DOWN,
        f"{len(since)} of {size} workers unschedulable for {waited:.0f} s (workers.scaleDownAfterSeconds: "
        f"{bounds.scale_down_after_s:g}): restarting on {target} workers (workers.minReplicas {bounds.fewest}); "
        "it grows back when capacity returns",
    )


def _grow(bounds: Bounds, seen: Observed) -> Decision | None:
    """Below the most workers with the whole gang training: after the cool-down, hold spare pods, and grow by the
    ones the scheduler placed."""
    size = seen.size
    if size >= bounds.most or sum(w.state == "running" for w in seen.gang) < size:
        return None
    waited = (seen.now - seen.last_resize).total_seconds() if seen.last_resize is not None else bounds.cooldown_s
    if waited < bounds.cooldown_s:
        return Decision(size)
    placed = sum(s.state == "running" and s.index >= size for s in seen.spares)
    if not placed:
        return Decision(size, spares=bounds.most - size)
    target = min(bounds.most, size + placed)
    return Decision(
        target,
        SCALED_UP,
        f"capacity for {target - size} more workers (spare pods scheduled): restarting on {target} workers "
        f"(workers.replicas {bounds.most})",
    )


__all__ = ["SCALED_DOWN", "SCALED_UP", "Bounds", "Decision", "Observed", "decide", "restart_size"]
