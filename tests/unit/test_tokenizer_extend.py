"""Extending a checkpoint's tokenizer with a new domain's words (`pretrainjob tokenizer extend`, for DAPT)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from pretrain_trainer.bundled_corpus import bundled_corpus_files, load_bundled_documents
from pretrain_trainer.tokenizer.extend import candidates, extend_tokenizer, write_extended
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer
from tests.support.data import bundled_texts

EXE = str(Path(sys.executable).with_name("pretrainjob"))
BASE_SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=512)


def _texts(*langs: str) -> list[str]:
    return [d["text"] for d in load_bundled_documents() if d["lang"] in langs]


@cache
def base() -> Tokenizer:
    """The 'checkpoint's' byte-level BPE: English and code only, so Swedish and German words split a lot."""
    return train_tokenizer(_texts("en", "code"), BASE_SPEC)


@cache
def domain_candidates() -> tuple:
    return tuple(candidates(base(), _texts("sv", "de")))


def _pieces(tok: Tokenizer, word: str) -> int:
    return len(tok.encode(word, add_special_tokens=False).ids)


def test_candidates_are_frequent_words_the_base_splits_into_many_pieces_most_savings_first():
    found = domain_candidates()
    assert len(found) >= 50
    for c in found:
        assert c.count >= 5 and c.pieces >= 3, c
        assert c.pieces == _pieces(base(), c.word), c
        assert base().token_to_id(c.word) is None
        assert c.tokens_saved == c.count * (c.pieces - 1)
    saved = [c.tokens_saved for c in found]
    assert saved == sorted(saved, reverse=True)
    words = {c.word for c in found}
    assert {"fotograferade", "Bibliothek", "Quartalsbericht"} <= words


def test_candidates_count_words_and_respect_min_count_and_min_pieces():
    tok = base()
    long_word, short_word = "Donaudampfschifffahrt", "kanelbulle"
    assert _pieces(tok, long_word) > _pieces(tok, short_word) >= 3
    texts = [f"{long_word} och {short_word}."] * 3 + [f"{short_word}!"] * 3 + ["Quuxzorbaflix"] * 2
    found = candidates(tok, texts, min_count=3)
    counts = {long_word: 3, short_word: 6}
    assert {c.word: c.count for c in found} == counts, "Quuxzorbaflix occurs only twice"
    saved = {w: n * (_pieces(tok, w) - 1) for w, n in counts.items()}
    assert [c.word for c in found] == sorted(saved, key=lambda w: (-saved[w], w))
    assert candidates(tok, texts, min_count=7) == []
    assert [c.word for c in candidates(tok, texts, min_count=3, min_pieces=_pieces(tok, long_word))] == [long_word]
    assert "Quuxzorbaflix" in {c.word for c in candidates(tok, texts, min_count=2)}


def test_candidates_leave_out_words_whose_added_token_would_not_decode_back():
    # Byte-level BPE decodes an added token through its byte-level decoder, which reads Latin-1 letters such as
    # "Ö" as single bytes (huggingface/tokenizers#1392); such words would break the lossless round trip.
    tok, words = base(), {c.word for c in domain_candidates()}
    for word in ("Örebro", "Hauptstraße", "München"):
        assert _pieces(tok, word) >= 3
        probe = extend_tokenizer(tok, [word])
        decodes_back = probe.decode([probe.token_to_id(word)]) == word
        assert (word in words) == decodes_back, word
    for word in words:
        probe = extend_tokenizer(tok, [word])
        assert probe.decode([probe.token_to_id(word)]) == word


def test_extend_keeps_every_old_token_at_its_id_and_appends_the_new_ones_in_order():
    tok = base()
    words = [c.word for c in domain_candidates()]
    extended = extend_tokenizer(tok, words)
    old_vocab = tok.get_vocab(with_added_tokens=True)
    new_vocab = extended.get_vocab(with_added_tokens=True)
    assert {t: new_vocab[t] for t in old_vocab} == old_vocab
    old_size = tok.get_vocab_size()
    assert extended.get_vocab_size() == old_size + len(words)
    assert [extended.token_to_id(w) for w in words] == list(range(old_size, old_size + len(words)))
    assert tok.get_vocab_size() == old_size, "the base tokenizer is not modified"
    assert extended.token_to_id("<|endoftext|>") == tok.token_to_id("<|endoftext|>")


