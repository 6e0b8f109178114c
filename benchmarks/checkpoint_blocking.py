"""How long a checkpoint save blocks the training loop, synchronous vs background (`checkpoint.async`), and how long
a resume takes to its first step, for a GPT-2 of about 100M parameters with AdamW state (or a smaller one).

    .venv/bin/python benchmarks/checkpoint_blocking.py                    # ~110M parameters on CPU, file:// store
    .venv/bin/python benchmarks/checkpoint_blocking.py --layers 4 --hidden 256   # ~10M, for a quick look
    .venv/bin/python benchmarks/checkpoint_blocking.py --device cuda      # on a GPU (pinned host staging)

For each mode it trains one step, saves (timing how long `save()` held the caller: the whole save in place, only
the copy to host memory in the background), trains on while a background save completes (counting the steps that
overlapped it), then builds a fresh model and optimizer and times `resume()` + the first training step. Nothing is
asserted about timing; numbers on a shared machine are noisy, compare runs taken back to back.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_trainer.checkpoint import CheckpointManager
from pretrain_trainer.checkpoint.async_save import CheckpointSaver


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=args.layers,
        n_embd=args.hidden,
        n_head=args.hidden // 64,
        vocab_size=args.vocab,
        n_positions=args.seq,
        bos_token_id=0,
        eos_token_id=0,
        loss_type="ForCausalLM",
    )
    model = GPT2LMHeadModel(config).to(args.device)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> None:
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=args.device)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def run_mode(background: bool, args: argparse.Namespace, root: Path) -> dict[str, float]:
    uri = (root / ("async" if background else "sync")).as_uri()
    model, optimizer = build(args)
    step(model, optimizer, args)  # AdamW's moments exist from the first step: the checkpoint holds them
    t0 = time.monotonic()
    step(model, optimizer, args)
    step_s = time.monotonic() - t0
    saver = CheckpointSaver(CheckpointManager(uri), background=background)
    started = time.monotonic()
    blocked = saver.save(1, model, optimizer, None, {"step": 1})
    overlapped = 0
    while saver.in_flight:  # the loop trains on while the background save writes, uploads and commits
        step(model, optimizer, args)
        overlapped += 1
    saver.close()
    complete = time.monotonic() - started
    del model, optimizer
    fresh, fresh_optimizer = build(args)
    t0 = time.monotonic()
    resumed = CheckpointManager(uri).resume(fresh, fresh_optimizer, None)
    assert resumed is not None and resumed.step == 1
    loaded = time.monotonic() - t0
    step(fresh, fresh_optimizer, args)
    return {
        "step_s": step_s,
        "blocked_s": blocked,
        "complete_s": complete,
        "overlapped_steps": overlapped,
        "resume_s": loaded,
        "resume_to_first_step_s": time.monotonic() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dir", default=None, help="where the file:// checkpoints go (default: a temp folder)")
    args = parser.parse_args(argv)
    params = sum(p.numel() for p in build(args)[0].parameters())
    print(f"GPT-2 {args.layers} layers × {args.hidden}, vocab {args.vocab}: {params / 1e6:.1f}M parameters")
    print(f"state saved per checkpoint (fp32 weights + AdamW moments): {params * 12 / 2**20:.0f} MiB, {args.device}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = {"sync": run_mode(False, args, Path(tmp)), "async": run_mode(True, args, Path(tmp))}
    print(
        f"{'mode':6} {'step s':>7} {'blocked s':>10} {'complete s':>11} {'steps during':>13} {'resume s':>9} "
        f"{'to 1st step s':>14}"
    )
    for mode, r in rows.items():
        print(
            f"{mode:6} {r['step_s']:7.2f} {r['blocked_s']:10.2f} {r['complete_s']:11.2f} "
            f"{r['overlapped_steps']:13.0f} {r['resume_s']:9.2f} {r['resume_to_first_step_s']:14.2f}"
        )


if __name__ == "__main__":
    main()
