"""`pretrainjob corpus report`, `data verify` and `data preview`, each registered beside its handler.

    pretrainjob corpus report corpus/ --output runs/corpus-report/ --near-dup-threshold 0.8
    pretrainjob data verify s3://b/data/ --against corpus/
    pretrainjob data preview job.yaml --samples 4

The handlers import their work lazily, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pretrain_trainer.commands.inputs import add_read_flags, read_options, storage_options
from pretrain_trainer.commands.registry import EXIT_FAILED_CHECK, CommandTree
from pretrain_trainer.curation.neardup import DEFAULT_THRESHOLD


def cmd_corpus_report(args: argparse.Namespace) -> int:
    from pretrain_trainer.curation.profile import ProfileSettings
    from pretrain_trainer.curation.quality import QualityThresholds
    from pretrain_trainer.curation.report import profile_corpus, write_report
    from pretrain_trainer.curation.table import format_report

    settings = ProfileSettings(
        near_dedup=not args.no_near_dup,
        near_dup_threshold=args.near_dup_threshold,
        quality=QualityThresholds.parse(args.quality) if args.quality else QualityThresholds(),
        examples=args.examples,
    )
    report = profile_corpus(
        args.inputs,
        read_options(args),
        settings,
        args.max_documents,
        progress=not args.no_progress and sys.stderr.isatty(),
        storage=storage_options(args),
    )
    as_json, page = write_report(report, Path(args.output))
    print(format_report(report))
    print(f"\nwrote {as_json} and {page}")
    return 0


def add_corpus_report(tree: CommandTree) -> None:
    p = tree.add(
        "corpus report",
        cmd_corpus_report,
        help="what is in a corpus: languages, duplicates, quality flags, personal data",
        description="Read the inputs as `prepare` does and report per language: documents, characters, words, "
        "lengths, language and script mixtures, exact and near duplicates (MinHash LSH), Gopher/C4-style quality "
        "signals and personal data, with examples of each flag. Writes report.json and a self-contained "
        "report.html to --output.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, folders, globs or s3:// URIs (.txt, .jsonl, .parquet)"
    )
    p.add_argument("--output", default="corpus-report", help="folder for report.json and report.html")
    p.add_argument(
        "--near-dup-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="Jaccard similarity of word 5-gram sets that makes a near duplicate (default: %(default)s)",
    )
    p.add_argument("--no-near-dup", action="store_true", help="skip near-duplicate detection (the slowest part)")
    p.add_argument(
        "--quality",
        metavar="NAME=VALUE,...",
        help="change quality thresholds, e.g. min_words=20,max_upper_share=0.3 (default: Gopher's)",
    )
    p.add_argument("--examples", type=int, default=3, help="examples kept per flag (default: %(default)s)")
    p.add_argument("--max-documents", type=int, help="look at the first N documents only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_read_flags(p)


def cmd_data_verify(args: argparse.Namespace) -> int:
    from pretrain_trainer.curation.verify import verify_against

    result = verify_against(args.shards, args.against, storage_options(args), args.tokenizer)
    print(result.format())
    return 0 if result.ok else EXIT_FAILED_CHECK


def add_data_verify(tree: CommandTree) -> None:
    p = tree.add(
        "data verify",
        cmd_data_verify,
        help="decode shards back to text and compare them with the corpus, document by document",
        description="Re-run prepare's document selection (its filters, dedup and split, with the settings recorded "
        "in index.json) on --against, decode every shard document and compare it with the kept text after the "
        "tokenizer's normalisation and prepare's redaction. Prints the share that round-trips exactly and the first "
        "differences character by character; exits 1 unless every document matches.",
    )
    p.add_argument("shards", metavar="SHARDS", help="prepare's --output (holding train/), or one split's folder")
    p.add_argument("--against", nargs="+", required=True, metavar="INPUT", help="the corpus prepare read")
    p.add_argument("--tokenizer", help="tokenizer to decode with (default: the one recorded in index.json)")


def cmd_data_preview(args: argparse.Namespace) -> int:
    import json

    from pretrain_trainer.config import load_job
    from pretrain_trainer.curation.preview import format_preview, preview_samples

    job = load_job(args.job)
    samples, tok, roles = preview_samples(job, args.samples)
    print(format_preview(job, samples, tok, roles))
    if args.json:
        Path(args.json).write_text(json.dumps([s.as_dict() for s in samples]) + "\n", encoding="utf-8")
    return 0


def add_data_preview(tree: CommandTree) -> None:
    p = tree.add(
        "data preview",
        cmd_data_preview,
        help="print the first training samples exactly as the trainer builds them (windows, masks, labels)",
        description="Read the job's training data with the trainer's own loader and objective code (same order, same "
        "masking seeds) and print the first N samples decoded through the job's tokenizer: causal windows with their "
        "document boundaries, masked-LM inputs with [MASK], random and kept replacements marked and their labels, "
        "encoder–decoder inputs with their sentinels (span-corruption) or masks (denoising) above the targets.",
    )
    p.add_argument("job", metavar="JOB.yaml", help="PretrainJob manifest (or bare spec)")
    p.add_argument("--samples", type=int, default=4, help="how many samples (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the samples' input_ids and labels as JSON")
