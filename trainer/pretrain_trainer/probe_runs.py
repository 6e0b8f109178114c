"""Downstream probes during training (`spec.evaluation.probes`): every `everySteps` steps, and once at the end, the
probe of `probe.py` runs on the current model and its accuracy goes wherever the run's progress goes (the
reporter: /metrics, train.jsonl, summary.json, and from there the job's status).

    probes = TrainingProbes(spec.evaluation.probes, tokenizer, is_main=rank == 0, collective=fsdp and world > 1)
    if probes.due(step):
        for result, seconds in probes.run(raw_model, objective.probe_target(raw_model), device, autocast):
            reporter.probe(step, result, seconds)

Rank 0 probes; the other ranks go on to the next step and wait for it there. Only under FSDP with more than one
rank, where a forward pass gathers the sharded weights from every rank, do all ranks run the probe (the same
texts, so the same collectives), and rank 0 alone reports it. The features are frozen (no gradient, eval mode, the
trainer's autocast); the model is back in training mode at the next step. A run's time is bounded by
`maxExamples`, a fixed sample (the test set is whole); the stall watchdog's timeout must cover a run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer

from pretrain_trainer.probe import ProbeResult, probe_model

if TYPE_CHECKING:
    from pretrain_trainer.spec_objectives import ProbesSpec


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
        self, root: torch.nn.Module, target: torch.nn.Module, device: torch.device, autocast: torch.dtype | None
    ) -> list[tuple[ProbeResult, float]]:
        """(result, seconds) per task of probing `target` (a part of the trained module `root`, or itself) on rank
        0; nothing on the other ranks (which take part in the forward passes only when `collective`).

        Under FSDP2 the parameters that `root` shards itself (embeddings, heads: those of no inner FSDP unit) are
        gathered only by its own forward, which a `target` below it does not run: they are gathered here for the
        probe (every rank, a collective), and every FSDP unit is sharded again after it."""
        if not (self.is_main or self.collective):
            return []
        gather = self.collective and hasattr(root, "unshard")
        if gather:
            root.unshard()
        out = []
        try:
            for task in self.spec.tasks:
                started = time.perf_counter()
                result = probe_model(target, self.tokenizer, task, self.spec.max_examples, device, autocast)
                out.append((result, time.perf_counter() - started))
        finally:
            if gather:  # every FSDP unit: one whose forward ran outside the root's keeps its weights otherwise
                for module in root.modules():
                    if hasattr(module, "reshard"):
                        module.reshard()
        return out if self.is_main else []


__all__ = ["TrainingProbes", "standalone"]
