"""`pretrainjob data verify`: shards decoded back to text match what prepare kept, and edits are caught."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pretrain_trainer.cli import main
from pretrain_trainer.data.shards import ShardIndex, page_crcs
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained
from tests.unit.test_prepare_filters import planted_corpus

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=2000)
FILTERS = ("--dedup", "--languages", "en,sv,de", "--near-dedup", "--redact-pii", "--validation-fraction", "0.2")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    tok = tmp / "tok"
    save_tokenizer(trained(SPEC), SPEC, str(tok))
    corpus, _ = planted_corpus(tmp / "in")
    out = tmp / "out"
    flags = ("--shard-tokens", "1500", "--no-progress", *FILTERS)
    assert main(["prepare", "--tokenizer", str(tok), "--input", str(corpus), "--output", str(out), *flags]) == 0
    return str(tok), corpus, out


def _verify(out: Path, corpus: Path, capsys) -> tuple[int, str]:
    code = main(["data", "verify", str(out), "--against", str(corpus)])
    return code, capsys.readouterr().out


def test_a_clean_prepare_round_trips_100_percent_including_redactions_and_both_splits(prepared, capsys, tmp_path):
    _, corpus, out = prepared
    code, printed = _verify(out, corpus, capsys)
    report = json.loads((out / "report.json").read_text())
    kept = report["kept"]["train"] + report["kept"]["validation"]
    assert code == 0, printed
    assert printed.startswith(f"{kept}/{kept} documents round-trip exactly (100.00%)")
    assert report["changed"], "the planted corpus has personal data, so redaction was exercised"
    assert main(["data", "verify", str(out / "validation"), "--against", str(corpus)]) == 0


def _rewrite_shard_consistently(folder: Path, tokenizer_dir: str) -> None:
    """Change one token in the middle of the first shard and fix every checksum, as a buggy writer would."""
    index = ShardIndex.from_json((folder / "index.json").read_bytes(), "index.json")
    shard = index.shards[0]
    tokens = np.frombuffer((folder / shard.name).read_bytes(), dtype="<u2").copy()
    tok = load_tokenizer(tokenizer_dir)
    i = len(tokens) // 2
    if tokens[i] == tok.eos_id:
        i += 1
    tokens[i] = tok.tokenizer.token_to_id("x") if tokens[i] != tok.tokenizer.token_to_id("x") else tokens[i] + 1
    data = tokens.tobytes()
    crcs = page_crcs(data, index.page_bytes).tobytes()
    (folder / shard.name).write_bytes(data)
    (folder / shard.crc_name).write_bytes(crcs)
    fixed = dataclasses.replace(
        shard, sha256=hashlib.sha256(data).hexdigest(), crc_sha256=hashlib.sha256(crcs).hexdigest()
    )
    (folder / "index.json").write_bytes(dataclasses.replace(index, shards=(fixed, *index.shards[1:])).to_json())


def test_a_shard_edited_with_valid_checksums_is_caught_and_the_difference_shown_character_by_character(
    prepared, capsys, tmp_path
):
    tok, corpus, out = prepared
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in out.rglob("*"):
        if path.is_file():
            target = edited / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    _rewrite_shard_consistently(edited / "train", tok)
    assert main(["data", "inspect", str(edited / "train"), "--verify"]) == 0  # checksums alone see nothing
    capsys.readouterr()
    code, printed = _verify(edited, corpus, capsys)
    assert code == 1
    first = printed.splitlines()[0]
    assert "; 1 differ" in first and "100.00%" not in first
    assert "train document" in printed and "character" in printed and "U+" in printed
    assert "expected:" in printed and "decoded:" in printed


def test_a_shard_with_flipped_bytes_fails_its_checksum_with_a_clear_error(prepared, capsys, tmp_path):
    _, corpus, out = prepared
    broken = tmp_path / "broken"
    for path in out.rglob("*"):
        if path.is_file():
            target = broken / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    shard = next((broken / "train").glob("*.bin"), None) or sorted((broken / "train").iterdir())[0]
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["data", "verify", str(broken), "--against", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err


def test_documents_added_to_the_corpus_after_prepare_are_reported_missing(prepared, capsys, tmp_path):
    _, corpus, out = prepared
    grown = tmp_path / "grown.jsonl"
    extra = "Anna berättade att biblioteket i Umeå öppnar en ny avdelning för barn och unga i höst, med många böcker."
    grown.write_text(corpus.read_text() + json.dumps({"text": extra}, ensure_ascii=False) + "\n", encoding="utf-8")
    code, printed = _verify(out, grown, capsys)
    assert code == 1 and "missing from the shards" in printed.splitlines()[0]


def test_verify_of_a_folder_without_shards_names_it(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    assert main(["data", "verify", str(tmp_path), "--against", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no shard set" in err
