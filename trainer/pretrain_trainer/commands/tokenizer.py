"""`pretrainjob tokenizer train|audit|extend`: train, check and extend a tokenizer."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from pretrain_trainer.commands.inputs import (
    add_read_flags,
    add_task_flags,
    documents,
    read_options,
    storage_options,
    task_index,
)
from pretrain_trainer.commands.registry import EXIT_FAILED_CHECK, CommandTree, default
from pretrain_trainer.tokenizer.audit import audit_tokenizer
from pretrain_trainer.tokenizer.extend import candidates
from pretrain_trainer.tokenizer.train import MODELS, NORMALIZATIONS, OBJECTIVES, TokenizerTrainingSpec


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from pretrain_trainer.tokenizer.train import save_tokenizer, train_tokenizer

    spec = TokenizerTrainingSpec(
        model=args.model,
        vocab_size=args.vocab_size,
        objective=args.objective,
        normalization=args.normalization,
        lowercase=args.lowercase,
        strip_accents=args.strip_accents,
        min_frequency=args.min_frequency,
        sentinels=args.sentinels,
    )
    if args.sample_bytes is not None:
        from pretrain_trainer.data.sample import sampled_documents

        docs = sampled_documents(args.input, args.sample_bytes, read_options(args), storage_options(args))
    else:
        docs = documents(args, args.input)
    tok = train_tokenizer((d.text for d in docs), spec)
    uri = save_tokenizer(tok, spec, args.output, storage_options(args))
    print(f"trained {spec.model} tokenizer: {tok.get_vocab_size()} tokens ({spec.objective} special tokens) -> {uri}")
    return 0


def add_tokenizer_train(tree: CommandTree) -> None:
    train = tree.add(
        "tokenizer train",
        cmd_tokenizer_train,
        help="train a tokenizer on your corpus",
        description="Train a BPE (byte-level), WordPiece or Unigram tokenizer and write tokenizer.json. "
        "Lower-casing keeps accents unless --strip-accents is given.",
    )
    spec_default = partial(default, TokenizerTrainingSpec)
    train.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    train.add_argument(
        "--sample-bytes",
        type=float,
        metavar="BYTES",
        help="train on a deterministic sample of about this many bytes of text (e.g. 2e9), chosen by a hash of each "
        "document; `tokenizer sample` makes the same sample on many pods",
    )
    train.add_argument(
        "--model", default=spec_default("model"), choices=MODELS, help="bpe is byte-level and lossless (default)"
    )
    train.add_argument(
        "--vocab-size", type=int, default=spec_default("vocab_size"), help="vocabulary size (default: %(default)s)"
    )
    train.add_argument(
        "--objective",
        default=spec_default("objective"),
        choices=OBJECTIVES,
        help="which special tokens to add: clm <|endoftext|>, mlm [CLS] [SEP] [MASK] ..., span-corruption </s> "
        "<pad> and the sentinels <extra_id_0> ... (T5), denoising <s> </s> <mask> ... (BART) (default: %(default)s)",
    )
    train.add_argument(
        "--sentinels",
        type=int,
        default=spec_default("sentinels"),
        help="span-corruption: how many sentinel tokens to add; a sample has up to about sequenceLength × 1.1 × "
        "noiseDensity / meanNoiseSpanLength noise spans (default: %(default)s, as T5)",
    )
    train.add_argument(
        "--normalization",
        default=spec_default("normalization"),
        choices=NORMALIZATIONS,
        help="Unicode normal form (default: %(default)s)",
    )
    train.add_argument("--lowercase", action="store_true", help="lower-case the text (accents are kept)")
    train.add_argument("--strip-accents", action="store_true", help="remove accents: Å→A, é→e (lossy)")
    train.add_argument(
        "--min-frequency",
        type=int,
        default=spec_default("min_frequency"),
        help="minimum pair/piece count (default: %(default)s)",
    )
    train.add_argument(
        "--output",
        required=True,
        help="tokenizer.json path/URI, or a folder/URI prefix to hold it and tokenizer_config.json",
    )
    add_read_flags(train)


def cmd_tokenizer_audit(args: argparse.Namespace) -> int:
    from itertools import islice

    from pretrain_trainer.tokenizer.audit import format_report
    from pretrain_trainer.tokenizer.load import read_tokenizer

    tokenizer, _ = read_tokenizer(args.tokenizer, storage_options(args))
    docs = documents(args, args.corpus, "--corpus")
    report = audit_tokenizer(tokenizer, islice(docs, args.max_documents), max_mismatches=args.show)
    print(format_report(report, args.threshold, args.ignore_whitespace))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1, ensure_ascii=False))
    return 0 if report.passes(args.threshold, args.ignore_whitespace) else EXIT_FAILED_CHECK


def add_tokenizer_audit(tree: CommandTree) -> None:
    audit = tree.add(
        "tokenizer audit",
        cmd_tokenizer_audit,
        help="check round-trip fidelity, unknown tokens and fertility on a corpus",
        description="Encode and decode every document; report per language/script the round-trip share, "
        "unknown-token rate, characters per token and tokens per word, and what a lossy tokenizer loses. "
        "Exits 1 when round-trip fidelity is below --threshold.",
    )
    audit.add_argument("tokenizer", help="tokenizer.json, or a folder/URI holding it")
    audit.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    audit.add_argument(
        "--threshold",
        type=float,
        default=0.99,
        help="minimum share of documents that must round-trip (default: %(default)s)",
    )
    audit.add_argument(
        "--ignore-whitespace",
        action="store_true",
        help="judge fidelity ignoring whitespace (WordPiece cannot restore spacing)",
    )
    audit.add_argument("--max-documents", type=int, default=None, help="audit only the first N documents")
    audit.add_argument(
        "--show",
        type=int,
        default=default(audit_tokenizer, "max_mismatches"),
        help="how many differing examples to print (default: %(default)s)",
    )
    audit.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    add_read_flags(audit)


def cmd_tokenizer_extend(args: argparse.Namespace) -> int:
    from pretrain_trainer.tokenizer.extend import extend_tokenizer, write_extended
    from pretrain_trainer.tokenizer.load import read_tokenizer

    options = storage_options(args)
    base, base_uri = read_tokenizer(args.tokenizer, options)
    found = candidates(
        base, (d.text for d in documents(args, args.corpus, "--corpus")), args.min_count, args.min_pieces
    )
    chosen = found[: args.max_new_tokens]
    extended = extend_tokenizer(base, (c.word for c in chosen))
    for c in chosen[:10]:
        print(f"  + {c.word!r}: {c.count}× in the corpus, {c.pieces} pieces before")
    uri = write_extended(extended, base_uri, args.output, options)
    saved = sum(c.tokens_saved for c in chosen)
    print(
        f"added {len(chosen)} tokens ({base.get_vocab_size()} -> {extended.get_vocab_size()}), saving about "
        f"{saved} tokens on this corpus -> {uri}"
    )
    return 0


def add_tokenizer_extend(tree: CommandTree) -> None:
    extend = tree.add(
        "tokenizer extend",
        cmd_tokenizer_extend,
        help="add a domain's frequent multi-piece words to an existing tokenizer (for DAPT)",
        description="Keep every token of TOKENIZER at its id and append the corpus's frequent words that it "
        "splits into many pieces. Train with model.extendVocab: true to grow the checkpoint's embeddings.",
    )
    extend.add_argument("tokenizer", help="the checkpoint's tokenizer.json, or a folder/URI holding it")
    extend.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="domain files, folders or globs")
    extend.add_argument(
        "--max-new-tokens", type=int, default=1000, help="at most this many tokens (default: %(default)s)"
    )
    extend.add_argument(
        "--min-count",
        type=int,
        default=default(candidates, "min_count"),
        help="minimum occurrences of a word (default: %(default)s)",
    )
    extend.add_argument(
        "--min-pieces",
        type=int,
        default=default(candidates, "min_pieces"),
        help="only words split into at least this many tokens (default: %(default)s)",
    )
    extend.add_argument(
        "--output", required=True, help="folder or URI prefix for tokenizer.json (and the base's tokenizer_config.json)"
    )
    add_read_flags(extend)


def cmd_tokenizer_sample(args: argparse.Namespace) -> int:
    from pretrain_trainer.data.sample import write_sample_task

    split = args.tasks is not None or args.task_index is not None
    tasks, index = (args.tasks, task_index(args)) if split else (1, 0)
    documents_written, written = write_sample_task(
        args.input, args.bytes, args.output, tasks, index, read_options(args), storage_options(args)
    )
    print(f"task {index} of {tasks}: sampled {documents_written} documents, {written / 1e6:.2f} MB -> {args.output}")
    return 0


def add_tokenizer_sample(tree: CommandTree) -> None:
    sample = tree.add(
        "tokenizer sample",
        cmd_tokenizer_sample,
        help="write a deterministic sample of a corpus for `tokenizer train`, split over tasks",
        description="Keep each document whose salted text hash falls below BYTES / corpus size (the same choice as "
        "`tokenizer train --sample-bytes`), writing one sample-NNNNNN.jsonl per input file to --output. With "
        "--tasks N each task (or Indexed Job pod) samples its share of the files; then train on --output.",
    )
    sample.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders, globs or s3:// URIs")
    sample.add_argument("--bytes", type=float, required=True, help="about how many bytes of text to keep, e.g. 2e9")
    sample.add_argument("--output", required=True, help="folder or s3:// prefix for the sample files")
    add_task_flags(sample)
    add_read_flags(sample)
