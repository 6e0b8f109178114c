"""What is in a corpus: one pass over its documents gathering counts, distributions, clusters and examples.

`CorpusProfile.add(doc)` analyses one document (language, exact and near duplicates, quality signals, personal
data); `as_dict()` is the content of report.json. Examples are kept for every flag (a few per flag, first seen
first) so a person can judge what the numbers mean; personal data in examples is always masked.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from pretrain_trainer.curation import pii
from pretrain_trainer.curation.langid import LanguageResult, identify
from pretrain_trainer.curation.neardup import DEFAULT_THRESHOLD, NearDuplicateIndex
from pretrain_trainer.curation.quality import QualityThresholds, signals
from pretrain_trainer.data.readers import Document

#: Length histogram bin edges in characters (powers of two): [0, 16), [16, 32), ... [2^20, ∞).
LENGTH_EDGES = (0, *(2**k for k in range(4, 21)))
SNIPPET = 160
OVERALL = "all"


def snippet(text: str, around: int | None = None, width: int = SNIPPET) -> str:
    """Up to `width` characters of `text` (centred on position `around` if given), personal data masked.

    Masking runs on the whole text before the window is cut, so a value cut in half by the window is never
    shown unmasked.
    """
    pieces, pos, centre = [], 0, around
    for m in pii.find(text):
        shown = pii.mask(m.kind, m.value)
        pieces += [text[pos : m.start], shown]
        pos = m.end
        if centre is not None and around is not None and m.end <= around:
            centre += len(shown) - len(m.value)
    masked = "".join(pieces) + text[pos:]
    start = 0 if centre is None else max(0, centre - width // 2)
    return ("…" if start else "") + masked[start : start + width] + ("…" if start + width < len(masked) else "")


@dataclass
class _Group:
    """Counts for one language (or all documents)."""

    documents: int = 0
    characters: int = 0
    words: int = 0
    lengths: array = field(default_factory=lambda: array("I"))
    exact_duplicates: int = 0
    near_duplicates: int = 0
    mixed_languages: int = 0
    mixed_scripts: int = 0
    flagged: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    pii_documents: int = 0
    pii: Counter[str] = field(default_factory=Counter)

    def summary(self, total: int) -> dict[str, object]:
        lengths = sorted(self.lengths)

        def pct(p: float) -> int:
            return lengths[min(len(lengths) - 1, int(p * len(lengths)))] if lengths else 0

        hist = [0] * len(LENGTH_EDGES)
        for n in lengths:
            hist[_bin(n)] += 1
        return {
            "documents": self.documents,
            "share": round(self.documents / total, 4) if total else 0.0,
            "characters": self.characters,
            "words": self.words,
            "length": {
                "min": lengths[0] if lengths else 0,
                "p10": pct(0.1),
                "median": pct(0.5),
                "p90": pct(0.9),
                "max": lengths[-1] if lengths else 0,
                "mean": round(self.characters / self.documents, 1) if self.documents else 0.0,
            },
            "length_histogram": {"edges": list(LENGTH_EDGES), "counts": hist},
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "mixed_languages": self.mixed_languages,
            "mixed_scripts": self.mixed_scripts,
            "quality_flagged": self.flagged,
            "flags": dict(sorted(self.flags.items())),
            "pii_documents": self.pii_documents,
            "pii": dict(sorted(self.pii.items())),
        }


def _bin(n: int) -> int:
    for i in range(len(LENGTH_EDGES) - 1, -1, -1):
        if n >= LENGTH_EDGES[i]:
            return i
    return 0


@dataclass
class ProfileSettings:
    near_dedup: bool = True
    """Look for near duplicates (the most expensive analysis; exact duplicates are always counted)."""
    near_dup_threshold: float = DEFAULT_THRESHOLD
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    examples: int = 3
    """Examples kept per flag, per PII kind and per mixture."""
    clusters: int = 10
    """Largest duplicate clusters shown."""


class CorpusProfile:
    def __init__(self, settings: ProfileSettings | None = None) -> None:
        self.settings = settings or ProfileSettings()
        self.groups: dict[str, _Group] = defaultdict(_Group)
        self.sources: list[str] = []
        self.langs: list[str] = []
        self._hashes: dict[bytes, int] = {}
        self._exact: dict[int, list[int]] = defaultdict(list)
        self._near = NearDuplicateIndex(self.settings.near_dup_threshold) if self.settings.near_dedup else None
        self._snippets: dict[int, str] = {}
        self.examples: dict[str, list[dict[str, object]]] = defaultdict(list)
        self.bytes_read = 0

    def _example(self, key: str, doc: Document, lang: str, text: str, detail: str = "") -> None:
        if len(self.examples[key]) < self.settings.examples:
            entry: dict[str, object] = {"source": doc.source, "lang": lang, "text": text}
            if detail:
                entry["detail"] = detail
            self.examples[key].append(entry)

    def add(self, doc: Document) -> None:
        """Analyse one document."""
        i = len(self.sources)
        text = doc.text
        raw = text.encode()
        self.bytes_read += len(raw)
        self.sources.append(doc.source)
        found = identify(text)
        lang = found.lang
        self.langs.append(lang)
        sig = signals(text, lang)
        flags = self.settings.quality.flags(sig, lang)
        matches = pii.find(text)
        groups = (self.groups[OVERALL], self.groups[lang])
        for g in groups:
            g.documents += 1
            g.characters += len(text)
            g.words += sig.words
            g.lengths.append(len(text))
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        first = self._hashes.setdefault(digest, i)
        if first != i:
            self._exact[first].append(i)
            for g in groups:
                g.exact_duplicates += 1
        elif self._near is not None:
            near = self._near.add(i, text, keep_if_duplicate=True)
            if near is not None:
                for g in groups:
                    g.near_duplicates += 1
        self._tally(doc, found, flags, matches, sig.broken_chars)

    def _tally(
        self, doc: Document, found: LanguageResult, flags: list[str], matches: list[pii.Match], broken: int
    ) -> None:
        text, lang = doc.text, found.lang
        for g in (self.groups[OVERALL], self.groups[lang]):
            g.mixed_languages += found.mixed_languages
            g.mixed_scripts += found.mixed_scripts
            g.flagged += bool(flags)
            g.flags.update(flags)
            g.pii_documents += bool(matches)
            g.pii.update(m.kind for m in matches)
        if found.mixed_languages:
            self._example("mixed_languages", doc, lang, snippet(text), "+".join(found.paragraph_languages))
        if found.mixed_scripts:
            self._example("mixed_scripts", doc, lang, snippet(text), "+".join(found.scripts))
        for flag in flags:
            detail = f"{broken} broken characters" if flag == "broken_encoding" else ""
            self._example(f"quality:{flag}", doc, lang, snippet(text), detail)
        for m in matches:
            self._example(f"pii:{m.kind}", doc, lang, snippet(text, m.start, 80), pii.mask(m.kind, m.value))

    def _exact_clusters(self) -> list[list[int]]:
        return sorted(([f, *c] for f, c in self._exact.items()), key=lambda c: (-len(c), c[0]))

    def shown_documents(self) -> set[int]:
        """Positions (0-based, in reading order) of the documents that the largest clusters show.

        Texts are not kept during the pass (a cluster's first member is only known to be one later); the
        caller reads these documents again and hands them to `fill_snippet` before `as_dict`.
        """
        shown = self.settings.examples + 1
        clusters = self._exact_clusters()[: self.settings.clusters] + self._near_clusters()[: self.settings.clusters]
        return {k for cluster in clusters for k in cluster[:shown]}

    def _near_clusters(self) -> list[list[int]]:
        return self._near.clusters() if self._near is not None else []

    def fill_snippet(self, i: int, text: str) -> None:
        self._snippets[i] = snippet(text)

    def _cluster_entries(self, clusters: list[list[int]]) -> list[dict[str, object]]:
        shown = self.settings.examples + 1
        return [
            {
                "size": len(c),
                "languages": sorted({self.langs[k] for k in c}),
                "members": [{"source": self.sources[k], "text": self._snippets.get(k, "")} for k in c[:shown]],
            }
            for c in clusters
        ]

    def as_dict(self) -> dict[str, object]:
        total = self.groups[OVERALL].documents
        exact = self._exact_clusters()
        near = self._near_clusters()
        overall = self.groups[OVERALL]
        langs = sorted((k for k in self.groups if k != OVERALL), key=lambda k: (-self.groups[k].documents, k))
        quality = {k.split(":", 1)[1]: v for k, v in self.examples.items() if k.startswith("quality:")}
        flag_counts = self.groups[OVERALL].flags
        pii_counts = self.groups[OVERALL].pii
        return {
            "documents": total,
            "bytes": self.bytes_read,
            "overall": self.groups[OVERALL].summary(total),
            "languages": {k: self.groups[k].summary(total) for k in langs},
            "mixed": {
                "languages": {"documents": overall.mixed_languages, "examples": self.examples["mixed_languages"]},
                "scripts": {"documents": overall.mixed_scripts, "examples": self.examples["mixed_scripts"]},
            },
            "duplicates": {
                "exact": {
                    "documents": self.groups[OVERALL].exact_duplicates,
                    "clusters": len(exact),
                    "largest": self._cluster_entries(exact[: self.settings.clusters]),
                },
                "near": {
                    "checked": self.settings.near_dedup,
                    "threshold": self.settings.near_dup_threshold,
                    "documents": self.groups[OVERALL].near_duplicates,
                    "clusters": len(near),
                    "largest": self._cluster_entries(near[: self.settings.clusters]),
                },
            },
            "quality": {
                flag: {"documents": n, "share": round(n / total, 4), "examples": quality.get(flag, [])}
                for flag, n in sorted(flag_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            },
            "pii": {
                kind: {
                    "matches": pii_counts[kind],
                    "examples": self.examples.get(f"pii:{kind}", []),
                }
                for kind in pii.KINDS
            },
            "pii_documents": self.groups[OVERALL].pii_documents,
        }
