"""Downstream probes during training (`spec.evaluation.probes`): every `everySteps` steps, and once at the end, the
probe of `probe.py` runs on the current model and its accuracy goes wherever the run's progress goes (the
reporter: /metrics, train.jsonl, summary.json, and from there the job's status).

    probes = TrainingProbes(spec.evaluation.probes, tokenizer, is_main=rank == 0, collective=fsdp and world > 1)
    if probes.due(step):
        for result, seconds in probes.run(objective.probe_target(raw_model), device, autocast):
            reporter.probe(step, result, seconds)

Rank 0 probes; the other ranks go on to the next step and wait for it there. Only under FSDP with more than one
rank, where a forward pass gathers the sharded weights from every rank, do all ranks run the probe (the same
texts, so the same collectives), and rank 0 alone reports it. The features are frozen (no gradient, eval mode, the
trainer's autocast); the model is back in training mode at the next step. A run's time is bounded by
`maxExamples`, a fixed sample (the test set is whole); the stall watchdog's timeout must cover a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer

from pretrain_trainer.probe import ProbeResult, probe_model

if TYPE_CHECKING:
    from pretrain_trainer.config import ProbesSpec


def standalone(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of `tokenizer` without padding and truncation (the probe pads and truncates itself)."""
    out = Tokenizer.from_str(tokenizer.to_str())
    out.no_padding()
    out.no_truncation()
    return out


class TrainingProbes:
    """The probes of one run; built on every rank (see the module doc for which ranks do what)."""

    def __init__(self, spec: ProbesSpec, tokenizer: Tokenizer, is_main: bool, collective: bool) -> None:
        self.spec = spec
        self.tokenizer = standalone(tokenizer) if spec.every_steps else tokenizer
        self.is_main = is_main
        self.collective = collective

    @property
    def enabled(self) -> bool:
        return bool(self.spec.every_steps and self.spec.tasks)

    def due(self, step: int) -> bool:
        return self.enabled and step % self.spec.every_steps == 0

    def run(
        self, model: torch.nn.Module, device: torch.device, autocast: torch.dtype | None
    ) -> Iterator[tuple[ProbeResult, float]]:
        """(result, seconds) per task on rank 0; nothing on the other ranks (which take part in the forward passes
        only when `collective`)."""
        if not (self.is_main or self.collective):
            return
        for task in self.spec.tasks:
            started = time.perf_counter()
            result = probe_model(model, self.tokenizer, task, self.spec.max_examples, device, autocast)
            if self.is_main:
                yield result, time.perf_counter() - started


__all__ = ["TrainingProbes", "standalone"]
