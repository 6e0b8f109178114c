"""Language and script of a document, with a model that ships inside its package (py3langid).

Why py3langid: on the bundled corpus (plus emoji documents and documents joining two languages) it was as
accurate as langdetect and lingua on whole documents (98.4 % of natural-language documents; all three miss the
same few very short ones such as "OK" or "Ça va ?"), 8× faster than langdetect and 70× faster than lingua, its
wheel is 4.6 MB (lingua's is 96 MB) and it needs only numpy; gcld3 has no wheel for current Pythons.
`benchmarks/langid_candidates.py` reproduces the comparison.

Besides the language, a document gets the scripts its letters are written in and two mixture flags: mixed
scripts (a second script holds a real share of the letters) and mixed languages (paragraphs confidently
identified as different languages). Source code is recognised by its line shapes before the language model
runs, because a language model has no class for it and would name some natural language.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass

#: The label for text without enough letters to identify (emoji, numbers, symbols only).
UNDETERMINED = "und"
#: The label for source code.
CODE = "code"

#: Letters of each script; Han and kana together are Japanese, Han alone Chinese (the language model decides).
_SCRIPTS: dict[str, re.Pattern[str]] = {
    "Latin": re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"),
    "Greek": re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]"),
    "Cyrillic": re.compile(r"[\u0400-\u052f]"),
    "Armenian": re.compile(r"[\u0530-\u058f]"),
    "Hebrew": re.compile(r"[\u05d0-\u05ff]"),
    "Arabic": re.compile(r"[\u0600-\u06ff\u0750-\u077f]"),
    "Devanagari": re.compile(r"[\u0900-\u097f]"),
    "Thai": re.compile(r"[\u0e00-\u0e7f]"),
    "Hangul": re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"),
    "Kana": re.compile(r"[\u3041-\u309f\u30a0-\u30ff]"),
    "Han": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
}
#: Scripts that belong together in one writing system, counted as one for "mixed scripts".
_SCRIPT_FAMILY = {"Kana": "Han", "Hangul": "Han"}

#: A second script must hold this share of the letters (and MIN_MIXED_LETTERS of them) to make a mixture.
MIXED_SCRIPT_SHARE = 0.1
MIN_MIXED_LETTERS = 20
#: Paragraphs shorter than this many letters are not identified on their own (too little evidence).
MIN_PARAGRAPH_LETTERS = 40
#: A paragraph counts towards a language mixture only at this confidence or more.
MIXED_LANGUAGE_CONFIDENCE = 0.9
#: A second language must hold this share of the identified paragraphs' letters to make a mixture.
MIXED_LANGUAGE_SHARE = 0.2
#: The model reads at most this many characters of a document, and of each of at most MAX_PARAGRAPHS paragraphs:
#: py3langid walks its input byte by byte in Python (~1 µs a byte), and a few thousand characters decide a language.
SAMPLE_CHARS = 2000
PARAGRAPH_CHARS = 500
MAX_PARAGRAPHS = 8
#: Fewer letters than this and the document is undetermined.
MIN_LETTERS = 2

# Line shapes of source code: statements, definitions, braces, comments, assignments, indented blocks.
_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:def|class|import|from|return|if|elif|else|for|while|try|except|with|raise|yield|async|await|
           function|const|let|var|export|public|private|static|void|int|package|func|fn|use|\#include|
           \#define|SELECT|INSERT|UPDATE|CREATE|assert|continue|break|pass|del|lambda|print)\b
      | \"\"\"|'''                # docstrings
      | (?<=\ {4})\S                # indented four spaces or more (blocks, Markdown code)
      | [@\#]\w                     # decorators, preprocessor, shell comments
      | //|/\*|\*/                  # C-style comments
      | [})\]]                      # closing brackets
      | [\w.\[\]"']+\s*[:+\-*/]?=\s*\S   # assignments
      | [\w.]+\(.*\)\s*;?$          # calls
      | .*[{;:]\s*$                 # line ending in an opener or statement end
      | \t                          # tab-indented (Makefiles)
      | .*\$\(\w+\)                 # make variables
    )""",
    re.VERBOSE,
)
#: Share of non-empty lines that must look like code (with at least CODE_MIN_LINES lines).
CODE_LINE_SHARE = 0.5
CODE_MIN_LINES = 3


