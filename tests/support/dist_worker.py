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


def probe_under_fsdp(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Probe ELECTRA's discriminator, a part of an FSDP2-sharded ElectraPair, as the trainer does under FSDP
    (`TrainingProbes` with collective=True; the tokenizer at out_dir/tokenizer.json); write the accuracies this
    rank got and whether the parameters are sharded again afterwards to out_dir/rank-N.json."""
    import torch
    from tokenizers import Tokenizer
    from torch.distributed.fsdp import fully_shard
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    from pretrain_trainer.objectives.electra import ElectraPair
    from pretrain_trainer.probe_runs import TrainingProbes
    from pretrain_trainer.spec_objectives import ProbesSpec

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        tok = Tokenizer.from_file(str(Path(out_dir, "tokenizer.json")))
        torch.manual_seed(0)
        config = ElectraConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            embedding_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        pair = ElectraPair(ElectraForMaskedLM(config), ElectraForPreTraining(config))
        for module in pair.modules():
            if type(module).__name__ == "ElectraLayer":
                fully_shard(module)
        fully_shard(pair)
        probes = TrainingProbes(ProbesSpec(every_steps=1, max_examples=50), tok, rank == 0, True)
        results = probes.run(pair, pair.discriminator, torch.device("cpu"), None)
        sharded = all(type(p).__name__ == "DTensor" for p in pair.parameters())
        out = {"accuracies": [r.accuracy for r, _ in results], "sharded": sharded}
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(out))