def test_the_extended_byte_level_tokenizer_still_round_trips_the_bundled_corpus():
    extended = extend_tokenizer(base(), [c.word for c in domain_candidates()])
    used_new = 0
    for text in bundled_texts():
        ids = extended.encode(text, add_special_tokens=False).ids
        assert extended.decode(ids) == text
        used_new += sum(i >= base().get_vocab_size() for i in ids)
    assert used_new > 1000, "the Swedish and German documents use the new tokens"


def test_the_extended_tokenizer_encodes_an_added_word_as_one_token():
    tok = base()
    word = domain_candidates()[0].word
    extended = extend_tokenizer(tok, [word])
    new_id = extended.token_to_id(word)
    assert extended.encode(word, add_special_tokens=False).ids == [new_id]
    in_text = extended.encode(f"Hon {word} i går.", add_special_tokens=False)
    assert in_text.ids.count(new_id) == 1
    assert len(in_text.ids) < len(tok.encode(f"Hon {word} i går.", add_special_tokens=False).ids)
    # Only whole words: a longer word that contains it keeps its old pieces.
    assert new_id not in extended.encode(f"{word}smus", add_special_tokens=False).ids


def test_write_extended_copies_the_base_config_only_when_there_is_one(tmp_path):
    tok = base()
    extended = extend_tokenizer(tok, ["fotograferade"])
    with_config = save_tokenizer(tok, BASE_SPEC, str(tmp_path / "base"))
    uri = write_extended(extended, with_config, str(tmp_path / "out"))
    assert Path(uri.removeprefix("file://")).name == "tokenizer.json"
    assert Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json")).token_to_id("fotograferade") == 512
    assert (tmp_path / "out" / "tokenizer_config.json").read_bytes() == (
        tmp_path / "base" / "tokenizer_config.json"
    ).read_bytes()
    bare = save_tokenizer(tok, BASE_SPEC, str(tmp_path / "bare" / "tok.json"))
    write_extended(extended, bare, str(tmp_path / "out2"))
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["tokenizer.json"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, "tokenizer", "extend", *args], capture_output=True, text=True, timeout=120)


def test_cli_extend_writes_the_tokenizer_and_its_config_and_reports_what_it_added(tmp_path):
    save_tokenizer(base(), BASE_SPEC, str(tmp_path / "base"))
    corpus = [str(p) for p in bundled_corpus_files() if p.stem in ("sv", "de")]
    out = tmp_path / "extended"
    proc = _cli(str(tmp_path / "base"), "--corpus", *corpus, "--max-new-tokens", "25", "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert json.loads((out / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
    extended = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert extended.get_vocab_size() == 512 + 25
    top = domain_candidates()[:25]
    assert [extended.id_to_token(512 + i) for i in range(25)] == [c.word for c in top]
    assert f"added 25 tokens (512 -> 537), saving about {sum(c.tokens_saved for c in top)} tokens" in proc.stdout
    assert f"  + {top[0].word!r}: {top[0].count}× in the corpus, {top[0].pieces} pieces before" in proc.stdout
    assert str(out / "tokenizer.json") in proc.stdout


def test_cli_extend_of_a_bare_tokenizer_json_writes_no_config(tmp_path):
    bare = save_tokenizer(base(), BASE_SPEC, str(tmp_path / "tok.json"))
    corpus = str(next(p for p in bundled_corpus_files() if p.stem == "de"))
    proc = _cli(bare, "--corpus", corpus, "--max-new-tokens", "3", "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tokenizer.json"]
    assert "added 3 tokens (512 -> 515)" in proc.stdout


@pytest.mark.parametrize("missing", ["corpus", "tokenizer"])
def test_cli_extend_with_bad_input_exits_2_with_a_clear_message(tmp_path, missing):
    save_tokenizer(base(), BASE_SPEC, str(tmp_path / "base"))
    corpus = str(tmp_path / "no-such-corpus")
    tokenizer = str(tmp_path / ("no-such-tokenizer" if missing == "tokenizer" else "base"))
    if missing == "tokenizer":
        corpus = str(next(iter(bundled_corpus_files())))
    proc = _cli(tokenizer, "--corpus", corpus, "--output", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("pretrainjob: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert (corpus if missing == "corpus" else "no-such-tokenizer") in proc.stderr
    assert not (tmp_path / "out").exists()
