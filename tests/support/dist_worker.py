"""Process bodies for multi-process tests (torch.multiprocessing.spawn needs them importable by name)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist


def reduce_metrics(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Join a gloo group, all-reduce rank-dependent values, write what came back to out_dir/rank-N.json."""
    from pretrain_trainer.metrics import all_reduce_mean, all_reduce_sum

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # Each rank builds its dict in a different key order: the reduction must not depend on it.
        values = {"loss": 1.0 + rank, "grad_norm": 10.0 * (rank + 1), "lr": 3e-4}
        if rank % 2:
            values = dict(reversed(values.items()))
        counts = {"tokens": 1000 * (rank + 1), "bytes": 2**40 + rank}
        result = {"mean": all_reduce_mean(values), "sum": all_reduce_sum(counts), "empty": all_reduce_mean({})}
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(result))
