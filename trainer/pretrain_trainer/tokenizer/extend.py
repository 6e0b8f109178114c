"""Extend an existing tokenizer with a domain's words, for continued pretraining (DAPT) on new jargon or a new
language: the checkpoint's tokenizer keeps every token at its id, and the domain's frequent words that it splits
into many pieces are appended as whole tokens. The model's embeddings then grow to match (model.extendVocab),
each new row starting as the mean of the pieces it replaces.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import AddedToken, Tokenizer

from pretrain_trainer.storage import StorageNotFound, StorageOptions, open_store, split_uri

WORD_RE = re.compile(r"\w[\w'’-]*\w|\w", re.UNICODE)


@dataclass(frozen=True)
class Candidate:
    word: str
    count: int
    pieces: int

    @property
    def tokens_saved(self) -> int:
        return self.count * (self.pieces - 1)


def candidates(base: Tokenizer, texts: Iterable[str], min_count: int = 5, min_pieces: int = 3) -> list[Candidate]:
    """Words of the corpus that the base tokenizer splits into at least `min_pieces` tokens, most savings first."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(WORD_RE.findall(text))
    frequent = [w for w, c in counts.items() if c >= min_count and base.token_to_id(w) is None]
    pieces = [len(e.ids) for e in base.encode_batch(frequent, add_special_tokens=False)]
    found = [Candidate(w, counts[w], p) for w, p in zip(frequent, pieces, strict=True) if p >= min_pieces]
    lossless = _decodes_back(base, [c.word for c in found])
    return sorted((c for c in found if c.word in lossless), key=lambda c: (-c.tokens_saved, c.word))


def _decodes_back(base: Tokenizer, words: list[str]) -> set[str]:
    """The words that, added as tokens, decode back to themselves. An added token goes through the tokenizer's
    decoder, and byte-level BPE's decoder reads Latin-1 letters such as "ö" as single bytes, so "Örebro" would
    decode to mojibake (huggingface/tokenizers#1392) and the lossless round trip would break."""
    probe = extend_tokenizer(base, words)
    return {w for w in words if (i := probe.token_to_id(w)) is not None and probe.decode([i]) == w}


def extend_tokenizer(base: Tokenizer, words: Iterable[str]) -> Tokenizer:
    """A copy of `base` with `words` appended as whole-word tokens (ids after every existing one)."""
    extended = Tokenizer.from_str(base.to_str())
    extended.add_tokens([AddedToken(w, single_word=True, normalized=True) for w in words])
    return extended


def write_extended(extended: Tokenizer, base_uri: str, output: str, options: StorageOptions | None = None) -> str:
    """Write tokenizer.json into the folder/URI `output`, with the base's tokenizer_config.json (the special-token
    roles do not change); returns the URI of tokenizer.json."""
    store = open_store(output, options)
    base_folder, _ = split_uri(base_uri)
    # A bare base tokenizer.json has no config: roles then come from the usual token names.
    with contextlib.suppress(StorageNotFound):
        store.write("tokenizer_config.json", open_store(base_folder, options).read("tokenizer_config.json"))
    store.write("tokenizer.json", extended.to_str(pretty=True).encode())
    return store.uri_for("tokenizer.json")
