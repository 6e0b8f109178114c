"""`pretrainjob`: the command-line tool for data preparation, tokenizers and local runs.

    pretrainjob demo                                   # the whole data path on the bundled corpus
    pretrainjob tokenizer train --input corpus/ --vocab-size 32000 --output s3://b/tok/
    pretrainjob tokenizer audit s3://b/tok/ --corpus corpus/
    pretrainjob prepare --tokenizer s3://b/tok/ --input corpus/ --output s3://b/data/ --dedup
    pretrainjob data inspect s3://b/data/train/ --verify

Object-store settings come from the usual AWS environment variables (AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, ...) or the global --endpoint-url/--region flags.

Each command lives beside its handler in `pretrain_trainer.commands`; this module only assembles them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pretrain_trainer.commands import data, evaluate, jobs, tokenizer
from pretrain_trainer.commands.inputs import add_storage_flags
from pretrain_trainer.commands.registry import CommandTree
from pretrain_trainer.contract import EXIT_BAD_CONFIG
from pretrain_trainer.curation import commands as curation

__all__ = ["build_parser", "main"]

#: Help of the command groups, by path.
GROUPS = {
    "tokenizer": "train, audit or extend a tokenizer",
    "data": "look into prepared shard sets",
    "corpus": "know what is in a corpus, or write the bundled demo corpus",
    "eval": "judge a trained model downstream",
}

#: Every command, in the order `pretrainjob --help` lists them: one line per command.
COMMANDS = (
    tokenizer.add_tokenizer_train,
    tokenizer.add_tokenizer_sample,
    tokenizer.add_tokenizer_audit,
    tokenizer.add_tokenizer_extend,
    data.add_prepare,
    data.add_data_inspect,
    curation.add_data_verify,
    curation.add_data_preview,
    jobs.add_validate,
    jobs.add_run,
    jobs.add_train,
    jobs.add_worker,
    evaluate.add_eval_probe,
    curation.add_corpus_report,
    data.add_corpus,
    jobs.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretrainjob",
        description="Prepare tokenizers and token shards for language-model pretraining, and run jobs locally.",
        epilog="Run `pretrainjob COMMAND --help` for a command's options.",
    )
    add_storage_flags(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    tree = CommandTree(parser, GROUPS)
    for add in COMMANDS:
        add(tree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pretrain_trainer.data.shards import ShardError
    from pretrain_trainer.log_secrets import configure_logging
    from pretrain_trainer.storage import StorageError

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, StorageError, ShardError) as err:
        if args.verbose:
            raise
        print(f"pretrainjob: error: {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG


if __name__ == "__main__":
    sys.exit(main())
