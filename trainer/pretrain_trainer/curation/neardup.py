"""Near-duplicate documents: MinHash signatures of word 5-gram shingles, found with LSH (datasketch).

Shingles are runs of SHINGLE_WORDS words, lower-cased; in scripts written without spaces (Chinese, Japanese,
Thai, Korean syllables) every character counts as a word, so a Chinese document shingles as well as an English
one. Every LSH candidate is confirmed by comparing the two signatures (the estimated Jaccard similarity must
reach the threshold), so the banding's false positives never make a cluster. Signatures are kept as uint32
(datasketch's affine32 scheme), 4 bytes per permutation per document.

`NearDuplicateIndex.add` answers online, in input order: the earliest earlier document the new one is a near
duplicate of, if any. `prepare` uses that to drop later copies; the corpus report also keeps the copies in the
index so that whole clusters show up (`clusters()`).
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasketch import MinHash

DEFAULT_THRESHOLD = 0.7
"""Jaccard similarity of the shingle sets at which two documents are near duplicates."""
NUM_PERM = 128
SHINGLE_WORDS = 5
SCHEME = "affine32"

# A "word": a run of letters/digits, or one character of a script written without spaces.
_WORD = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|\w+")


def words(text: str) -> list[str]:
    """The words of `text`: runs of letters and digits, and single characters of scripts written without spaces."""
    return _WORD.findall(text)


def shingles(text: str, size: int = SHINGLE_WORDS) -> list[bytes]:
    """The distinct word `size`-grams of `text` (lower-cased), UTF-8 encoded; empty if it has fewer words."""
    found = words(text.lower())
    return list({" ".join(found[i : i + size]).encode() for i in range(len(found) - size + 1)})


def _crc32(data: bytes) -> int:
    # A fast, stable 32-bit hash (sha1, datasketch's default, is ~3× slower here); the affine32 scheme mixes it.
    return zlib.crc32(data)


class NearDuplicateIndex:
    """An LSH index over MinHash signatures that reports, for each new document, its earliest near duplicate."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-dedup threshold: must be in (0, 1], got {threshold}")
        from datasketch import MinHash, MinHashLSH  # scipy underneath: only commands that use it pay the import

        self.threshold = threshold
        self._template = MinHash(num_perm=num_perm, seed=seed, hashfunc=_crc32, scheme=SCHEME)
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[Hashable, np.ndarray] = {}
        self._parent: dict[Hashable, Hashable] = {}
        self._rank: dict[Hashable, int] = {}

    def signature(self, text: str) -> MinHash | None:
        """The MinHash of `text`'s shingles; None when it is too short to have any."""
        grams = shingles(text)
        if not grams:
            return None
        mh = type(self._template)(
            num_perm=self._template.num_perm,
            hashfunc=_crc32,
            permutations=self._template.permutations,
            scheme=SCHEME,
        )
        mh.update_batch(grams)
        return mh

    def values(self, text: str) -> np.ndarray | None:
        """`text`'s signature as uint32 values (what `prepare`'s tasks store for the merge); None if too short."""
        mh = self.signature(text)
        return None if mh is None else mh.hashvalues.astype(np.uint32)

    def add(self, key: Hashable, text: str, keep_if_duplicate: bool = False) -> tuple[Hashable, float] | None:
        """Index `key`'s text; return (earliest earlier key it nearly duplicates, estimated similarity) or None.

        A near duplicate is indexed only with `keep_if_duplicate` (the report, to see whole clusters); a filter
        drops it, so later documents are compared with what was kept.
        """
        mh = self.signature(text)
        return None if mh is None else self._add(key, mh, keep_if_duplicate)

    def add_values(self, key: Hashable, values: np.ndarray | None) -> tuple[Hashable, float] | None:
        """`add` for a signature computed earlier by `values` (elsewhere: the merge of `prepare`'s tasks)."""
        if values is None:
            return None
        mh = type(self._template)(num_perm=len(values), hashvalues=values, scheme=SCHEME)
        return self._add(key, mh, False)

    def _add(self, key: Hashable, mh: MinHash, keep_if_duplicate: bool) -> tuple[Hashable, float] | None:
        if key in self._rank:
            raise ValueError(f"near-dedup: key {key!r} was already added")
        self._rank[key] = len(self._rank)
        values = mh.hashvalues.astype(np.uint32)
        best: tuple[Hashable, float] | None = None
        for other in self._lsh.query(mh):
            similarity = float(np.mean(self._signatures[other] == values))
            if similarity >= self.threshold and (best is None or self._rank[other] < self._rank[best[0]]):
                best = (other, similarity)
        if best is None or keep_if_duplicate:
            self._lsh.insert(key, mh, check_duplication=False)
            self._signatures[key] = values
        if best is not None:
            self._union(key, best[0])
        return best

    def _find(self, key: Hashable) -> Hashable:
        root = key
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while key != root:
            key, self._parent[key] = self._parent[key], root
        return root

    def _union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb

    def clusters(self) -> list[list[Hashable]]:
        """Groups of near-duplicate keys (two or more), largest first, keys in insertion order."""
        groups: dict[Hashable, list[Hashable]] = defaultdict(list)
        for key in list(self._parent):
            groups[self._find(key)].append(key)
        for root, members in groups.items():
            if root not in members:
                members.append(root)
        ranked = [sorted(g, key=self._rank.__getitem__) for g in groups.values()]
        return sorted(ranked, key=lambda g: (-len(g), self._rank[g[0]]))

    @property
    def indexed(self) -> int:
        """Documents held in the index (signatures kept)."""
        return len(self._signatures)
