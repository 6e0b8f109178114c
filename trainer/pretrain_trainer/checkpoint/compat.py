"""Whether a checkpoint may be resumed by the current job: its saved spec is compared with the current one, and
its position with its step. Fields that change what the saved state means (data, tokenizer, model, objective,
sequence length, seeds, the optimizer's kind, the global batch) refuse the resume, naming each difference;
other changes (log interval, eval cadence, maxSteps, learning rate, parallelism, ...) are accepted and logged.
Torch-free.
"""

from __future__ import annotations

import logging
from typing import Any

from pretrain_trainer.checkpoint.layout import CheckpointCorrupt

log = logging.getLogger("pretrain_trainer.checkpoint")

# Dotted spec paths (and their subtrees) whose change makes the saved state mean something else.
MEANINGFUL = (
    "tokenizer",
    "data.train",
    "data.sequenceLength",
    "data.seed",
    "model",
    "objective",
    "training.seed",
    "optimizer.name",
)


class ResumeMismatch(ValueError):
    """The checkpoint was written by a job whose spec differs in a field that changes the state's meaning."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value} of a nested mapping (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _meaningful(path: str) -> bool:
    return any(path == root or path.startswith(root + ".") for root in MEANINGFUL)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_differences(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refused, accepted): one `path: old -> new` line per differing field, by whether it changes meaning."""
    old, new = flatten(saved), flatten(current)
    refused, accepted = [], []
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            line = f"{path}: {_short(old.get(path))} -> {_short(new.get(path))}"
            (refused if _meaningful(path) else accepted).append(line)
    return refused, accepted


def check_resumable(
    manifest: dict[str, Any], spec: dict[str, Any], global_batch_samples: int, uri: str, *, report: bool = True
) -> None:
    """Refuse (ResumeMismatch) a checkpoint whose saved spec differs in a meaningful field or whose global batch
    differs; send a manifest whose position disagrees with its step to an earlier checkpoint (CheckpointCorrupt).
    `report`: log the accepted differences (rank 0)."""
    state = manifest["trainer_state"]
    step = int(manifest["step"])
    refused, accepted = spec_differences(state.get("spec", {}), spec)
    saved_batch = state.get("global_batch_samples")
    if saved_batch != global_batch_samples:
        refused.append(f"global batch: {saved_batch} -> {global_batch_samples} samples per step")
    if refused:
        raise ResumeMismatch(
            f"{uri}: the checkpoint at step {step} was written by job {state.get('job')!r} with a different spec: "
            + "; ".join(refused)
            + ". These change what the saved state means: resume with the original values, or give this job its "
            "own checkpoint.uri"
        )
    consumed = state.get("loader", {}).get("samples_consumed")
    expected = (step + int(state.get("skipped_batches", 0))) * global_batch_samples
    if consumed != expected:
        raise CheckpointCorrupt(
            uri,
            f"its loader position ({consumed} samples consumed) disagrees with step {step} × {global_batch_samples} "
            f"samples per step (+ {state.get('skipped_batches', 0)} skipped batches) = {expected}",
        )
    if report and accepted:
        log.info("resuming step %d of %s with changed settings: %s", step, uri, "; ".join(accepted))


__all__ = ["MEANINGFUL", "ResumeMismatch", "check_resumable", "flatten", "spec_differences"]
