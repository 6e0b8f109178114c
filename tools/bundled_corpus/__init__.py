"""The generator of the bundled multilingual demo corpus: a small, deterministic, self-written set of documents.

What it is for: the demo and the tests need a corpus that ships with the project (nothing can be downloaded)
and that is varied enough for tokenizer round-trip audits to mean something. It covers English, Swedish,
German, French, Greek, Russian, Simplified Chinese, Japanese, source code (Python, a Makefile with tabs,
JavaScript) and emoji (ZWJ sequences, skin tones, flags, keycaps). The classic trap it exposes is a
lower-casing, accent-stripping tokenizer that turns Swedish "Åsa i Örebro" into "asa i orebro".

On purpose it also contains about 2 % exact duplicate documents (same text, different id), a handful of very
short documents (fewer than 20 characters) and two documents with unusual whitespace (double spaces,
trailing spaces, a line of only spaces, tabs, a no-break space, a trailing newline), so that deduplication,
minimum-length filters and byte-exact round trips have work to do. All text is Unicode NFC and uses "\\n"
line breaks only.

Documents are dicts ``{"id": str, "lang": str, "text": str}``; ``lang`` is one of ``LANGUAGES``. The text is
built from hand-written per-language word lists and sentence templates by one shared sentence builder, with a
seeded ``random.Random`` per language, so the output depends on nothing but the seed (not on ``hash()``,
set ordering, time or locale).

The committed files live in ``trainer/pretrain_trainer/bundled_corpus/<lang>.jsonl``, where the package's loader
(``pretrain_trainer.bundled_corpus``) reads them; ``generate.py`` here rewrites them. This folder is a developer
tool: the installed package never imports it.
"""
