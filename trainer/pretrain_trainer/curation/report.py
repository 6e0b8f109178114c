"""The corpus report: one pass over the inputs (read as `prepare` reads them), then report.json and report.html."""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from pretrain_trainer.curation.page import render_page
from pretrain_trainer.curation.profile import CorpusProfile, ProfileSettings
from pretrain_trainer.data.readers import ReadOptions, expand_inputs, input_bytes, read_documents
from pretrain_trainer.storage import StorageOptions


def profile_corpus(
    patterns: list[str],
    read: ReadOptions | None = None,
    settings: ProfileSettings | None = None,
    max_documents: int | None = None,
    progress: bool = False,
    storage: StorageOptions | None = None,
) -> dict[str, object]:
    """Read every document of the inputs once and return the report (the content of report.json)."""
    files = expand_inputs(patterns, "INPUTS", storage)
    read = read or ReadOptions()
    profile = CorpusProfile(settings)
    started = time.perf_counter()
    bar = tqdm(total=input_bytes(files, storage), unit="B", unit_scale=True, desc="report", disable=not progress)
    for doc in islice(read_documents(files, read, storage), max_documents):
        before = profile.bytes_read
        profile.add(doc)
        bar.update(profile.bytes_read - before)
    bar.close()
    seconds = time.perf_counter() - started
    wanted = profile.shown_documents()
    if wanted:
        # The largest clusters' texts, read again (cheap next to the analysis) rather than kept for every document.
        last = max(wanted)
        for i, doc in enumerate(read_documents(files, read, storage)):
            if i in wanted:
                profile.fill_snippet(i, doc.text)
            if i >= last:
                break
    report = profile.as_dict()
    report["inputs"] = files
    report["settings"] = {
        "near_dedup": profile.settings.near_dedup,
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
