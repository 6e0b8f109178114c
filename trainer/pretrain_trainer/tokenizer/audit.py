"""Audit a tokenizer on a corpus before any GPU time is spent on it.

Measures, per language (or per dominant script where the corpus has no language labels):
- round-trip fidelity: the share of documents where decode(encode(x)) == x, exactly and ignoring whitespace;
- unknown-token rate, characters per token, tokens per word (fertility);
and over the whole corpus the share of the vocabulary that is used. It explains what a lossy tokenizer loses:
which characters came back as which (Å→a), and whether its normaliser lower-cases or strips accents.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from pretrain_trainer.data.readers import Document

# Scripts written without spaces between words: tokens per word means nothing there.
UNSPACED_SCRIPTS = {"CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN"}
# Letters that a faithful normaliser must leave alone; the probe shows what this one does to them.
PROBE = "Åsa Ängelholm Örebro åäö ÉéèçÜüß Ωμέγα Жёлтый"
BATCH = 256


def dominant_script(text: str) -> str:
    """The Unicode script most letters of `text` belong to (LATIN, CYRILLIC, CJK, ...), or OTHER."""
    counts: Counter[str] = Counter()
    for ch in text[:4000]:
        if ch.isalpha():
            counts[unicodedata.name(ch, "OTHER ?").split(" ")[0]] += 1
    return counts.most_common(1)[0][0] if counts else "OTHER"


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _no_space(text: str) -> str:
    return "".join(text.split())


@dataclass
class GroupStats:
    """Counts for one language or script."""

    name: str
    documents: int = 0
    characters: int = 0
    tokens: int = 0
    words: int = 0
    unknown_tokens: int = 0
    exact_roundtrips: int = 0
    content_roundtrips: int = 0
    unspaced: bool = False

    def add(self, other: GroupStats) -> None:
        for attr in (
            "documents",
            "characters",
            "tokens",
            "words",
            "unknown_tokens",
            "exact_roundtrips",
            "content_roundtrips",
        ):
            setattr(self, attr, getattr(self, attr) + getattr(other, attr))

    @property
    def roundtrip(self) -> float:
        return self.exact_roundtrips / self.documents if self.documents else 1.0

    @property
    def content_roundtrip(self) -> float:
        return self.content_roundtrips / self.documents if self.documents else 1.0

    @property
    def unknown_rate(self) -> float:
        return self.unknown_tokens / self.tokens if self.tokens else 0.0

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_word(self) -> float | None:
        return None if self.unspaced or not self.words else self.tokens / self.words

    def as_dict(self) -> dict[str, object]:
        return {
            "documents": self.documents,
            "characters": self.characters,
            "tokens": self.tokens,
            "roundtrip": round(self.roundtrip, 6),
            "roundtrip_ignoring_whitespace": round(self.content_roundtrip, 6),
            "unknown_rate": round(self.unknown_rate, 6),
            "chars_per_token": round(self.chars_per_token, 4),
            "tokens_per_word": None if self.tokens_per_word is None else round(self.tokens_per_word, 4),
        }


@dataclass(frozen=True)
class Mismatch:
    source: str
    original: str
    decoded: str


@dataclass
class AuditReport:
    vocab_size: int
    groups: dict[str, GroupStats]
    total: GroupStats
    vocab_used: int
    mismatches: list[Mismatch]
    substitutions: Counter[tuple[str, str]]
    """(original, decoded) character pairs seen in lossy round trips, whitespace ignored; '' means dropped."""
    normalizer_probe: tuple[str, str]
    findings: list[str] = field(default_factory=list)

    @property
    def vocab_utilisation(self) -> float:
        return self.vocab_used / self.vocab_size if self.vocab_size else 0.0

    def fidelity(self, ignore_whitespace: bool = False) -> float:
        """The round-trip share the pass/fail threshold applies to."""
        return self.total.content_roundtrip if ignore_whitespace else self.total.roundtrip

    def passes(self, threshold: float, ignore_whitespace: bool = False) -> bool:
        return self.fidelity(ignore_whitespace) >= threshold

    def as_dict(self) -> dict[str, object]:
        return {
            "vocab_size": self.vocab_size,
            "vocab_used": self.vocab_used,
            "vocab_utilisation": round(self.vocab_utilisation, 6),
            "total": self.total.as_dict(),
            "groups": {k: v.as_dict() for k, v in sorted(self.groups.items())},
            "findings": self.findings,
            "lost_characters": [
                {"original": o, "decoded": d, "count": c} for (o, d), c in self.substitutions.most_common(20)
            ],
            "first_mismatches": [m.__dict__ for m in self.mismatches],
        }


def _diff_window(original: str, decoded: str, context: int = 40) -> tuple[str, str]:
    """Both strings cut to a window around their first difference."""
    i = 0
    while i < min(len(original), len(decoded)) and original[i] == decoded[i]:
        i += 1
    start = max(0, i - context)
    return original[start : i + context], decoded[start : i + context]


def _substitutions(original: str, decoded: str, limit: int = 2000) -> Counter[tuple[str, str]]:
    """Character-level changes between the two texts (whitespace ignored), on a bounded prefix."""
    a, b = _no_space(original)[:limit], _no_space(decoded)[:limit]
    found: Counter[tuple[str, str]] = Counter()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            found.update(zip(a[i1:i2], b[j1:j2], strict=True))
        elif op in ("replace", "delete"):
            found[(a[i1:i2], b[j1:j2])] += 1
    return found


def _findings(report: AuditReport, tok: Tokenizer) -> list[str]:
    out = []
    before, after = report.normalizer_probe
    accent_pairs = Counter(
        {
            (o, d): c
            for (o, d), c in report.substitutions.items()
            if len(o) == 1 and o != d and strip_accents(o).lower() == d.lower() and strip_accents(o) != o
        }
    )
    case_pairs = Counter(
        {(o, d): c for (o, d), c in report.substitutions.items() if len(o) == 1 and o != d and o.lower() == d}
    )
    probe_strips = strip_accents(before).lower() == after.lower() and after.lower() != before.lower()
    if accent_pairs or probe_strips:
        examples = ", ".join(f"'{o}'→'{d}' ({c}×)" for (o, d), c in accent_pairs.most_common(10))
        out.append(
            "ACCENTS STRIPPED: the tokenizer's normaliser removes diacritics"
            + (f" — {examples}" if examples else "")
            + f". It turns {before!r} into {after!r}, so words that differ only by accents (Swedish å/ä/ö, "
            "German umlauts, French accents) become the same tokens and the text cannot be restored. "
            "Train your own tokenizer without accent stripping (pretrainjob tokenizer train, the default), "
            "or use a cased checkpoint's tokenizer."
        )
    if case_pairs or (after != before and after == after.lower() and before != before.lower()):
        examples = ", ".join(f"'{o}'→'{d}' ({c}×)" for (o, d), c in case_pairs.most_common(4))
        out.append(
            "LOWER-CASED: upper-case letters do not survive the round trip"
            + (f" ({examples})" if examples else "")
            + ". Fine for an uncased model if that is intended; otherwise train with case kept."
        )
    dropped = sum(c for (o, d), c in report.substitutions.items() if d == "")
    if report.total.unknown_tokens:
        lost = ", ".join(repr(o) for (o, d), _ in report.substitutions.most_common(40) if d == "")[:200]
        out.append(
            f"UNKNOWN TOKENS: {report.total.unknown_tokens} tokens ({report.total.unknown_rate:.2%}) are the "
            f"unknown token; {dropped} character runs were lost{': ' + lost if lost else ''}. "
            "Use byte-level BPE (never unknown) or train on text that covers these characters."
        )
    if not tok.get_vocab_size():
        out.append("EMPTY VOCABULARY: the tokenizer has no tokens.")
    return out


def audit_tokenizer(tok: Tokenizer, documents: Iterable[Document], max_mismatches: int = 5) -> AuditReport:
    """Encode and decode every document and gather the statistics described in the module docstring."""
    unk_token = getattr(tok.model, "unk_token", None)
    unk_id = tok.token_to_id(unk_token) if unk_token else None
    groups: dict[str, GroupStats] = {}
    used: set[int] = set()
    mismatches: list[Mismatch] = []
    substitutions: Counter[tuple[str, str]] = Counter()

    def flush(batch: list[Document]) -> None:
        encodings = tok.encode_batch([d.text for d in batch], add_special_tokens=False)
        decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=True)
        for doc, enc, dec in zip(batch, encodings, decoded, strict=True):
            script = dominant_script(doc.text)
            g = groups.setdefault(doc.lang or script, GroupStats(doc.lang or script))
            g.unspaced = g.unspaced or script in UNSPACED_SCRIPTS
            g.documents += 1
            g.characters += len(doc.text)
            g.tokens += len(enc.ids)
            g.words += len(doc.text.split())
            used.update(enc.ids)
            if unk_id is not None:
                g.unknown_tokens += enc.ids.count(unk_id)
            if dec == doc.text:
                g.exact_roundtrips += 1
                continue
            if _no_space(dec) == _no_space(doc.text):
                g.content_roundtrips += 1
            else:
                substitutions.update(_substitutions(doc.text, dec))
            if len(mismatches) < max_mismatches:
                mismatches.append(Mismatch(doc.source, *_diff_window(doc.text, dec)))

    batch: list[Document] = []
    for doc in documents:
        batch.append(doc)
        if len(batch) >= BATCH:
            flush(batch)
            batch = []
    if batch:
        flush(batch)

    for g in groups.values():
        g.content_roundtrips += g.exact_roundtrips
    total = GroupStats("all")
    for g in groups.values():
        total.add(g)
    total.unspaced = all(g.unspaced for g in groups.values()) if groups else False
    probe_after = tok.normalizer.normalize_str(PROBE) if tok.normalizer is not None else PROBE
    report = AuditReport(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        groups=groups,
        total=total,
        vocab_used=len(used),
        mismatches=mismatches,
        substitutions=substitutions,
        normalizer_probe=(PROBE, probe_after),
    )
    report.findings = _findings(report, tok)
    return report


def format_report(report: AuditReport, threshold: float, ignore_whitespace: bool) -> str:
    """A table per group, the findings and the first mismatches, for a terminal."""
    lines = [
        f"{'group':<12}{'docs':>7}{'round-trip':>12}{'ignoring ws':>13}{'unk rate':>10}"
        f"{'chars/tok':>11}{'tok/word':>10}"
    ]
    for g in [*sorted(report.groups.values(), key=lambda g: g.name), report.total]:
        tpw = "-" if g.tokens_per_word is None else f"{g.tokens_per_word:.2f}"
        lines.append(
            f"{g.name:<12}{g.documents:>7}{g.roundtrip:>12.2%}{g.content_roundtrip:>13.2%}"
            f"{g.unknown_rate:>10.2%}{g.chars_per_token:>11.2f}{tpw:>10}"
        )
    lines.append(f"vocabulary: {report.vocab_used} of {report.vocab_size} tokens used ({report.vocab_utilisation:.1%})")
    for m in report.mismatches:
        lines.append(f"mismatch in {m.source}:\n  original: {m.original!r}\n  decoded:  {m.decoded!r}")
    lines.extend(f"! {f}" for f in report.findings)
    kind = "round-trip ignoring whitespace" if ignore_whitespace else "round-trip"
    verdict = "PASS" if report.passes(threshold, ignore_whitespace) else "FAIL"
    lines.append(f"{verdict}: {kind} fidelity {report.fidelity(ignore_whitespace):.2%} (threshold {threshold:.2%})")
    return "\n".join(lines)
