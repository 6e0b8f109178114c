"""Source-code documents: Python modules, Makefiles with tab-indented recipes, JavaScript."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from tools.bundled_corpus.language import word_list

# Code templates use <<slot>> placeholders so that the code's own braces, $ and % need no escaping.

_CODE_SLOT = re.compile(r"<<(\w+)>>")

_CODE_NOUNS = (
    ("user", "users"), ("order", "orders"), ("invoice", "invoices"), ("sensor", "sensors"),
    ("token", "tokens"), ("shard", "shards"), ("record", "records"), ("batch", "batches"),
    ("document", "documents"), ("ticket", "tickets"), ("station", "stations"), ("reading", "readings"),
)  # fmt: skip
_CODE_VERBS = word_list("load | parse | count | merge | filter | normalize | render | validate | collect | sort")
_CODE_FIELDS = word_list("score | weight | price | latency | temperature | priority")
_CODE_URLS = word_list("https://api.example.com/v1 | http://localhost:8080 | https://internal.example.org/api")
_CODE_NAMES = word_list("Åsa | Jürgen | Élodie | world | Zoë")

# (imports the snippet needs, snippet)
_PYTHON_SNIPPETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("import json",),
        r'''def <<verb>>_<<nouns>>(path: str, limit: int = <<n>>) -> list[dict]:
    """<<Verb>> up to ``limit`` <<nouns>> from a JSON Lines file."""
    results = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # skip blank lines
            item = json.loads(line)
            if item.get("<<field>>") is None:
                raise ValueError(f"line {line_number}: missing '<<field>>'")
            results.append(item)
            if len(results) >= limit:
                break
    return results''',
    ),
    (
        ("from dataclasses import dataclass",),
        r'''@dataclass(frozen=True)
class <<Noun>>:
    """One <<noun>> as stored in the ``<<nouns>>`` table."""

    id: int
    name: str
    <<field>>: float = <<x>>
    tags: tuple[str, ...] = ()

    def label(self) -> str:
        # Keep labels short: the dashboard truncates at <<small2>>0 characters.
        return f"{self.name} ({self.<<field>>:.2f})"[:<<small2>>0]''',
    ),
    (
        ("from collections.abc import Iterable",),
        r'''def count_<<nouns>>(rows: Iterable[dict]) -> dict[str, int]:
    """Count rows per ``<<field>>`` value, most frequent first."""
    counts: dict[str, int] = {}
    for row in rows:
        key = str(row.get("<<field>>", "unknown")).strip().lower()
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))''',
    ),
    (
        ("import time",),
        r'''class <<Noun>>Client:
    """Talks to the <<noun>> service at ``<<url>>``."""

    def __init__(self, base_url: str = "<<url>>", retries: int = <<small>>) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries

    def fetch(self, <<noun>>_id: int) -> dict:
        last_error = None
        for attempt in range(self.retries):
            try:
                return self._get(f"/<<nouns>>/{<<noun>>_id}")
            except ConnectionError as error:  # retry transient failures only
                last_error = error
                time.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"gave up after {self.retries} attempts") from last_error''',
    ),
    (
        (),
        r'''GREETINGS = {
    "en": "Hello, world!",
    "sv": "Hej, världen! Hälsningar från Örebro.",
    "de": "Hallo, Welt! Grüße aus Köln.",
    "el": "Γεια σου, κόσμε!",
    "ja": "こんにちは、世界！",
}


def greet(lang: str, name: str = "<<name>>") -> str:
    """Return a greeting in ``lang``, falling back to English."""
    template = GREETINGS.get(lang, GREETINGS["en"])
    return f"{template} ({name})"''',
    ),
    (
        ("import re",),
        r"""_WORD = re.compile(r"\w+")


