"""Generate the bundled multilingual demo corpus (``pretrain_trainer/bundled_corpus/<lang>.jsonl``).

Run from the repository root after changing anything in ``tools/bundled_corpus/``, and commit the result::

    python -m tools.bundled_corpus.generate            # rewrites the bundled files (also: make generate)
    python -m tools.bundled_corpus.generate OUT_DIR    # or writes a copy elsewhere

A unit test (tests/unit/test_corpus.py) checks that regenerating gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import random
import unicodedata
from collections.abc import Callable
from pathlib import Path

from pretrain_trainer.bundled_corpus import bundled_corpus_dir
from tools.bundled_corpus.east_asian import CHINESE, JAPANESE
from tools.bundled_corpus.emoji import SHORT_EMOJI, emoji_document
from tools.bundled_corpus.european import ENGLISH, FRENCH, GERMAN, GREEK, RUSSIAN, SWEDISH
from tools.bundled_corpus.language import Language, prose_document
from tools.bundled_corpus.source_code import SHORT_CODE, code_document

#: Language codes (and kinds) in generation order; each becomes one ``<lang>.jsonl`` file.
LANGUAGES: tuple[str, ...] = ("en", "sv", "de", "fr", "el", "ru", "zh", "ja", "code", "emoji")

#: Each language's generated documents stop growing once their text reaches this many UTF-8 bytes.
TARGET_BYTES_PER_LANGUAGE = 30_000

#: Share of all documents that are added again as exact duplicates (with a new id).
DUPLICATE_SHARE = 0.02


NATURAL_LANGUAGES: tuple[Language, ...] = (
    ENGLISH,
    SWEDISH,
    GERMAN,
    FRENCH,
    GREEK,
    RUSSIAN,
    CHINESE,
    JAPANESE,
)

# --- documents with unusual whitespace, for byte-exact round trips ----------------------------------------

WHITESPACE_DOCUMENTS: tuple[tuple[str, str], ...] = (
    (
        "en",
        "Notes  from the meeting  (two spaces on purpose).   \n"
        "Item one: budget.\t\tItem two: staffing.\n"
        "    \n"
        "    An indented line after a line of only spaces.\n"
        "Trailing spaces follow this line   \n"
        "\n\n"
        "Three line breaks above,\u00a0a no-break space here, and a final newline.\n",
    ),
    (
        "sv",
        "Åsa skrev:  ”Vi ses i Örebro.”  \n"
        " \n"
        "Örjan svarade\tmed en tabb,\tvia Ängelholm och Ålidhem.\n"
        "\n"
        "  Två inledande mellanslag, och två avslutande.  ",
    ),
)


# --- generation and files ----------------------------------------------------------------------------------


def _grow(make: Callable[[random.Random], str], rng: random.Random) -> list[str]:
    """Make documents until their text reaches ``TARGET_BYTES_PER_LANGUAGE`` UTF-8 bytes."""
    texts: list[str] = []
    size = 0
    while size < TARGET_BYTES_PER_LANGUAGE:
        texts.append(make(rng))
        size += len(texts[-1].encode("utf-8"))
    return texts


def _insert_randomly(texts: list[str], extra: tuple[str, ...], rng: random.Random) -> None:
    for text in extra:
        texts.insert(rng.randint(0, len(texts)), text)


def generate_documents(seed: int = 0) -> list[dict[str, str]]:
    """Generate the whole corpus: documents grouped by language in ``LANGUAGES`` order.

    The result depends only on ``seed``; seed 0 is what the bundled files hold. Ids are ``<lang>-NNNN``,
    numbered in order within each language. Raises AssertionError if any text is not NFC or contains "\\r".
    """
    natural = {lang.code: lang for lang in NATURAL_LANGUAGES}
    by_lang: dict[str, list[str]] = {}
    for index, code in enumerate(LANGUAGES):
        rng = random.Random(seed * 1_000 + index)
        if code in natural:
            lang = natural[code]
            texts = _grow(lambda r, lang=lang: prose_document(lang, r), rng)
            extra = lang.short + tuple(text for owner, text in WHITESPACE_DOCUMENTS if owner == code)
        elif code == "code":
            texts, extra = _grow(code_document, rng), SHORT_CODE
        else:
            texts, extra = _grow(emoji_document, rng), SHORT_EMOJI
        _insert_randomly(texts, extra, rng)
        by_lang[code] = texts

    # Exact duplicates: copies of randomly chosen long documents (each chosen once), in the same language.
    rng = random.Random(seed * 1_000 + 999)
    total = sum(len(texts) for texts in by_lang.values())
    candidates = [(code, text) for code in LANGUAGES for text in by_lang[code] if len(text) >= 200]
    for code, text in rng.sample(candidates, max(3, round(DUPLICATE_SHARE * total))):
        _insert_randomly(by_lang[code], (text,), rng)

    documents = []
    for code in LANGUAGES:
        for number, text in enumerate(by_lang[code]):
            assert unicodedata.is_normalized("NFC", text), f"{code} document {number} is not NFC"
            assert "\r" not in text, f"{code} document {number} contains a carriage return"
            documents.append({"id": f"{code}-{number:04d}", "lang": code, "text": text})
    return documents


def write_corpus(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write one ``<lang>.jsonl`` per language into ``out_dir`` (created if missing); returns the paths.

    Each line is ``json.dumps(doc, ensure_ascii=False)`` with keys id, lang, text, documents in generation
    order, ``\\n`` line endings on every platform. Other files in ``out_dir`` are left alone.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = generate_documents(seed)
    paths = []
    for code in LANGUAGES:
        path = out_dir / f"{code}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in documents:
                if doc["lang"] == code:
                    record = {"id": doc["id"], "lang": doc["lang"], "text": doc["text"]}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bundled_corpus.generate", description="Regenerate the bundled demo corpus."
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=None, help="where to write (default: the bundled folder)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the bundled files use 0)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else bundled_corpus_dir()
    for path in write_corpus(out_dir, seed=args.seed):
        print(f"{path}\t{path.stat().st_size:>8,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
