"""How long recovery takes: resuming from an intact newest checkpoint, resuming when the newest one is damaged
(verify it, set it aside, load the previous one), and what the per-step non-finite check costs. Prints figures;
asserts nothing about time.

    .venv/bin/python benchmarks/checkpoint_recovery.py [--layers 4] [--hidden 256] [--repeat 3]

The model is a GPT-2 built from a config (nothing is downloaded); checkpoints go to a temporary file:// root.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_trainer.checkpoint import CheckpointManager, step_dir
from pretrain_trainer.nonfinite import finite


def trainables(layers: int, hidden: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=hidden, n_head=4, vocab_size=8192, n_positions=256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.zeros(1, 8, dtype=torch.long), labels=torch.zeros(1, 8, dtype=torch.long)).loss.backward()
    optimizer.step()
    return model, optimizer


def resume_seconds(root: str, layers: int, hidden: int, damage: bool) -> tuple[float, int]:
    manager = CheckpointManager(root, keep=5)
    model, optimizer = trainables(layers, hidden)
    for step in (1, 2):
        manager.save(step, model, optimizer, None, {"step": step})
    if damage:
        key = f"{step_dir(2)}/__0_0.distcp"
        data = bytearray(manager.store.read(key))
        data[len(data) // 2] ^= 1
        manager.store.write(key, bytes(data))
    fresh, fresh_optimizer = trainables(layers, hidden)
    started = time.perf_counter()
    resumed = CheckpointManager(root, keep=5).resume(fresh, fresh_optimizer, None)
    seconds = time.perf_counter() - started
    assert resumed is not None and resumed.step == (1 if damage else 2)
    return seconds, sum(info.size for info in manager.store.list(f"{step_dir(1)}/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for label, damage in (("resume, newest intact", False), ("resume, newest damaged (set aside + fall back)", True)):
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                seconds, size = resume_seconds(Path(tmp, "ckpt").as_uri(), args.layers, args.hidden, damage)
                runs.append(seconds)
        median = statistics.median(runs)
        print(f"{label:50s} {median:7.3f} s  (checkpoint {size / 2**20:.1f} MiB, median of {len(runs)})")
    n = 1_000_000
    started = time.perf_counter()
    for i in range(n):
        finite(float(i), 0.5)
    per_step = (time.perf_counter() - started) / n
    print(f"{'non-finite check per step (no collective)':50s} {per_step * 1e9:7.0f} ns; detected on the step itself")


if __name__ == "__main__":
    main()
