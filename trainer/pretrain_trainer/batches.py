"""What the trainer reads: the job's sample stream. The trainer and `pretrainjob data preview` both read through
`job_loader` and build batches with the job's objective (`objectives.build_objective(...).batch`), so a preview
shows exactly what a run with the same spec reads and masks: the same loader settings, the same global positions,
the same per-sample masking seeds.
"""

from __future__ import annotations

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.data.loader import MiB, StreamingLoader
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.objectives import objective_class


def is_causal(spec: PretrainJobSpec) -> bool:
    """Whether the job's objective reads windows of L + 1 tokens (inputs and labels shifted by one)."""
    return objective_class(spec.objective.type).causal


def raw_length(spec: PretrainJobSpec) -> int:
    """Tokens the loader reads per sample (+1 when causal): `Objective.raw_length`."""
    return objective_class(spec.objective.type).raw_length(spec)


def job_loader(
    spec: PretrainJobSpec,
    shards: ShardSet,
    *,
    samples_consumed: int = 0,
    train: bool = True,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
) -> StreamingLoader:
    """The loader a rank of this job reads `shards` with (training order, or validation read once in order)."""
    seq = spec.data.sequence_length
    return StreamingLoader(
        shards,
        sequence_length=raw_length(spec),
        causal=is_causal(spec),
        global_batch_size=spec.training.batch_samples(seq),
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        seed=spec.data.seed,
        samples_consumed=samples_consumed,
        shuffle=train,
        epochs=None if train else 1,
        block_bytes=spec.data.block_mib * MiB,
        window_blocks=spec.data.shuffle_window_blocks,
        cache_bytes=spec.data.cache_mib * MiB,
        threads=spec.data.read_threads,
    )
