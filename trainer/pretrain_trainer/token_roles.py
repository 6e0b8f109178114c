"""What the objectives need to know about a vocabulary: its special ids (never masked), the mask and pad ids, and
which tokens start or end a word (for whole-word and span masking). The special tokens themselves are named in
`tokenizer.load`; this module reads their ids and the word boundaries from a tokenizer."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from tokenizers import Tokenizer, models

from pretrain_trainer.tokenizer.load import (
    CLS_TOKEN_CANDIDATES,
    EOS_CANDIDATES,
    MASK_TOKEN_CANDIDATES,
    PAD_TOKEN_CANDIDATES,
    SENTINEL_FORMAT,
    first_present,
)

_WORD_MARKERS = ("Ġ", "▁")  # byte-level BPE's space byte, SentencePiece/Metaspace's space marker
_SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？")


@dataclass(frozen=True, eq=False)
class TokenRoles:
    """What the objectives need to know about a vocabulary.

    `word_start[i]` is True when token id i begins a new word. `word_end[i]` is True when a token always ends its
    word, whatever follows (special tokens, punctuation and whitespace/newline tokens); by default it is True for
    the special tokens only. In a sequence, position j starts a word when `word_start[ids[j]]`, when j is the first
    position of the row, or when `word_end[ids[j - 1]]`. Special tokens are always words of their own.

    Compared by identity (`eq=False`): the arrays make field-wise equality ambiguous.
    """

    vocab_size: int
    special_ids: frozenset[int]
    """Never chosen for masking; the mask and pad ids are added to this set when they are not in it."""
    mask_id: int | None
    pad_id: int | None
    word_start: np.ndarray
    word_end: np.ndarray | None = field(default=None)
    eos_id: int | None = None
    """The end-of-document token (the packed stream's separator); special."""
    sentinel_ids: tuple[int, ...] = ()
    """Ids of <extra_id_0>, <extra_id_1>, ... (T5's span-corruption sentinels), in that order; special."""
    sentence_end: np.ndarray | None = field(default=None)
    """bool [vocab_size]: tokens that end a sentence (text ending in . ! ? and the like); None: none known."""
    cls_id: int | None = None
    """The token a segment pair starts with ([CLS], <s>); special."""

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size: must be positive, got {self.vocab_size}")
        specials = set(self.special_ids) | set(self.sentinel_ids)
        for name in ("mask_id", "pad_id", "eos_id", "cls_id"):
            value = getattr(self, name)
            if value is not None:
                if not 0 <= value < self.vocab_size:
                    raise ValueError(f"{name}: {value} is not in [0, vocab_size={self.vocab_size})")
                specials.add(value)
        bad = [i for i in specials if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"special_ids: {sorted(bad)[:5]} not in [0, vocab_size={self.vocab_size})")
        if len(specials) >= self.vocab_size:
            raise ValueError("special_ids: every id of the vocabulary is special; nothing could be masked")
        object.__setattr__(self, "special_ids", frozenset(specials))
        for name in ("word_start", "word_end", "sentence_end"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=bool)
            if array.shape != (self.vocab_size,):
                raise ValueError(f"{name}: shape {array.shape} does not match vocab_size={self.vocab_size}")
            object.__setattr__(self, name, array)
        special_index = np.fromiter(sorted(specials), dtype=np.int64, count=len(specials))
        word_start = self.word_start.copy()
        word_start[special_index] = True
        word_end = np.zeros(self.vocab_size, dtype=bool) if self.word_end is None else self.word_end.copy()
        word_end[special_index] = True
        object.__setattr__(self, "word_start", word_start)
        object.__setattr__(self, "word_end", word_end)

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer, mask_token: str | None = None, eos_id: int | None = None) -> TokenRoles:
        """Read the roles from a Hugging Face tokenizer.

        Special tokens are the added tokens marked `special=True`. The mask token is `mask_token` when given (it
        must exist), else "[MASK]" or "<mask>" when present, else None; the pad token is the first of "[PAD]",
        "<pad>", "<|pad|>" present.

        Word starts, by the vocabulary entry's spelling:

        - WordPiece (or any model with a `continuing_subword_prefix`): a token starts a word unless it begins
          with the prefix ("##").
        - Byte-level BPE and Metaspace/SentencePiece (Unigram): a token starts a word when it begins with 'Ġ' or
          '▁'. (A vocabulary with neither marker gives no word information: then every token is a word start.)
        - Always: special tokens, and tokens whose text, after the marker, consists only of punctuation (Unicode
          category P*) and whitespace (newlines, tabs, runs of spaces), are words of their own: they start a word
          and the next token starts another, so a word never swallows them ("fox", "'", "s" are three words,
          as WordPiece's pre-tokenizer also has them). A lone marker ('▁', 'Ġ') starts a word but does not end it.
        """
        vocab = tok.get_vocab(with_added_tokens=True)
        vocab_size = max(tok.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1)
        special_ids = {i for i, added in tok.get_added_tokens_decoder().items() if added.special}

        if mask_token is not None:
            if mask_token not in vocab:
                raise ValueError(f"mask_token: {mask_token!r} is not in the tokenizer's vocabulary")
            mask_id: int | None = vocab[mask_token]
        else:
            mask_id = first_present(tok, MASK_TOKEN_CANDIDATES)
        pad_id = first_present(tok, PAD_TOKEN_CANDIDATES)

        model = tok.model
        prefix = getattr(model, "continuing_subword_prefix", None)
        if isinstance(model, models.WordPiece) and not prefix:
            prefix = "##"
        byte_level = _is_byte_level(tok)
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()} if byte_level else {}

        word_start = np.zeros(vocab_size, dtype=bool)
        word_end = np.zeros(vocab_size, dtype=bool)
        sentence_end = np.zeros(vocab_size, dtype=bool)
        any_marker = False
        for token, index in vocab.items():
            if prefix:
                continuation = token.startswith(prefix) and token != prefix
                core = token[len(prefix) :] if continuation else token
                word_start[index] = not continuation
            else:
                marked = token.startswith(_WORD_MARKERS)
                any_marker |= marked
                core = token[1:] if marked else token
                word_start[index] = marked
            text = _byte_level_text(core, byte_decoder) if byte_level else core
            sentence_end[index] = index not in special_ids and text.rstrip().endswith(_SENTENCE_ENDS)
            if text and all(c.isspace() or unicodedata.category(c).startswith("P") for c in text):
                word_start[index] = word_end[index] = True
        if not prefix and not any_marker:
            word_start[:] = True
        return cls(
            vocab_size=vocab_size,
            special_ids=frozenset(special_ids),
            mask_id=mask_id,
            pad_id=pad_id,
            word_start=word_start,
            word_end=word_end,
            eos_id=eos_id if eos_id is not None else first_present(tok, EOS_CANDIDATES),
            sentinel_ids=tuple(_sentinels(vocab)),
            sentence_end=sentence_end,
            cls_id=first_present(tok, CLS_TOKEN_CANDIDATES),
        )

    # Lookup tables as tensors, built once per TokenRoles (cached_property writes the instance __dict__ directly,
    # which a frozen dataclass allows).
    @cached_property
    def maskable_table(self) -> torch.Tensor:
        """bool [vocab_size]: True for ids that may be chosen (everything but special tokens)."""
        table = torch.ones(self.vocab_size, dtype=torch.bool)
        table[torch.tensor(sorted(self.special_ids), dtype=torch.long)] = False
        return table

    @cached_property
    def word_start_table(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.word_start, dtype=bool).copy())

    @cached_property
    def word_end_table(self) -> torch.Tensor:
        assert self.word_end is not None
        return torch.from_numpy(np.asarray(self.word_end, dtype=bool).copy())

    @cached_property
    def random_pool(self) -> torch.Tensor:
        """int64: the non-special ids, from which random replacements are drawn."""
        return torch.nonzero(self.maskable_table).flatten()


def _sentinels(vocab: dict[str, int]) -> list[int]:
    out: list[int] = []
    while (token_id := vocab.get(SENTINEL_FORMAT.format(len(out)))) is not None:
        out.append(token_id)
    return out


def _is_byte_level(tok: Tokenizer) -> bool:
    for component in (tok.pre_tokenizer, tok.decoder):
        if component is not None and b'"ByteLevel"' in component.__getstate__():
            return True
    return False


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table, as used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_level_text(token: str, byte_decoder: dict[str, int]) -> str:
    if any(c not in byte_decoder for c in token):
        return token
    return bytes(byte_decoder[c] for c in token).decode("utf-8", errors="replace")


def require_mask(roles: TokenRoles) -> int:
    """The mask id, or a ValueError saying that this tokenizer cannot do masked LM."""
    if roles.mask_id is None:
        raise ValueError(
            "masked LM needs a mask token, but the tokenizer has none (looked for "
            f"{' or '.join(MASK_TOKEN_CANDIDATES)}); train the tokenizer with objective=mlm, pass "
            "mask_token=... naming the tokenizer's mask token, or use the causal LM objective"
        )
    return roles.mask_id
