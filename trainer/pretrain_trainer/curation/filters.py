"""The curation filters `prepare` runs on each document: language, quality, near duplicates, personal data.

    pretrainjob prepare ... --languages sv,en --language-confidence 0.8 --quality --near-dedup --redact-pii

They are the functions the corpus report uses, so a report with the same settings predicts what is dropped.
Order: language, then redaction, then quality and near duplicates judged on the redacted text (a dropped
document never becomes the "original" that keeps a later copy out). Every decision is counted by reason, with examples.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from pretrain_trainer.curation import pii
from pretrain_trainer.curation.langid import identify
from pretrain_trainer.curation.neardup import DEFAULT_THRESHOLD, NearDuplicateIndex
from pretrain_trainer.curation.profile import snippet
from pretrain_trainer.curation.quality import QualityThresholds, signals

EXAMPLES_PER_REASON = 3


@dataclass(frozen=True)
class CurationConfig:
    near_dedup: bool = False
    """Drop documents whose word 5-gram set is this similar (Jaccard) to a kept one."""
    near_dup_threshold: float = DEFAULT_THRESHOLD
    languages: tuple[str, ...] = ()
    """Keep only documents identified as one of these (ISO 639-1 codes, `code`, `und`); empty keeps all."""
    language_confidence: float = 0.5
    """…and identified with at least this confidence."""
    quality: QualityThresholds | None = None
    """Drop documents failing any quality check; None: no quality filter."""
    redact_pii: bool = False
    """Replace personal data with placeholders such as <EMAIL>."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.language_confidence <= 1.0:
            raise ValueError(f"language_confidence: must be in [0, 1], got {self.language_confidence}")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ValueError(f"near_dup_threshold: must be in (0, 1], got {self.near_dup_threshold}")

    @property
    def active(self) -> bool:
        return bool(self.near_dedup or self.languages or self.quality is not None or self.redact_pii)


@dataclass
class CurationLog:
    """Documents dropped and changed by reason, with a few examples of each (personal data masked)."""

    dropped: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def drop(self, reason: str, source: str, text: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        self.note(reason, source, text, detail)

    def note(self, reason: str, source: str, text: str, detail: str = "") -> None:
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            entry = {"source": source, "text": snippet(text)}
            if detail:
                entry["detail"] = detail
            self.examples[reason].append(entry)


class CurationFilter:
    """Decides, document by document in input order, what `prepare` keeps and in what form."""

    def __init__(self, cfg: CurationConfig) -> None:
        self.cfg = cfg
        self.log = CurationLog()
        self._near = NearDuplicateIndex(cfg.near_dup_threshold) if cfg.near_dedup else None
        self._languages = frozenset(cfg.languages)

    def apply(self, source: str, text: str) -> str | None:
        """The text to keep (redacted if asked), or None when a filter drops the document."""
        kept, redacted, _ = self.screen(source, text)
        if kept is None:
            return None
        values = self._near.values(kept) if self._near is not None else None
        return kept if self.reduce(source, values, redacted, kept) else None

    def screen(self, source: str, text: str) -> tuple[str | None, tuple[str, ...], str]:
        """Language, redaction and quality: what one document decides alone. Returns the kept text (None when
        dropped), the kinds of personal data redacted in it, and the reason it was dropped ("" when kept)."""
        cfg = self.cfg
        lang = None
        if self._languages or cfg.quality is not None:
            found = identify(text)
            lang = found.lang
            if self._languages and (lang not in self._languages or found.confidence < cfg.language_confidence):
                self.log.drop("language", source, text, f"{lang} ({found.confidence:.2f})")
                return None, (), "language"
        # Redact before judging quality and similarity: the kept text is what they should judge (digit runs of a
        # phone number would otherwise count against the share of alphabetic words).
        matches = pii.find(text) if cfg.redact_pii else []
        kept = pii.redact(text, matches) if matches else text
        if cfg.quality is not None:
            flags = cfg.quality.flags(signals(kept, lang or ""), lang or "")
            if flags:
                self.log.drop(f"quality:{flags[0]}", source, kept, ", ".join(flags))
                return None, (), f"quality:{flags[0]}"
        return kept, tuple(sorted({m.kind for m in matches})), ""

    def signature(self, kept: str) -> np.ndarray | None:
        """The near-duplicate signature of a screened text (None without --near-dedup or when too short)."""
        return self._near.values(kept) if self._near is not None else None

    def reduce(self, source: str, values: np.ndarray | None, redacted: tuple[str, ...], kept: str = "") -> bool:
        """The part that depends on earlier documents: whether a screened document survives near-dedup, given its
        signature, in corpus order. `prepare` calls it as it goes; the merge of its tasks, from stored signatures
        (then `kept` is empty: examples name the source only)."""
        if self._near is not None:
            near = self._near.add_values(source, values)
            if near is not None:
                self.log.drop("near_duplicate", source, kept, f"of {near[0]} (Jaccard ≈ {near[1]:.2f})")
                return False
        for kind in redacted:
            self.log.changed[f"redacted:{kind}"] += 1
            self.log.note(f"redacted:{kind}", source, kept)
        return True


def add_curation_flags(p: argparse.ArgumentParser) -> None:
    """`prepare`'s filter flags."""
    g = p.add_argument_group("curation filters (the functions of `pretrainjob corpus report`)")
    g.add_argument("--near-dedup", action="store_true", help="drop near duplicates of kept documents (MinHash LSH)")
    g.add_argument(
        "--near-dup-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="Jaccard similarity of word 5-gram sets for --near-dedup (default: %(default)s)",
    )
    g.add_argument("--languages", help="keep only these languages, e.g. sv,en (ISO 639-1; also code, und)")
    g.add_argument(
        "--language-confidence",
        type=float,
        default=CurationConfig.language_confidence,
        help="with --languages: minimum confidence of the identification (default: %(default)s)",
    )
    g.add_argument(
        "--quality",
        nargs="?",
        const="",
        metavar="NAME=VALUE,...",
        help="drop documents failing Gopher/C4-style checks; optionally change thresholds, e.g. min_words=20",
    )
    g.add_argument("--redact-pii", action="store_true", help="replace personal data with <EMAIL>, <PHONE>, ...")


def curation_config(args: argparse.Namespace) -> CurationConfig:
    """The CurationConfig the flags of `add_curation_flags` ask for."""
    languages = tuple(x.strip() for x in (args.languages or "").split(",") if x.strip())
    if args.languages is not None and not languages:
        raise ValueError("--languages: give language codes separated by commas, e.g. sv,en")
    return CurationConfig(
        near_dedup=args.near_dedup,
        near_dup_threshold=args.near_dup_threshold,
        languages=languages,
        language_confidence=args.language_confidence,
        quality=None if args.quality is None else QualityThresholds.parse(args.quality),
        redact_pii=args.redact_pii,
    )