def <<verb>>_words(text: str, min_len: int = <<small>>) -> list[str]:
    # \w matches letters in every script, so "Åsa" and "Ёлка" count as words too.
    words = [w.casefold() for w in _WORD.findall(text) if len(w) >= min_len]
    print("found", len(words), "words", sep="\t")  # tab-separated for cut(1)
    return words""",
    ),
    (
        (),
        r'''def test_<<verb>>_<<nouns>>_keeps_every_item():
    items = [<<ints>>]
    assert sorted(items) == sorted(<<verb>>_<<nouns>>(items))
    assert len(items) == <<count>>, "no <<noun>> may be lost"''',
    ),
)

_PYTHON_MAIN = r"""def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="<<Verb>> <<nouns>> from a file.")
    parser.add_argument("path")
    parser.add_argument("--limit", type=int, default=<<n>>)
    args = parser.parse_args(argv)
    print(f"{args.path}: limit={args.limit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())"""

# Make recipes must be indented with a real tab character.
_MAKEFILES = (
    """PYTHON ?= python3
SRC := src
BUILD := build/<<noun>>

.PHONY: all test clean

all: $(BUILD)/<<nouns>>.json

$(BUILD)/<<nouns>>.json: $(SRC)/<<verb>>.py data/<<nouns>>.csv
\tmkdir -p $(BUILD)
\t$(PYTHON) $(SRC)/<<verb>>.py --limit <<n>> data/<<nouns>>.csv > $@

test:
\t$(PYTHON) -m pytest -q tests/

clean:
\trm -rf $(BUILD)""",
    """# Build the <<noun>> report; run `make help` for the targets.
CC = gcc
CFLAGS = -O2 -Wall -Wextra
OBJECTS = main.o <<verb>>.o <<nouns>>.o

<<nouns>>: $(OBJECTS)
\t$(CC) $(CFLAGS) -o $@ $^

%.o: %.c <<nouns>>.h
\t$(CC) $(CFLAGS) -c $< -o $@

help:
\t@echo "targets: <<nouns>> clean help"

clean:
\trm -f $(OBJECTS) <<nouns>>""",
)

_JAVASCRIPT_SNIPPETS = (
    """const <<nouns>> = [<<ints>>];

function <<verb>><<Noun>>List(items, limit = <<n>>) {
  // Returns at most `limit` items, newest first.
  return items
    .filter((item) => item.<<field>> !== undefined)
    .sort((a, b) => b.createdAt - a.createdAt)
    .slice(0, limit);
}""",
    """export async function fetch<<Noun>>(id) {
  const response = await fetch(`<<url>>/<<nouns>>/${id}`);
  if (!response.ok) {
    throw new Error(`HTTP ${response.status} for <<noun>> ${id}`);
  }
  return response.json();
}""",
    """const labels = { sv: "Sök", de: "Suchen", fr: "Rechercher", el: "Αναζήτηση", ja: "検索" };
const button = document.querySelector("#search");
button.textContent = labels[navigator.language.slice(0, 2)] ?? "Search";
button.title = '<<Verb>> <<nouns>> (<<count>> max)';""",
)


def _code_slots(rng: random.Random) -> Callable[[str], str]:
    """Draw one set of names and numbers for a code document; returns the function that fills a template."""
    noun, nouns = rng.choice(_CODE_NOUNS)
    verb = rng.choice(_CODE_VERBS)
    count = rng.randint(3, 8)
    values = {
        "noun": noun,
        "nouns": nouns,
        "Noun": noun.capitalize(),
        "verb": verb,
        "Verb": verb.capitalize(),
        "field": rng.choice(_CODE_FIELDS),
        "url": rng.choice(_CODE_URLS),
        "name": rng.choice(_CODE_NAMES),
        "n": str(rng.randint(10, 500)),
        "small": str(rng.randint(2, 5)),
        "small2": str(rng.randint(2, 9)),
        "x": f"{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "count": str(count),
        "ints": ", ".join(str(rng.randint(0, 99)) for _ in range(count)),
    }
    return lambda template: _CODE_SLOT.sub(lambda match: values[match.group(1)], template)


def code_document(rng: random.Random) -> str:
    """A Python module (most often), a Makefile with tab-indented recipes, or JavaScript."""
    fill = _code_slots(rng)
    roll = rng.random()
    if roll < 0.15:
        return fill(rng.choice(_MAKEFILES))
    if roll < 0.35:
        snippets = rng.sample(_JAVASCRIPT_SNIPPETS, rng.randint(1, 2))
        return "\n\n".join(fill(snippet) for snippet in snippets)
    chosen = rng.sample(_PYTHON_SNIPPETS, rng.randint(1, 3))
    with_main = rng.random() < 0.4
    needed = {line for imports, _ in chosen for line in imports}
    if with_main:
        needed.add("import argparse")
    imports = sorted(needed, key=lambda line: (line.startswith("from "), line))  # "import x" before "from x"
    header = '"""<<Verb>> and report <<nouns>> (generated demo code)."""'
    if imports:
        header += "\n\n" + "\n".join(imports)
    parts = [header, *(snippet for _, snippet in chosen)]
    if with_main:
        parts.append(_PYTHON_MAIN)
    return fill("\n\n\n".join(parts))  # PEP 8: two blank lines between top-level definitions


#: A very short code document (fewer than 20 characters).
SHORT_CODE = ("print('OK')",)
