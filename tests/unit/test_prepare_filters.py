"""`prepare --languages/--quality/--near-dedup/--redact-pii`: what is dropped or changed, by reason, with examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.cli import main
from pretrain_trainer.curation.langid import identify
from pretrain_trainer.curation.verify import decoded_documents
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=2000)
PII_DOC = (
    "Please write to anna.berg@example.se or call +46 8 123 45 67 about the invoice for the kitchen table. "
    "The card on file is 4111 1111 1111 1111 and the server that sent the message was 192.168.1.20 today."
)
MOJIBAKE_DOC = (
    "It\u00e2\u20ac\u2122s a nice day in the garden, isn\u00e2\u20ac\u2122t it? The teacher said that the new "
    "intern would bring the old map of the city to the office on Monday, and that everyone was welcome."
)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(trained(SPEC), SPEC, str(path))
    return str(path)


def planted_corpus(folder: Path) -> tuple[Path, list[dict[str, str]]]:
    """Bundled documents of six languages plus a near duplicate, a document with personal data and mojibake."""
    bundled = load_bundled_documents()
    docs = [d for lang in ("en", "sv", "de", "fr", "ru", "ja") for d in [x for x in bundled if x["lang"] == lang][:12]]
    original = next(d["text"] for d in docs if d["lang"] == "en" and len(d["text"].split()) > 100)
    words = original.split(" ")
    words[12] = "certainly"
    rows = [*docs, {"text": " ".join(words)}, {"text": PII_DOC}, {"text": MOJIBAKE_DOC}]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, rows


def _prepare(tokenizer_dir, corpus, out, *flags) -> int:
    return main(
        ["prepare", "--tokenizer", tokenizer_dir, "--input", str(corpus), "--output", str(out), "--no-progress", *flags]
    )


def _documents(out: Path, tokenizer_dir: str) -> list[str]:
    return list(decoded_documents(ShardSet.open(str(out / "train")), load_tokenizer(tokenizer_dir)))


FILTERS = ("--dedup", "--languages", "en,sv", "--quality", "min_words=10", "--near-dedup", "--redact-pii")


def test_filters_drop_by_language_quality_and_near_duplicate_and_redact_personal_data(tokenizer_dir, tmp_path):
    corpus, rows = planted_corpus(tmp_path / "in")
    assert _prepare(tokenizer_dir, corpus, tmp_path / "out", *FILTERS) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    other = sum(identify(r["text"]).lang not in ("en", "sv") for r in rows)
    assert report["dropped"]["language"] >= other - 2  # low-confidence en/sv one-liners may go too
    assert report["dropped"]["near_duplicate"] == 1
    assert report["dropped"]["quality:broken_encoding"] == 1
    assert report["changed"] == {
        "redacted:credit_card": 1,
        "redacted:email": 1,
        "redacted:ip_address": 1,
        "redacted:phone": 1,
    }
    for reason in (*report["dropped"], *report["changed"]):
        assert report["examples"][reason], reason
    assert "Jaccard" in report["examples"]["near_duplicate"][0]["detail"]
    assert report["documents_read"] == len(rows) == report["kept"]["train"] + sum(report["dropped"].values())
    kept = _documents(tmp_path / "out", tokenizer_dir)
    assert len(kept) == report["kept"]["train"]
    redacted = [d for d in kept if "<EMAIL>" in d]
    assert len(redacted) == 1 and "<PHONE>" in redacted[0] and "<CREDIT_CARD>" in redacted[0]
    assert "anna.berg" not in json.dumps(report) and not any("anna.berg" in d for d in kept)
    assert all(identify(d).lang in ("en", "sv") for d in kept)


def test_prepare_prints_drops_and_changes_by_reason_with_an_example(tokenizer_dir, tmp_path, capsys):
    corpus, _ = planted_corpus(tmp_path / "in")
    assert _prepare(tokenizer_dir, corpus, tmp_path / "out", *FILTERS) == 0
    printed = capsys.readouterr().out
    assert "near_duplicate" in printed and "redacted:email" in printed and "e.g. quality:broken_encoding" in printed


def test_prepare_with_filters_is_deterministic(tokenizer_dir, tmp_path):
    corpus, _ = planted_corpus(tmp_path / "in")
    for run in ("a", "b"):
        assert _prepare(tokenizer_dir, corpus, tmp_path / run, *FILTERS, "--validation-fraction", "0.2") == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        if rel.name == "report.json":
            a, b = (json.loads((tmp_path / r / rel).read_text()) for r in ("a", "b"))
            for timing in ("seconds", "tokens_per_second", "outputs"):
                a.pop(timing), b.pop(timing)
            assert a == b
        elif rel.name != "index.json":
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_without_filters_prepare_keeps_what_it_kept_before(tokenizer_dir, tmp_path):
    corpus, rows = planted_corpus(tmp_path / "in")
    assert _prepare(tokenizer_dir, corpus, tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["kept"]["train"] == len(rows) and report["changed"] == {} and report["dropped"] == {}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--languages", " , "), "--languages"),
        (("--quality", "min_wordz=3"), "min_wordz"),
        (("--languages", "en", "--language-confidence", "1.5"), "language_confidence"),
        (("--near-dedup", "--near-dup-threshold", "0"), "near_dup_threshold"),
    ],
)
def test_bad_filter_settings_are_clear_errors(tokenizer_dir, tmp_path, capsys, flags, message):
    corpus, _ = planted_corpus(tmp_path / "in")
    assert _prepare(tokenizer_dir, corpus, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
