"""Masked LM against ELECTRA for the same training FLOPs: downstream probe accuracy of the encoder on the CPU.

    .venv/bin/python benchmarks/objective_efficiency.py                        # ~3 min on 2 loaded CPU cores
    .venv/bin/python benchmarks/objective_efficiency.py --budget 4e12 --hidden 128 --layers 4

Both encoders have the same shape (`--hidden`, `--layers`; ELECTRA's generator is a quarter as wide). They read
the same token windows of the bundled corpus (WordPiece, 1k tokens, sequence 64, batch 16) through the project's
objectives (`objectives.build_objective`: the trainer's batches, losses and models, 15 % token masking) with
AdamW (lr 1e-3) until each has spent `--budget` training FLOPs, counted as 6 × parameters × tokens per trained
network (for ELECTRA: generator + discriminator; embeddings counted once). At 1/4, 1/2 and all of the budget the
encoder (MLM: the BERT body; ELECTRA: the discriminator's body) is probed with `pretrainjob eval probe`'s probe
(`probe.probe_model`, task language) and the table prints accuracy and its 95 % interval against FLOPs. Figures
only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import time

import torch

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.config import parse_spec
from pretrain_trainer.objectives import build_objective
from pretrain_trainer.probe import probe_model
from pretrain_trainer.token_roles import TokenRoles
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, train_tokenizer

SEQ, BATCH = 64, 16


def windows(tok, seed: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    sep = tok.token_to_id("[SEP]")
    stream: list[int] = []
    for enc in tok.encode_batch([d["text"] for d in load_bundled_documents()], add_special_tokens=False):
        stream += [*enc.ids, sep]
    rows = torch.tensor(stream[: len(stream) // SEQ * SEQ]).view(-1, SEQ)
    return rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))]


def body(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder a downstream task would use."""
    return model.discriminator.electra if hasattr(model, "discriminator") else model.bert


def run(kind: str, args: argparse.Namespace, tok, data: torch.Tensor) -> list[tuple[float, str]]:  # type: ignore[no-untyped-def]
    arch = "electra" if kind == "electra" else "bert"
    config = {
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": max(1, args.hidden // 32),
        "intermediate_size": 4 * args.hidden,
        "max_position_embeddings": SEQ,
    }
    if arch == "electra":
        config["embedding_size"] = args.hidden
    spec = parse_spec(
        {
            "tokenizer": {"uri": "bundled"},
            "data": {"train": "bundled", "sequenceLength": SEQ},
            "model": {"architecture": arch, "config": config},
            "objective": {"type": kind},
            "training": {"globalBatchSamples": BATCH, "microBatchSize": BATCH, "seed": 1},
        }
    )
    objective = build_objective(spec, TokenRoles.from_tokenizer(tok))
    torch.manual_seed(0)
    model, _ = objective.build_model(tok, {}, None)
    params = sum(p.numel() for p in model.parameters())
    flops_per_step = 6 * params * BATCH * SEQ
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    marks = [args.budget / 4, args.budget / 2, args.budget]
    out, spent, step, started = [], 0.0, 0, time.perf_counter()
    while marks:
        model.train()
        window = data[(step * BATCH) % (len(data) - BATCH) :][:BATCH]
        batch = objective.batch(window, step * BATCH)
        counts = objective.counts(batch)
        objective.loss(objective.forward(model, batch).sums, counts).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        spent += flops_per_step
        if spent >= marks[0]:
            marks.pop(0)
            result = probe_model(body(model), tok)
            out.append((spent, f"{result.accuracy:.3f} ({result.low:.3f}-{result.high:.3f})"))
            print(
                f"  {kind}: {step} steps, {spent:.2e} FLOPs, {time.perf_counter() - started:.0f} s: {result.format()}",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=1.5e12, help="training FLOPs per objective")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    tok = train_tokenizer(
        [d["text"] for d in load_bundled_documents()],
        TokenizerTrainingSpec(model="wordpiece", vocab_size=1000, objective="mlm"),
    )
    data = windows(tok, 0)
    results = {kind: run(kind, args, tok, data) for kind in ("mlm", "electra")}
    print(f"\nprobe accuracy (language, 95% CI) against training FLOPs; hidden {args.hidden}, {args.layers} layers")
    print(f"{'FLOPs':>10} | {'MLM':>22} | {'ELECTRA':>22}")
    for (flops, mlm), (_, electra) in zip(results["mlm"], results["electra"], strict=True):
        print(f"{flops:>10.2e} | {mlm:>22} | {electra:>22}")


if __name__ == "__main__":
    main()
