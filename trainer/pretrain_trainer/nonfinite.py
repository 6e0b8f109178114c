"""The non-finite policy (spec.training.nonFinite): what a run does about a step whose loss or gradient norm is
NaN or infinite. Every rank decides from the all-reduced loss and the global gradient norm, values every rank
already holds, so all ranks take the same decision without a collective of its own. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pretrain_trainer.config import NonFiniteSpec

OK, SKIP, ROLLBACK = "ok", "skip", "rollback"


class NonFiniteError(ValueError):
    """The run stops on a non-finite loss or gradient norm. A ValueError: restarting from the same checkpoint
    would hit the same batch again, so the exit code says "do not retry"."""


def finite(*values: float) -> bool:
    return all(math.isfinite(value) for value in values)


class RollBack(Exception):
    """The non-finite policy asks to reload the newest good checkpoint and pass the global batch at `start`."""

    def __init__(self, start: int, tokens_seen: int) -> None:
        super().__init__(start)
        self.start = start
        self.tokens_seen = tokens_seen


@dataclass
class NonFiniteGuard:
    """Counts the non-finite steps of one run and turns each into the policy's action."""

    spec: NonFiniteSpec
    report: Callable[[dict[str, object]], None] = lambda record: None
    """Called with a record of each non-finite step (step, loss, grad_norm, samples, action) before it is acted on."""
    events: int = 0
    passed: set[int] = field(default_factory=set)
    """Global sample positions of the batches a rollback goes past: the loop consumes them without training."""

    def decide(self, step: int, loss: float, grad_norm: float, samples: tuple[int, int]) -> str:
        """OK for a finite step; else SKIP or ROLLBACK, or NonFiniteError for `stop` and once `limit` events
        have been handled. `samples`: the global sample positions [start, end) of the step's batch."""
        if finite(loss, grad_norm):
            return OK
        action = self._action()
        record = {"step": step, "loss": str(loss), "grad_norm": str(grad_norm), "samples": samples[0]}
        self.report({**record, "action": action})
        first, last = samples[0], samples[1] - 1
        where = f"step {step}: loss {loss}, gradient norm {grad_norm} (global batch of samples {first}..{last})"
        if self.spec.action == "stop":
            raise NonFiniteError(
                f"{where}; the step was not applied and not checkpointed. spec.training.nonFinite.action is stop; "
                "lower optimizer.lr or raise warmupSteps, check the data, or set action: skip or rollback"
            )
        if self.events >= self.spec.limit:
            raise NonFiniteError(
                f"{where}; {self.events} non-finite steps were already handled with {self.spec.action}, "
                f"spec.training.nonFinite.limit is {self.spec.limit}: the run diverges, stopping"
            )
        self.events += 1
        return action

    def _action(self) -> str:
        if self.spec.action == "stop" or self.events >= self.spec.limit:
            return "stop"
        return SKIP if self.spec.action == "skip" else ROLLBACK


__all__ = ["OK", "ROLLBACK", "SKIP", "NonFiniteError", "NonFiniteGuard", "RollBack", "finite"]