@dataclass(frozen=True)
class LanguageResult:
    lang: str
    """ISO 639-1 code from the model, `code` for source code, `und` without enough letters."""
    confidence: float
    """The model's normalised probability for `lang` (1.0 for code, 0.0 for und)."""
    scripts: tuple[str, ...]
    """Scripts of the letters, most letters first."""
    mixed_scripts: bool
    mixed_languages: bool
    paragraph_languages: tuple[str, ...] = ()
    """Languages of the paragraphs that made a mixture, most letters first (empty unless mixed)."""


class _Model:
    """py3langid's identifier, loaded once per process on first use (about 0.8 s)."""

    _lock = threading.Lock()
    _identifier = None

    @classmethod
    def classify(cls, text: str) -> tuple[str, float]:
        if cls._identifier is None:
            with cls._lock:
                if cls._identifier is None:
                    from py3langid.langid import MODEL_FILE, LanguageIdentifier

                    cls._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        lang, prob = cls._identifier.classify(text)
        return str(lang), float(prob)


def script_letters(text: str) -> Counter[str]:
    """Letters per script (kana and hangul apart from Han here; they join it only when judging mixtures)."""
    return Counter({name: n for name, rx in _SCRIPTS.items() if (n := len(rx.findall(text)))})


def looks_like_code(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < CODE_MIN_LINES:
        return False
    return sum(1 for line in lines if _CODE_LINE.match(line)) / len(lines) >= CODE_LINE_SHARE


def _mixed_scripts(letters: Counter[str]) -> bool:
    families: Counter[str] = Counter()
    for script, n in letters.items():
        families[_SCRIPT_FAMILY.get(script, script)] += n
    total = sum(families.values())
    if len(families) < 2:
        return False
    second = families.most_common(2)[1][1]
    return second >= MIN_MIXED_LETTERS and second / total >= MIXED_SCRIPT_SHARE


def _paragraph_languages(text: str) -> Counter[str]:
    """Letters per confidently identified language, over the paragraphs long enough to identify."""
    found: Counter[str] = Counter()
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if len(p) >= MIN_PARAGRAPH_LETTERS]
    # Evenly spread over the document when it has more paragraphs than we read.
    step = max(1, -(-len(paragraphs) // MAX_PARAGRAPHS))
    for para in paragraphs[::step]:
        para = para[:PARAGRAPH_CHARS]
        letters = sum(script_letters(para).values())
        if letters < MIN_PARAGRAPH_LETTERS:
            continue
        lang, prob = _Model.classify(para)
        if prob >= MIXED_LANGUAGE_CONFIDENCE:
            found[lang] += letters
    return found


def identify(text: str) -> LanguageResult:
    """The language of `text` and whether it mixes scripts or languages."""
    letters = script_letters(text)
    scripts = tuple(s for s, _ in letters.most_common())
    mixed_scripts = _mixed_scripts(letters)
    if looks_like_code(text):
        return LanguageResult(CODE, 1.0, scripts, mixed_scripts, False)
    if sum(letters.values()) < MIN_LETTERS:
        return LanguageResult(UNDETERMINED, 0.0, scripts, mixed_scripts, False)
    lang, prob = _Model.classify(text[:SAMPLE_CHARS])
    mixed: tuple[str, ...] = ()
    if "\n\n" in text.strip():
        paragraphs = _paragraph_languages(text)
        total = sum(paragraphs.values())
        shares = [lang for lang, n in paragraphs.most_common() if n / total >= MIXED_LANGUAGE_SHARE]
        if len(shares) >= 2:
            mixed = tuple(shares)
    return LanguageResult(lang, prob, scripts, mixed_scripts, bool(mixed), mixed)
