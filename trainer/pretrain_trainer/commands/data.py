"""`pretrainjob prepare`, `pretrainjob data inspect` and `pretrainjob corpus bundled`: corpora and token shards."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from pretrain_trainer.commands.inputs import add_read_flags, add_task_flags, read_options, storage_options, task_index
from pretrain_trainer.commands.registry import CommandTree
from pretrain_trainer.commands.registry import default as default_of
from pretrain_trainer.curation.filters import add_curation_flags, curation_config
from pretrain_trainer.data.prepare import PrepareConfig


def cmd_prepare(args: argparse.Namespace) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    if args.stage == "merge":
        from pretrain_trainer.data.merge import merge

        print(merge(args.output, storage_options(args), args.overwrite, args.keep_parts).format())
        return 0
    missing = [flag for flag, value in (("--tokenizer", args.tokenizer), ("--input", args.input)) if not value]
    if missing:
        raise ValueError(f"{' and '.join(missing)}: required for `prepare` (`prepare merge` needs only --output)")
    cfg = PrepareConfig(
        inputs=tuple(args.input),
        output=args.output,
        tokenizer=args.tokenizer,
        read=read_options(args),
        dedup=args.dedup,
        min_tokens=args.min_tokens,
        validation_fraction=args.validation_fraction,
        shard_tokens=args.shard_tokens,
        page_bytes=args.page_bytes,
        eos_token=args.eos_token,
        curation=curation_config(args),
        overwrite=args.overwrite,
    )
    if args.tasks is not None or args.task_index is not None:
        from pretrain_trainer.data.scatter import prepare_task

        index = task_index(args)
        done = prepare_task(cfg, args.tasks, index, storage_options(args), progress)
        print(
            f"task {index} of {args.tasks}: {len(done['files'])} files, {done['documents_read']} documents, "
            f"{done['tokens']} tokens in {done['seconds']:.2f} s; run `pretrainjob prepare merge --output "
            f"{args.output}` when every task is done"
        )
        return 0
    from pretrain_trainer.data.prepare import prepare

    print(prepare(cfg, storage_options(args), progress=progress).format())
    return 0


def add_prepare(tree: CommandTree) -> None:
    prep = tree.add(
        "prepare",
        cmd_prepare,
        help="tokenize a corpus into verified token shards",
        description="Read .txt/.jsonl/.parquet documents, tokenize them in parallel batches, append EOS "
        "between documents and write shards plus index.json to OUTPUT/train/ (and OUTPUT/validation/).",
    )
    default = partial(default_of, PrepareConfig)
    prep.add_argument(
        "stage",
        nargs="?",
        choices=("merge",),
        help="`merge`: write the shard sets from the completed parts of `--tasks N` (with --output only)",
    )
    prep.add_argument("--tokenizer", help="tokenizer.json, or a folder/URI holding it (required, except for merge)")
    prep.add_argument("--input", nargs="+", metavar="PATH", help="files, folders, globs or s3:// URIs")
    prep.add_argument("--output", required=True, help="local folder or s3:// URI for the shard sets")
    prep.add_argument("--dedup", action="store_true", help="drop exact duplicate documents")
    prep.add_argument(
        "--min-tokens",
        type=int,
        default=default("min_tokens"),
        help="drop documents shorter than this (default: %(default)s)",
    )
    prep.add_argument(
        "--validation-fraction",
        type=float,
        default=default("validation_fraction"),
        help="share of documents for the validation split, by hash of their text (default: %(default)s)",
    )
    prep.add_argument(
        "--shard-tokens",
        type=int,
        default=default("shard_tokens"),
        help="target tokens per shard (default: %(default)s)",
    )
    prep.add_argument(
        "--page-bytes",
        type=int,
        default=default("page_bytes"),
        help="checksum page size in bytes (default: %(default)s)",
    )
    prep.add_argument("--eos-token", help="document separator (default: the tokenizer's EOS)")
    prep.add_argument("--overwrite", action="store_true", help="replace existing shard sets at --output")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_task_flags(prep)
    prep.add_argument("--keep-parts", action="store_true", help="with merge: keep OUTPUT/parts/ afterwards")
    add_read_flags(prep)
    add_curation_flags(prep)


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from pretrain_trainer.data.shards import ShardSet

    shards = ShardSet.open(args.uri, storage_options(args))
    idx = shards.index
    print(
        f"{shards.store.uri}: {idx.num_documents} documents, {idx.num_tokens} tokens in {len(idx.shards)} "
        f"shards ({idx.dtype}, {idx.page_bytes}-byte pages)"
    )
    print(
        f"tokenizer {idx.tokenizer.fingerprint[:12]} from {idx.tokenizer.uri or '?'}: vocab "
        f"{idx.tokenizer.vocab_size}, EOS {idx.tokenizer.eos_token!r} = {idx.tokenizer.eos_id}"
    )
    if args.verify:
        shards.verify()
        print(f"verified: every shard's sha256 matches ({shards.bytes_read} bytes read)")
    if args.tokenizer and args.head:
        from pretrain_trainer.tokenizer.load import load_tokenizer

        tok = load_tokenizer(args.tokenizer, storage_options(args))
        head = shards.read_tokens(0, min(args.head, shards.num_tokens))
        print(f"first {len(head)} tokens decode to:\n{tok.tokenizer.decode(head.tolist(), skip_special_tokens=False)}")
    return 0


def add_data_inspect(tree: CommandTree) -> None:
    inspect = tree.add("data inspect", cmd_data_inspect, help="summarise a shard set, optionally verify every checksum")
    inspect.add_argument("uri", help="a shard set folder (holding index.json)")
    inspect.add_argument("--verify", action="store_true", help="read everything and check every sha256")
    inspect.add_argument("--tokenizer", help="decode the first --head tokens with this tokenizer")
    inspect.add_argument("--head", type=int, default=64, help="tokens to decode with --tokenizer (default: 64)")


def cmd_corpus(args: argparse.Namespace) -> int:
    from pretrain_trainer.bundled_corpus import copy_bundled_corpus

    for path in copy_bundled_corpus(Path(args.output)):
        print(path)
    return 0


def add_corpus(tree: CommandTree) -> None:
    corpus = tree.add("corpus bundled", cmd_corpus, help="write the bundled multilingual demo corpus to a folder")
    corpus.add_argument("--output", required=True, help="folder for one .jsonl file per language")
