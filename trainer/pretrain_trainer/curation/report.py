"""`pretrainjob corpus report INPUTS...`: what is in a corpus, as a terminal table, report.json and report.html.

    pretrainjob corpus report corpus/ --output runs/corpus-report/ --near-dup-threshold 0.8

Reads the same inputs as `prepare` (same readers, same --text-field/--lang-field/--txt-mode flags).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from pretrain_trainer.commands.inputs import add_read_flags, read_options
from pretrain_trainer.commands.registry import CommandTree
from pretrain_trainer.curation.neardup import DEFAULT_THRESHOLD
from pretrain_trainer.curation.page import render_page
from pretrain_trainer.curation.profile import CorpusProfile, ProfileSettings
from pretrain_trainer.curation.quality import QualityThresholds
from pretrain_trainer.curation.table import format_report
from pretrain_trainer.data.readers import ReadOptions, expand_inputs, read_documents


def profile_corpus(
    patterns: list[str],
    read: ReadOptions | None = None,
    settings: ProfileSettings | None = None,
    max_documents: int | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Read every document of the inputs once and return the report (the content of report.json)."""
    files = expand_inputs(patterns, "INPUTS")
    read = read or ReadOptions()
    profile = CorpusProfile(settings)
    started = time.perf_counter()
    bar = tqdm(
        total=sum(os.path.getsize(f) for f in files), unit="B", unit_scale=True, desc="report", disable=not progress
    )
    for doc in islice(read_documents(files, read), max_documents):
        before = profile.bytes_read
        profile.add(doc)
        bar.update(profile.bytes_read - before)
    bar.close()
    seconds = time.perf_counter() - started
    wanted = profile.shown_documents()
    if wanted:
        # The largest clusters' texts, read again (cheap next to the analysis) rather than kept for every document.
        last = max(wanted)
        for i, doc in enumerate(read_documents(files, read)):
            if i in wanted:
                profile.fill_snippet(i, doc.text)
            if i >= last:
                break
    report = profile.as_dict()
    report["inputs"] = files
    report["settings"] = {
        "near_dup_threshold": profile.settings.near_dup_threshold,
        "quality": vars(profile.settings.quality),
        "max_documents": max_documents,
    }
    report["seconds"] = round(seconds, 3)
    report["documents_per_second"] = round(profile.groups["all"].documents / seconds, 1) if seconds else 0.0
    report["mb_per_second"] = round(profile.bytes_read / 1e6 / seconds, 3) if seconds else 0.0
    return report


def write_report(report: dict[str, object], output: Path) -> tuple[Path, Path]:
    """report.json and report.html in `output` (created if missing)."""
    output.mkdir(parents=True, exist_ok=True)
    as_json = output / "report.json"
    as_json.write_text(json.dumps(report, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    page = output / "report.html"
    page.write_text(render_page(report), encoding="utf-8")
    return as_json, page


def cmd_corpus_report(args: argparse.Namespace) -> int:
    settings = ProfileSettings(
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
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs (.txt, .jsonl, .parquet)")
    p.add_argument("--output", default="corpus-report", help="folder for report.json and report.html")
    p.add_argument(
        "--near-dup-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"Jaccard similarity of word 5-gram sets that makes a near duplicate (default: {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--quality",
        metavar="NAME=VALUE,...",
        help="change quality thresholds, e.g. min_words=20,max_upper_share=0.3 (default: Gopher's)",
    )
    p.add_argument("--examples", type=int, default=3, help="examples kept per flag (default: 3)")
    p.add_argument("--max-documents", type=int, help="look at the first N documents only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_read_flags(p)
