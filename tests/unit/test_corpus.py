"""The bundled demo corpus: reproducible, multilingual, and seeded with the cases filters must handle."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_dir, bundled_corpus_files, load_bundled_documents
from tools.bundled_corpus import generate
from tools.bundled_corpus.generate import LANGUAGES, generate_documents, write_corpus


@pytest.fixture(scope="module")
def documents() -> list[dict[str, str]]:
    return load_bundled_documents()


@pytest.fixture(scope="module")
def text_by_lang(documents) -> dict[str, str]:
    joined: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for doc in documents:
        joined[doc["lang"]].append(doc["text"])
    return {lang: "\n\n".join(texts) for lang, texts in joined.items()}


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


# --- reproducibility and file format ------------------------------------------------------------------------


def test_regenerating_into_a_tmp_dir_gives_files_byte_identical_to_the_committed_ones(tmp_path):
    written = write_corpus(tmp_path)
    assert [p.name for p in written] == [f"{lang}.jsonl" for lang in LANGUAGES]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in bundled_corpus_files()], (
        "stale or missing files in the bundled folder: run `make generate`"
    )
    for path in written:
        committed = bundled_corpus_dir() / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{path.name} differs from a fresh generation: run `make generate`"
        )


def test_the_command_line_entry_point_writes_the_same_files(tmp_path, capsys):
    assert generate.main([str(tmp_path)]) == 0
    for path in bundled_corpus_files():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    assert "en.jsonl" in capsys.readouterr().out


def test_generation_depends_only_on_the_seed():
    assert generate_documents(0) == generate_documents(0)
    assert generate_documents(1) != generate_documents(0)


def test_loaded_documents_are_the_generated_documents_in_file_name_order(documents):
    generated = generate_documents()
    order = {lang: rank for rank, lang in enumerate(sorted(LANGUAGES))}
    assert documents == sorted(generated, key=lambda doc: order[doc["lang"]])


def test_each_file_holds_one_json_document_a_line_with_keys_id_lang_text_in_that_order():
    for path in bundled_corpus_files():
        lang = path.stem
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        for line in raw.decode("utf-8").split("\n")[:-1]:
            doc = json.loads(line)
            assert list(doc) == ["id", "lang", "text"]
            assert doc["lang"] == lang
            assert line == json.dumps(doc, ensure_ascii=False), "written with ensure_ascii=False"


def test_every_language_has_a_file():
    assert [p.name for p in bundled_corpus_files()] == sorted(f"{lang}.jsonl" for lang in LANGUAGES)


# --- size and balance ------------------------------------------------------------------------------------


def test_total_size_is_between_250_and_400_kb(documents):
    text_bytes = sum(_utf8_size(doc["text"]) for doc in documents)
    file_bytes = sum(path.stat().st_size for path in bundled_corpus_files())
    assert 250_000 <= text_bytes <= 400_000
    assert 250_000 <= file_bytes <= 400_000


def test_every_language_has_at_least_a_5_percent_share_of_the_bytes(documents):
    sizes = Counter()
    for doc in documents:
        sizes[doc["lang"]] += _utf8_size(doc["text"])
    total = sum(sizes.values())
    assert set(sizes) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert sizes[lang] / total >= 0.05, f"{lang} has only {sizes[lang] / total:.1%}"


# --- scripts and characteristic letters --------------------------------------------------------------------


def _count_in(text: str, first: int, last: int) -> int:
    return sum(first <= ord(ch) <= last for ch in text)


@pytest.mark.parametrize(
    ("lang", "required"),
    [
        ("sv", "ÅÄÖåäö"),
        ("de", "ßüäöÄÖÜ"),
        ("fr", "éèêàçôœÉÀ«»"),
        ("el", "άέήίόύώϊ"),
        ("ru", "ёйЁ«»"),
        ("zh", "，。“”（）《》"),
        ("ja", "。、「」（）"),
    ],
)
def test_each_language_uses_its_characteristic_letters_and_punctuation(text_by_lang, lang, required):
    missing = [ch for ch in required if ch not in text_by_lang[lang]]
    assert not missing, f"{lang} lacks {missing}"


def test_swedish_has_å_ä_and_ö_at_word_starts_in_both_cases(text_by_lang):
    words = text_by_lang["sv"].split()
    for letter in "ÅÄÖåäö":
        assert any(word.startswith(letter) for word in words), f"no Swedish word starts with {letter}"
    for place in ("Ängelholm", "Örebro", "Ålidhem", "Åsa"):
        assert place in text_by_lang["sv"]


@pytest.mark.parametrize(
    ("lang", "first", "last", "name"),
    [
        ("el", 0x0370, 0x03FF, "Greek"),
        ("ru", 0x0400, 0x04FF, "Cyrillic"),
        ("zh", 0x4E00, 0x9FFF, "CJK ideographs"),
        ("ja", 0x3040, 0x309F, "hiragana"),
        ("ja", 0x30A0, 0x30FF, "katakana"),
        ("ja", 0x4E00, 0x9FFF, "kanji"),
    ],
)
def test_each_script_is_well_represented(text_by_lang, lang, first, last, name):
    assert _count_in(text_by_lang[lang], first, last) >= 1_000, f"{lang} has too little {name}"


def test_chinese_is_free_of_japanese_kana(text_by_lang):
    assert _count_in(text_by_lang["zh"], 0x3040, 0x30FF) == 0


def test_emoji_include_zwj_sequences_skin_tones_flags_and_keycaps(text_by_lang):
    text = text_by_lang["emoji"]
    assert "👩\u200d💻" in text, "a ZWJ sequence"
    assert "👍🏽" in text, "a skin-tone modifier"
    assert "🇸🇪" in text, "a flag (regional indicator pair)"
    assert "\ufe0f\u20e3" in text, "a keycap"
    assert _count_in(text, 0x1F300, 0x1FAFF) >= 200


def test_code_has_four_space_indentation_tabs_in_makefiles_and_some_javascript(text_by_lang):
    text = text_by_lang["code"]
    assert "\n    " in text and "\n        " in text
    assert "\n\t" in text, "Makefile recipes are tab-indented"
    assert "def " in text and "class " in text and "# " in text
    assert "function " in text and "const " in text


# --- normalisation, whitespace, ids ------------------------------------------------------------------------


def test_all_text_is_nfc(documents):
    not_nfc = [doc["id"] for doc in documents if not unicodedata.is_normalized("NFC", doc["text"])]
    assert not not_nfc


def test_no_carriage_return_anywhere(documents):
    assert not [doc["id"] for doc in documents if "\r" in doc["text"]]
    for path in bundled_corpus_files():
        assert b"\r" not in path.read_bytes()


def test_ids_are_unique_and_prefixed_with_the_language(documents):
    ids = [doc["id"] for doc in documents]
    assert len(ids) == len(set(ids))
    assert all(doc["id"].startswith(doc["lang"] + "-") for doc in documents)


def test_some_documents_have_unusual_whitespace_for_byte_exact_round_trips(documents):
    texts = [doc["text"] for doc in documents]
    assert any("  " in text and "\t" in text for text in texts)
    assert any(" \n" in text for text in texts), "trailing spaces"
    assert any(line.strip() == "" and line != "" for text in texts for line in text.split("\n")), (
        "a line of only spaces"
    )
    assert any(text.endswith("\n") for text in texts)
    assert any("\u00a0" in text for text in texts)


# --- work for deduplication and length filters -------------------------------------------------------------


def test_exact_duplicates_make_up_at_least_1_percent_of_documents(documents):
    texts = [doc["text"] for doc in documents]
    duplicates = len(texts) - len(set(texts))
    assert duplicates >= 0.01 * len(texts)
    assert duplicates <= 0.05 * len(texts)


def test_duplicates_share_text_but_not_id(documents):
    ids_by_text: dict[str, list[str]] = {}
    for doc in documents:
        ids_by_text.setdefault(doc["text"], []).append(doc["id"])
    repeated = [ids for ids in ids_by_text.values() if len(ids) > 1]
    assert repeated
    assert all(len(set(ids)) == len(ids) for ids in repeated)


def test_at_least_five_very_short_documents_exist(documents):
    short = [doc for doc in documents if len(doc["text"]) < 20]
    assert len(short) >= 5
    assert len({doc["lang"] for doc in short}) >= 5, "short documents are spread over languages"
