"""`pretrainjob eval probe FOLDER`: a linear probe of a model's frozen features on a task the project ships."""

from __future__ import annotations

import argparse

from pretrain_trainer.commands.inputs import storage_options
from pretrain_trainer.commands.registry import CommandTree


def cmd_eval_probe(args: argparse.Namespace) -> int:
    from pretrain_trainer.probe import probe_folder

    print(probe_folder(args.folder, storage_options(args), args.task).format())
    return 0


def add_eval_probe(tree: CommandTree) -> None:
    parser = tree.add(
        "eval probe",
        cmd_eval_probe,
        help="accuracy (95%% CI) of a linear probe on a model's frozen features",
        description="Train a logistic-regression probe on the mean-pooled last hidden states of the Hugging Face "
        "folder (a checkpoint's hf/step-N export, local or s3://) and print its test accuracy with a Wilson 95%% "
        "interval. Task language: the language of a line of the bundled corpus (documents split between train "
        "and test).",
    )
    parser.add_argument("folder", help="Hugging Face folder with tokenizer.json (local path or s3:// URI)")
    parser.add_argument("--task", default="language", choices=("language",), help="the probing task")
