"""What the trainer feeds the model: the job's sample stream and, per window, the objective's batch.

The trainer and `pretrainjob data preview` both build their batches here, so a preview shows exactly what a run
with the same spec reads and masks: the same loader settings, the same global positions, the same per-sample
masking seeds.
"""

from __future__ import annotations

import numpy as np
import torch

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.data.loader import MiB, StreamingLoader
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.objectives import MaskingConfig, causal_lm_batch, masked_lm_batch
from pretrain_trainer.token_roles import TokenRoles


def is_causal(spec: PretrainJobSpec) -> bool:
    return spec.objective.type == "clm"


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
        sequence_length=seq,
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


def sample_generator(training_seed: int, position: int) -> torch.Generator:
    """The masking generator of the sample at global `position`: masks follow the sample, not the rank or run.

    torch's CPU generator keeps only the low 32 bits of a seed, so `seed * 2**40 + position` (the old formula)
    gave every training seed the same masks; SeedSequence mixes both numbers into the 32 bits that count.
    """
    mixed = np.random.SeedSequence([training_seed, position]).generate_state(1, dtype=np.uint32)[0]
    return torch.Generator().manual_seed(int(mixed))


def objective_batch(
    window: torch.Tensor,
    first_position: int,
    training_seed: int,
    roles: TokenRoles | None = None,
    masking: MaskingConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Model inputs for rows of `window` at global positions first_position, first_position + 1, ...

    Causal LM without `masking`; masked LM with it (each row masked by its own `sample_generator`).
    """
    if masking is None:
        return causal_lm_batch(window)
    if roles is None:
        raise ValueError("masked LM batches need the tokenizer's token roles")
    parts = [
        masked_lm_batch(window[row : row + 1], roles, masking, sample_generator(training_seed, first_position + row))
        for row in range(window.shape[0])
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
