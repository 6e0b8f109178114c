"""The shared sentence builder of the bundled corpus and the per-language tables it reads."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


def word_list(text: str) -> tuple[str, ...]:
    """Split a ``" | "``-separated word list into a tuple of stripped entries."""
    return tuple(part.strip() for part in text.split("|") if part.strip())


@dataclass(frozen=True)
class Language:
    """The data tables the shared sentence builder needs for one natural language.

    Slots in ``clauses`` and ``templates``: ``{S}`` subject, ``{S2}`` a different subject, ``{V}`` verb,
    ``{O}`` object, ``{P}`` place, ``{T}`` time, ``{N}`` a formatted integer, ``{X}`` a decimal number,
    ``{PCT}`` a percentage, ``{D}`` a date, ``{Y}`` a year, ``{Q}`` a quoted phrase.
    """

    code: str
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    places: tuple[str, ...]
    times: tuple[str, ...]
    #: Clauses without final punctuation; the first is the plain order used after a connector.
    clauses: tuple[str, ...]
    #: Connectors placed between two clauses, with their punctuation and spaces.
    joins: tuple[str, ...]
    #: Complete sentences (with punctuation) that bring in numbers, dates, quotes and parentheses.
    templates: tuple[str, ...]
    fixed: tuple[str, ...]
    #: Very short stand-alone documents (fewer than 20 characters).
    short: tuple[str, ...]
    months: tuple[str, ...]
    date_formats: tuple[str, ...]
    quote: tuple[str, str]
    quotes: tuple[str, ...]
    thousands: str
    decimal: str
    percent: str = "{n}%"
    ends: tuple[str, ...] = (".", ".", ".", ".", "!")
    sentence_sep: str = " "
    bullet: str = "- "


_SLOT = re.compile(r"\{(\w+)\}")


def _format_int(lang: Language, n: int) -> str:
    """Format ``n`` with the language's thousands separator."""
    return f"{n:,}".replace(",", lang.thousands)


def _slot_value(name: str, lang: Language, rng: random.Random, filled: dict[str, str]) -> str:
    """Draw the value of one template slot; ``filled`` holds this sentence's earlier values."""
    if name == "S2":
        return rng.choice([s for s in lang.subjects if s != filled.get("S")])
    simple = {"S": lang.subjects, "V": lang.verbs, "O": lang.objects, "P": lang.places, "T": lang.times}
    if name in simple:
        return rng.choice(simple[name])
    if name == "N":
        return _format_int(lang, rng.randint(2, rng.choice((99, 9_999, 250_000))))
    if name == "X":
        return f"{rng.randint(0, 40)}{lang.decimal}{rng.randint(1, 9)}"
    if name == "PCT":
        return lang.percent.format(n=rng.randint(2, 60))
    if name == "Y":
        return str(rng.randint(1850, 2024))
    if name == "Q":
        return lang.quote[0] + rng.choice(lang.quotes) + lang.quote[1]
    if name == "D":
        year, month, day = rng.randint(1995, 2025), rng.randint(1, 12), rng.randint(1, 28)
        month_name = lang.months[month - 1] if lang.months else str(month)
        return rng.choice(lang.date_formats).format(
            y=year, m=month, d=day, mm=f"{month:02d}", dd=f"{day:02d}", month=month_name
        )
    raise KeyError(f"unknown template slot {{{name}}}")


def _fill(template: str, lang: Language, rng: random.Random) -> str:
    """Replace every ``{SLOT}`` in ``template``, left to right; a slot repeated keeps its value."""
    filled: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in filled:
            filled[name] = _slot_value(name, lang, rng, filled)
        return filled[name]

    return _SLOT.sub(replace, template)


def _capitalize(sentence: str) -> str:
    """Upper-case the first character only (the rest, names included, is already cased)."""
    return sentence[:1].upper() + sentence[1:]


def build_sentence(lang: Language, rng: random.Random) -> str:
    """One sentence: a fixed phrase, a number/date/quote template, one clause or two joined clauses."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(lang.fixed)
    if roll < 0.30:
        return _capitalize(_fill(rng.choice(lang.templates), lang, rng))
    if roll < 0.50:
        first = _fill(rng.choice(lang.clauses), lang, rng)
        second = _fill(lang.clauses[0], lang, rng)
        return _capitalize(first + rng.choice(lang.joins) + second + lang.ends[0])
    return _capitalize(_fill(rng.choice(lang.clauses), lang, rng) + rng.choice(lang.ends))


def _paragraph(lang: Language, rng: random.Random) -> str:
    """2–7 sentences; now and then a short bulleted list (one clause a line) instead."""
    if rng.random() < 0.1:
        items = [_fill(rng.choice(lang.clauses), lang, rng) for _ in range(rng.randint(2, 4))]
        return "\n".join(lang.bullet + _capitalize(item) for item in items)
    return lang.sentence_sep.join(build_sentence(lang, rng) for _ in range(rng.randint(2, 7)))


def prose_document(lang: Language, rng: random.Random) -> str:
    return "\n\n".join(_paragraph(lang, rng) for _ in range(rng.randint(1, 5)))
