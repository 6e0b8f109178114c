"""What building a batch costs per objective: `Objective.batch` on windows of the bundled corpus, on the CPU.

    .venv/bin/python benchmarks/corruption_cost.py                         # ~30 s on 2 loaded CPU cores
    .venv/bin/python benchmarks/corruption_cost.py --sequence-length 1024 --rows 128

Every objective corrupts each sample on the training loop's thread, from the sample's own generator, so its cost
adds to every step. For mlm (15 % token masking), span-corruption (T5: 15 % noise, spans of 3) and denoising
(BART: 30 % infilling with Poisson(3) spans, sentence permutation) this builds `--rows` rows of
`--sequence-length` (span corruption reads its longer raw windows) through `objectives.build_objective(...).batch`,
the fastest of `--reps` runs, and prints milliseconds per row and input tokens per second. Tokenizers: WordPiece
trained on the bundled corpus with each objective's special tokens. Figures only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import time

import torch

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.config import parse_spec
from pretrain_trainer.objectives import build_objective
from pretrain_trainer.token_roles import TokenRoles
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, train_tokenizer

ARCHITECTURE = {"mlm": "bert", "span-corruption": "t5", "denoising": "bart"}


def measure(objective_type: str, args: argparse.Namespace, texts: list[str]) -> tuple[float, int]:
    """(seconds per row, encoder tokens per row) of the fastest of args.reps batches."""
    tok_objective = "mlm" if objective_type == "mlm" else objective_type
    tok = train_tokenizer(texts, TokenizerTrainingSpec(model="wordpiece", vocab_size=4000, objective=tok_objective))
    roles = TokenRoles.from_tokenizer(tok)
    spec = parse_spec(
        {
            "tokenizer": {"uri": "bundled"},
            "data": {"train": "bundled", "sequenceLength": args.sequence_length},
            "model": {
                "architecture": ARCHITECTURE[objective_type],
                "config": {"max_position_embeddings": max(args.sequence_length, 64)}
                if objective_type != "span-corruption"
                else {},
            },
            "objective": {"type": objective_type},
            "training": {"globalBatchSamples": args.rows, "microBatchSize": args.rows},
        }
    )
    objective = build_objective(spec, roles)
    raw = objective.raw_length(spec)
    stream: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        stream += [*enc.ids, roles.eos_id]
    usable = len(stream) // raw * raw
    windows = torch.tensor(stream[:usable]).view(-1, raw)
    windows = windows[torch.arange(args.rows) % len(windows)]
    best = float("inf")
    for rep in range(args.reps):
        start = time.perf_counter()
        objective.batch(windows, rep * args.rows)
        best = min(best, time.perf_counter() - start)
    return best / args.rows, args.sequence_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence-length", type=int, default=512, help="data.sequenceLength (default: 512)")
    parser.add_argument("--rows", type=int, default=64, help="rows per batch (default: 64)")
    parser.add_argument("--reps", type=int, default=5, help="batches timed; the fastest counts (default: 5)")
    args = parser.parse_args()
    texts = [d["text"] for d in load_bundled_documents()]
    print(f"sequence length {args.sequence_length}, {args.rows} rows per batch, fastest of {args.reps}")
    print(f"{'objective':<16} {'ms/row':>8} {'tokens/s':>12}")
    for objective_type in ("mlm", "span-corruption", "denoising"):
        seconds, tokens = measure(objective_type, args, texts)
        print(f"{objective_type:<16} {seconds * 1e3:>8.2f} {tokens / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
