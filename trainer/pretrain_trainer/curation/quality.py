"""Quality signals of the kind Gopher's and C4's filters use, and the thresholds that turn them into flags.

`signals(text, lang)` measures; `QualityThresholds.flags(signals, lang)` names the checks a document fails.
Defaults follow Gopher (Rae et al., 2021, appendix A) where it has a rule: 50–100 000 words, mean word length
3–10 characters, at most 0.1 symbols (# and ellipses) per word, at most 90 % of lines starting with a bullet
and 30 % ending in an ellipsis, at least 80 % of words containing a letter, at least two stop words, at most
30 % duplicated lines or paragraphs (20 % of characters), the most frequent 2/3/4-gram covering at most
20/18/16 % of characters and duplicated 5- to 10-grams covering at most 15 … 10 %. Upper-case share (C4-style
boilerplate) and broken encoding (mojibake, U+FFFD, control characters) are ours.

Prose-only checks (word length, symbols, bullets, alphabetic words, stop words) are skipped for source code.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, fields

from pretrain_trainer.curation.langid import CODE
from pretrain_trainer.curation.neardup import words
from pretrain_trainer.curation.stopwords import STOP_WORDS

_BULLET = re.compile(r"^\s*(?:[-*•‣◦▪●·–]|\d+[.)])\s")
_ELLIPSIS_END = re.compile(r"(?:\.\.\.|…)\s*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# UTF-8 read as Latin-1 / Windows-1252: a lead byte (Â..ô) followed by characters that are continuation bytes
# (0x80-0xBF) in either code page. "Ã©" for é, "â€™" for ', "Ð¿" for п.
_CONT = "\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_MOJIBAKE = re.compile(f"[\u00c2-\u00df][{_CONT}]|[\u00e0-\u00ef][{_CONT}]{{2}}|[\u00f0-\u00f4][{_CONT}]{{3}}")
_SPACELESS = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")

TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


@dataclass(frozen=True)
class Signals:
    characters: int
    words: int
    mean_word_length: float
    """Over words of scripts written with spaces; 0 for text without any."""
    symbol_word_ratio: float
    """(# + ellipses) per word."""
    bullet_lines: float
    ellipsis_lines: float
    alpha_words: float
    """Share of words holding at least one letter."""
    stop_words: int
    """Distinct stop words of the document's language found; -1 when the language has no list."""
    dup_lines: float
    dup_line_chars: float
    dup_paragraphs: float
    dup_paragraph_chars: float
    top_ngram_chars: dict[int, float]
    dup_ngram_chars: dict[int, float]
    upper_share: float
    """Upper-case letters among cased letters."""
    broken_chars: int
    """U+FFFD, control characters (other than tab/newline/CR) and mojibake sequences."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _dup_fraction(parts: list[str]) -> tuple[float, float]:
    """Share of parts that repeat an earlier part, and the share of characters they hold."""
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for part in parts:
        if part in seen:
            dup += 1
            dup_chars += len(part)
        seen.add(part)
    return dup / len(parts), dup_chars / max(1, sum(len(p) for p in parts))


def _top_ngram_chars(tokens: list[str], n: int, total_chars: int) -> float:
    """Characters covered by the most frequent n-gram (all its occurrences) over all word characters."""
    if len(tokens) < n or not total_chars:
        return 0.0
    counts = Counter(zip(*(tokens[i:] for i in range(n)), strict=False))
    gram, count = counts.most_common(1)[0]
    return 0.0 if count < 2 else count * sum(len(w) for w in gram) / total_chars


def _dup_ngram_chars(tokens: list[str], lengths: list[int], sizes: tuple[int, ...], total: int) -> dict[int, float]:
    """For each n: characters of words inside any n-gram that occurs more than once, over all word characters.

    A repeated (n+1)-gram contains a repeated n-gram, so once a size finds none the larger ones are skipped.
    """
    out = dict.fromkeys(sizes, 0.0)
    for n in sizes:
        if len(tokens) < n or not total:
            break
        grams = list(zip(*(tokens[i:] for i in range(n)), strict=False))
        counts = Counter(grams)
        if len(counts) == len(grams):
            break
        covered = bytearray(len(tokens))
        for i, gram in enumerate(grams):
            if counts[gram] > 1:
                covered[i : i + n] = b"\x01" * n
        out[n] = sum(length for length, c in zip(lengths, covered, strict=True) if c) / total
    return out


# Upper- and lower-case letters of Latin (ASCII and Latin-1), Greek and Cyrillic: a regex count
# is ~20× faster than str.isupper() per character, and those scripts are the ones with case.
_UPPER = re.compile(r"[A-ZÀ-ÖØ-Þ\u0391-\u03a9\u0400-\u042f]")
_LOWER = re.compile(r"[a-zß-öø-ÿ\u03b1-\u03c9\u0430-\u045f]")


def signals(text: str, lang: str) -> Signals:
    """Measure every quality signal of one document (`lang` chooses the stop-word list)."""
    tokens = words(text)
    lowered = [t.lower() for t in tokens]
    lengths = [len(t) for t in tokens]
    n_words = len(tokens)
    spaced = [t for t in tokens if not _SPACELESS.match(t)]
    # In Chinese or Japanese every character is a "word": word lengths and word n-grams mean nothing there.
    mostly_spaced = len(spaced) * 2 > n_words
    lines = text.splitlines()
    nonempty = [line for line in lines if line.strip()]
    word_chars = sum(lengths)
    upper, lower = len(_UPPER.findall(text)), len(_LOWER.findall(text))
    stop = STOP_WORDS.get(lang)
    dup_lines, dup_line_chars = _dup_fraction(lines)
    dup_paras, dup_para_chars = _dup_fraction(re.split(r"\n\s*\n", text))
    return Signals(
        characters=len(text),
        words=n_words,
        mean_word_length=sum(len(t) for t in spaced) / len(spaced) if mostly_spaced else 0.0,
        symbol_word_ratio=(text.count("#") + text.count("...") + text.count("…")) / max(1, n_words),
        bullet_lines=sum(1 for line in nonempty if _BULLET.match(line)) / max(1, len(nonempty)),
        ellipsis_lines=sum(1 for line in nonempty if _ELLIPSIS_END.search(line)) / max(1, len(nonempty)),
        alpha_words=sum(1 for t in tokens if not t.isdigit()) / max(1, n_words),
        stop_words=len(stop.intersection(lowered)) if stop is not None else -1,
        dup_lines=dup_lines,
        dup_line_chars=dup_line_chars,
        dup_paragraphs=dup_paras,
        dup_paragraph_chars=dup_para_chars,
        top_ngram_chars={n: _top_ngram_chars(lowered, n, word_chars) if mostly_spaced else 0.0 for n in TOP_NGRAMS},
        dup_ngram_chars=_dup_ngram_chars(lowered, lengths, DUP_NGRAMS, word_chars)
        if mostly_spaced
        else dict.fromkeys(DUP_NGRAMS, 0.0),
        upper_share=upper / (upper + lower) if upper + lower else 0.0,
        broken_chars=text.count("\ufffd") + len(_CONTROL.findall(text)) + len(_MOJIBAKE.findall(text)),
    )


@dataclass(frozen=True)
class QualityThresholds:
    """Limits on the signals; a document outside any of them is flagged (and dropped by `prepare --quality`)."""

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    max_dup_lines: float = 0.3
    max_dup_line_chars: float = 0.2
    max_dup_paragraphs: float = 0.3
    max_dup_paragraph_chars: float = 0.2
    max_top_ngram_chars: tuple[float, float, float] = (0.20, 0.18, 0.16)
    """For 2-, 3- and 4-grams."""
    max_dup_ngram_chars: tuple[float, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)
    """For 5- to 10-grams."""
    max_upper_share: float = 0.5
    max_broken_share: float = 0.0
    """Broken characters per character; 0 flags any."""

    @classmethod
    def parse(cls, spec: str) -> QualityThresholds:
        """`min_words=20,max_upper_share=0.3` → thresholds with those fields changed (the rest default)."""
        known = {f.name: f for f in fields(cls)}
        changes: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known or name.startswith(("max_top", "max_dup_ngram")):
                settable = ", ".join(n for n in known if not n.startswith(("max_top", "max_dup_ngram")))
                raise ValueError(f"--quality: {item!r} is not NAME=VALUE with NAME one of {settable}")
            try:
                changes[name] = int(value) if known[name].type == "int" else float(value)
            except ValueError:
                raise ValueError(f"--quality: {name} needs a number, got {value!r}") from None
        return cls(**changes)  # type: ignore[arg-type]

    def flags(self, s: Signals, lang: str) -> list[str]:
        """Names of the checks `s` fails, in a fixed order."""
        out = []
        prose = lang != CODE
        if s.words < self.min_words:
            out.append("too_few_words")
        if s.words > self.max_words:
            out.append("too_many_words")
        if (
            prose
            and s.mean_word_length
            and not (self.min_mean_word_length <= s.mean_word_length <= self.max_mean_word_length)
        ):
            out.append("mean_word_length")
        if prose and s.symbol_word_ratio > self.max_symbol_word_ratio:
            out.append("symbol_word_ratio")
        if prose and s.bullet_lines > self.max_bullet_lines:
            out.append("bullet_lines")
        if s.ellipsis_lines > self.max_ellipsis_lines:
            out.append("ellipsis_lines")
        if prose and s.alpha_words < self.min_alpha_words:
            out.append("alpha_words")
        if prose and 0 <= s.stop_words < self.min_stop_words:
            out.append("stop_words")
        if s.dup_lines > self.max_dup_lines or s.dup_line_chars > self.max_dup_line_chars:
            out.append("dup_lines")
        if s.dup_paragraphs > self.max_dup_paragraphs or s.dup_paragraph_chars > self.max_dup_paragraph_chars:
            out.append("dup_paragraphs")
        if any(s.top_ngram_chars[n] > t for n, t in zip(TOP_NGRAMS, self.max_top_ngram_chars, strict=True)):
            out.append("top_ngram")
        if any(s.dup_ngram_chars[n] > t for n, t in zip(DUP_NGRAMS, self.max_dup_ngram_chars, strict=True)):
            out.append("dup_ngrams")
        if s.upper_share > self.max_upper_share:
            out.append("upper_case")
        if s.broken_chars / max(1, s.characters) > self.max_broken_share:
            out.append("broken_encoding")
        return out
