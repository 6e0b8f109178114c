"""`pretrainjob eval probe FOLDER`: a probe of a model's frozen (or fine-tuned) features on a task the project
ships."""

from __future__ import annotations

import argparse

from pretrain_trainer.commands.inputs import storage_options
from pretrain_trainer.commands.registry import CommandTree
from pretrain_trainer.spec_objectives import PROBE_TASKS


def cmd_eval_probe(args: argparse.Namespace) -> int:
    from pretrain_trainer.probe import FineTuning, probe_folder

    for flag, value in (
        ("--epochs", args.epochs),
        ("--max-examples", 1 if args.max_examples is None else args.max_examples),
    ):
        if value < 1:
            raise ValueError(f"{flag}: must be >= 1, got {value}")
    fine_tuning = FineTuning(epochs=args.epochs) if args.fine_tune else None
    result = probe_folder(args.folder, storage_options(args), args.task, fine_tuning, args.max_examples)
    print(result.format())
    return 0


def add_eval_probe(tree: CommandTree) -> None:
    parser = tree.add(
        "eval probe",
        cmd_eval_probe,
        help="accuracy (95%% CI) of a probe on a model's frozen or fine-tuned features",
        description="Train a logistic-regression probe on the last hidden states of the Hugging Face folder (a "
        "checkpoint's hf/step-N export, local or s3://) and print its test accuracy with a Wilson 95%% interval. "
        "Tasks, from the bundled corpus with documents split between train and test: language (the language of a "
        "line, mean-pooled features) and token-language (the language of a token's line, from that token's "
        "features; one test token per line). --fine-tune trains a copy of the encoder with the head instead.",
    )
    parser.add_argument("folder", help="Hugging Face folder with tokenizer.json (local path or s3:// URI)")
    parser.add_argument("--task", default="language", choices=PROBE_TASKS, help="the probing task")
    parser.add_argument(
        "--fine-tune", action="store_true", help="update the encoder too (AdamW, with a linear head), not only a probe"
    )
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument(
        "--max-examples", type=int, help="at most this many training examples, evenly spread (default: all)"
    )
