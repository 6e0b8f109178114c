"""`pretrainjob corpus report`: counts, clusters, flags and examples on a planted corpus; the page in a browser."""

from __future__ import annotations

import json
import random

import pytest

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.cli import main
from pretrain_trainer.curation.page import render_page
from tests.support.browser import images_loaded, render

PII_DOC = (
    "Please write to anna.berg@example.se or call +46 8 123 45 67 about the invoice. The card on file is "
    "4111 1111 1111 1111 and the refund goes to GB82 WEST 1234 5698 7654 32. Logged from 192.168.1.20."
)
MOJIBAKE_DOC = "FranÃ§ois a rÃ©parÃ© la table de la cuisine hier, mais notre Ã©quipe a empruntÃ© une lettre."


def _planted(tmp_path):
    bundled = load_bundled_documents()
    docs = [d for lang in ("en", "sv", "de", "fr") for d in [d for d in bundled if d["lang"] == lang][:20]]
    long_en = next(d["text"] for d in docs if d["lang"] == "en" and len(d["text"].split()) > 100)
    words = long_en.split(" ")
    words[10] = "certainly"
    rows = [*docs, {"text": long_en}, {"text": " ".join(words)}, {"text": PII_DOC}, {"text": MOJIBAKE_DOC}]
    random.Random(0).shuffle(rows)
    path = tmp_path / "in" / "corpus.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, rows


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    path, rows = _planted(tmp)
    out = tmp / "out"
    code = main(["corpus", "report", str(path), "--output", str(out), "--no-progress"])
    return code, out, rows


def test_report_counts_documents_languages_and_lengths(report_run, capsys):
    code, out, rows = report_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["documents"] == len(rows)
    assert report["overall"]["characters"] == sum(len(r["text"]) for r in rows)
    langs = report["languages"]
    assert {"en", "sv", "de", "fr"} <= set(langs)
    assert sum(g["documents"] for g in langs.values()) == len(rows)
    assert sum(report["overall"]["length_histogram"]["counts"]) == len(rows)
    length = report["overall"]["length"]
    assert length["min"] <= length["p10"] <= length["median"] <= length["p90"] <= length["max"]


def test_report_finds_the_planted_exact_and_near_duplicates_with_their_sources(report_run):
    _, out, _ = report_run
    dups = json.loads((out / "report.json").read_text())["duplicates"]
    assert dups["near"]["documents"] >= 1
    near_members = [m for c in dups["near"]["largest"] for m in c["members"]]
    edited = [m for m in near_members if "Our certainly" in m["text"]]
    assert len(edited) == 1
    assert any("Our team" in m["text"] and m["text"][:40] == edited[0]["text"][:40] for m in near_members)
    assert all(m["text"] and m["source"].startswith(str(out.parent / "in")) for m in near_members)
    assert dups["exact"]["documents"] >= 1 and dups["exact"]["largest"][0]["members"][0]["text"]


def test_report_counts_personal_data_and_shows_it_masked_only(report_run):
    _, out, _ = report_run
    raw = (out / "report.json").read_text()
    report = json.loads(raw)
    for kind in ("email", "phone", "credit_card", "iban", "ip_address"):
        assert report["pii"][kind]["matches"] == 1, kind
        assert report["pii"][kind]["examples"], kind
    assert report["pii_documents"] == 1
    page = (out / "report.html").read_text()
    for secret in ("anna.berg@example.se", "4111 1111 1111 1111", "192.168.1.20", "123 45 67", "5698 7654"):
        assert secret not in raw and secret not in page, secret
    assert "**** **** **** 1111" in raw


def test_report_flags_mojibake_with_an_example(report_run):
    _, out, _ = report_run
    quality = json.loads((out / "report.json").read_text())["quality"]
    assert quality["broken_encoding"]["documents"] == 1
    assert "FranÃ§ois" in quality["broken_encoding"]["examples"][0]["text"]
    for flag, entry in quality.items():
        assert entry["examples"], flag


def test_report_prints_a_table_per_language_and_names_its_files(tmp_path, capsys):
    path, _ = _planted(tmp_path)
    assert main(["corpus", "report", str(path), "--output", str(tmp_path / "o"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "language" in printed and "near dup" in printed and "broken_encoding" in printed
    assert "report.json" in printed and "report.html" in printed


def test_report_on_a_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["corpus", "report", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "Traceback" not in err


def test_report_page_renders_in_headless_chromium_without_console_errors_and_its_images_load(report_run):
    _, out, _ = report_run
    page = render(out / "report.html")
    assert page.console == []
    loaded, total = images_loaded(page.dom)
    assert total == 3 and loaded == total
    assert "Largest duplicate clusters" in page.dom


def test_the_browser_check_catches_console_errors_and_images_that_do_not_load(tmp_path, report_run):
    _, out, _ = report_run
    broken = render_page(json.loads((out / "report.json").read_text()))
    broken = broken.replace("data:image/svg+xml;base64,", "data:image/svg+xml;base64,AAAA", 1)
    broken = broken.replace("<script>", "<script>console.error('planted');", 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    page = render(path)
    assert page.console == ["planted"]
    assert images_loaded(page.dom) == (2, 3)


def test_report_without_near_dup_still_counts_exact_duplicates_and_says_near_ones_were_not_checked(tmp_path, capsys):
    path, _ = _planted(tmp_path)
    out = tmp_path / "o"
    assert main(["corpus", "report", str(path), "--output", str(out), "--no-progress", "--no-near-dup"]) == 0
    dups = json.loads((out / "report.json").read_text())["duplicates"]
    assert dups["near"]["checked"] is False and dups["near"]["documents"] == 0
    assert dups["exact"]["documents"] >= 1
    printed = capsys.readouterr().out
    assert "near duplicates not checked" in printed and "exact copies" in printed
