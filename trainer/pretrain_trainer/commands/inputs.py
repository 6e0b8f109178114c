"""What several commands share: object-store settings from the global flags, and corpus-reading flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence

from pretrain_trainer.commands.registry import default
from pretrain_trainer.config import StorageSpec
from pretrain_trainer.contract import JOB_COMPLETION_INDEX
from pretrain_trainer.data.readers import TXT_MODES, Document, ReadOptions, expand_inputs, read_documents
from pretrain_trainer.storage import StorageOptions


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    """The global flags; unset, the usual AWS environment variables decide."""
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--region", help="S3 region (default: $AWS_REGION)")


def storage_options(args: argparse.Namespace) -> StorageOptions:
    return StorageOptions.from_spec(StorageSpec(endpoint=args.endpoint_url or "", region=args.region or ""))


def add_read_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-field",
        default=default(ReadOptions, "text_field"),
        help="JSONL key / Parquet column with the text (default: %(default)s)",
    )
    parser.add_argument(
        "--lang-field",
        default=default(ReadOptions, "lang_field"),
        help="key / column with a language label, used to group statistics (default: %(default)s)",
    )
    parser.add_argument(
        "--txt-mode",
        default=default(ReadOptions, "txt_mode"),
        choices=TXT_MODES,
        help="how .txt files split into documents (default: one document per file)",
    )


def read_options(args: argparse.Namespace) -> ReadOptions:
    return ReadOptions(text_field=args.text_field, lang_field=args.lang_field, txt_mode=args.txt_mode)


def documents(args: argparse.Namespace, patterns: Sequence[str], flag: str = "--input") -> Iterator[Document]:
    storage = storage_options(args)
    return read_documents(expand_inputs(patterns, flag, storage), read_options(args), storage)


def add_task_flags(parser: argparse.ArgumentParser) -> None:
    """--tasks/--task-index: one share of the work of a command split over processes or an Indexed Job's pods."""
    parser.add_argument(
        "--tasks", type=int, help="split the work into N tasks (input files dealt by size); this process does one"
    )
    parser.add_argument(
        "--task-index",
        type=int,
        help=f"which task, 0..N-1 (default: ${JOB_COMPLETION_INDEX}, set in the pods of an Indexed Job)",
    )


def task_index(args: argparse.Namespace) -> int:
    """The task this process runs: --task-index, else the Indexed Job's JOB_COMPLETION_INDEX."""
    if args.tasks is None:
        raise ValueError("--task-index: needs --tasks N")
    if args.task_index is not None:
        return int(args.task_index)
    value = os.environ.get(JOB_COMPLETION_INDEX)
    if value is None or not value.isdigit():
        raise ValueError(
            f"--task-index: give it with --tasks, or run in an Indexed Job (which sets {JOB_COMPLETION_INDEX}); "
            f"got {JOB_COMPLETION_INDEX}={value!r}"
        )
    return int(value)
