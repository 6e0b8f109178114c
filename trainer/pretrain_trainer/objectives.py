"""Training objectives: turn the loader's token windows into model inputs and labels.

Causal LM (`causal_lm_batch`): a window of L + 1 tokens gives inputs `window[:, :-1]` and labels `window[:, 1:]`,
already shifted. Labels follow the Hugging Face convention of -100 for "no loss" (never produced here: packed
documents have no padding, and predicting the first token of the next document from EOS is the usual packing
objective).

Masked LM (`mask_tokens`, `masked_lm_batch`): dynamic masking in the RoBERTa style. The mask is drawn afresh each
time a sample is seen, from a caller-owned `torch.Generator`, so that a run is reproducible from the generator's
seed and state. Three ways of choosing the positions to predict:

- "token": every maskable token independently with probability p (BERT, RoBERTa).
- "whole-word": every maskable word independently with probability p; all sub-tokens of a chosen word are chosen
  together, so the expected share of chosen tokens is exactly p (BERT whole-word masking).
- "span": SpanBERT. Spans of whole words, with lengths (in words) from a geometric distribution clipped to
  `max_span_length`, start at random unchosen words until a per-row budget of p of the maskable tokens is spent.

Of the chosen positions, `mask_fraction` become the mask token, `random_fraction` a random non-special token and
the rest keep their token; the labels hold the original id at chosen positions and -100 elsewhere. Special tokens
(EOS, PAD, CLS, SEP, MASK, ...) are never chosen.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np
import torch
from tokenizers import Tokenizer, models

from pretrain_trainer.config import MASKING_STRATEGIES, MlmSpec, field_problems
from pretrain_trainer.tokenizer.load import MASK_TOKEN_CANDIDATES, PAD_TOKEN_CANDIDATES, first_present

IGNORE_INDEX = -100
"""Label of positions that carry no loss (Hugging Face and `torch.nn.functional.cross_entropy` default)."""

STRATEGIES = MASKING_STRATEGIES
_WORD_MARKERS = ("Ġ", "▁")  # byte-level BPE's space byte, SentencePiece/Metaspace's space marker


# --------------------------------------------------------------------------------------------------- token roles


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

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size: must be positive, got {self.vocab_size}")
        specials = set(self.special_ids)
        for name in ("mask_id", "pad_id"):
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
        for name in ("word_start", "word_end"):
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
    def from_tokenizer(cls, tok: Tokenizer, mask_token: str | None = None) -> TokenRoles:
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


# --------------------------------------------------------------------------------------------------- causal LM


def causal_lm_batch(window: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
    """Inputs and labels from windows of L + 1 tokens: `input_ids = window[:, :-1]`, `labels = window[:, 1:]`.

    The labels are ALREADY SHIFTED: `labels[:, t]` is the token that follows `input_ids[:, t]`. Compute the loss
    as `cross_entropy(logits.flatten(0, 1), labels.flatten())` directly; do not pass `labels` to a Hugging Face
    `*ForCausalLM` model, whose built-in loss shifts again and would train the model to predict two tokens ahead.
    """
    window = torch.as_tensor(window)
    if window.dim() != 2 or window.shape[1] < 2:
        raise ValueError(f"window: expected shape [batch, L + 1] with L >= 1, got {tuple(window.shape)}")
    window = window.long()
    return {"input_ids": window[:, :-1].contiguous(), "labels": window[:, 1:].contiguous()}


# --------------------------------------------------------------------------------------------------- masked LM


_MLM = MlmSpec()
# MaskingConfig calls the spec's `masking` by what it selects with: its strategy.
_SPEC_FIELD = {"strategy": "masking"}
_FIELD_NAME = {spec: name for name, spec in _SPEC_FIELD.items()}


@dataclass(frozen=True)
class MaskingConfig:
    """How masked-LM targets are chosen and corrupted: the job's `MlmSpec` (`from_spec`), whose defaults, docs
    and bounds it takes, in the names the masking code uses."""

    probability: float = _MLM.probability
    strategy: str = _MLM.masking
    mask_fraction: float = _MLM.mask_fraction
    random_fraction: float = _MLM.random_fraction
    mean_span_length: float = _MLM.mean_span_length
    """span only: mean span length in words, of the distribution after clipping."""
    max_span_length: int = _MLM.max_span_length

    @classmethod
    def from_spec(cls, spec: MlmSpec) -> MaskingConfig:
        return cls(**{f.name: getattr(spec, _SPEC_FIELD.get(f.name, f.name)) for f in fields(cls)})

    def __post_init__(self) -> None:
        if isinstance(self.max_span_length, bool) or not isinstance(self.max_span_length, int):
            raise ValueError(f"max_span_length: must be an integer, got {self.max_span_length!r}")
        spec = MlmSpec(**{_SPEC_FIELD.get(f.name, f.name): getattr(self, f.name) for f in fields(self)})
        problems = [f"{_FIELD_NAME.get(name, name)}: {message}" for name, message in field_problems(spec)]
        problems += spec.cross_field_problems(lambda name: _FIELD_NAME.get(name, name))
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def keep_fraction(self) -> float:
        return max(0.0, 1.0 - self.mask_fraction - self.random_fraction)


def geometric_success_probability(mean: float, max_length: int) -> float:
    """The q for which a Geometric(q) length on {1, 2, ...} clipped to `max_length` has mean `mean`.

    The clipped mean is sum_{k<max} (1-q)^k = (1 - (1-q)^max) / q, which falls from `max_length` (q → 0) to 1
    (q = 1); solved by bisection.
    """
    if mean <= 1.0:
        return 1.0
    if mean >= max_length:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(100):
        q = (lo + hi) / 2
        if (1.0 - (1.0 - q) ** max_length) / q > mean:
            lo = q
        else:
            hi = q
    return (lo + hi) / 2


def sample_span_lengths(shape: tuple[int, ...], cfg: MaskingConfig, generator: torch.Generator) -> torch.Tensor:
    """int64 span lengths in words: Geometric on {1, 2, ...}, clipped to max_span_length, mean mean_span_length."""
    q = geometric_success_probability(cfg.mean_span_length, cfg.max_span_length)
    uniform = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    if q >= 1.0:
        return torch.ones(shape, dtype=torch.long, device=uniform.device)
    if q <= 0.0:
        return torch.full(shape, cfg.max_span_length, dtype=torch.long, device=uniform.device)
    # Inverse CDF: P(length > k) = (1-q)^k.
    lengths = 1 + torch.floor(torch.log1p(-uniform) / math.log1p(-q))
    return lengths.clamp_(1, cfg.max_span_length).long()


def word_starts(input_ids: torch.Tensor, roles: TokenRoles) -> torch.Tensor:
    """bool [B, L]: the positions that begin a word (see `TokenRoles`). Words never cross rows."""
    ids = input_ids.long()
    starts = roles.word_start_table.to(ids.device)[ids]
    starts[:, 0] = True
    starts[:, 1:] |= roles.word_end_table.to(ids.device)[ids[:, :-1]]
    return starts


def select_targets(
    input_ids: torch.Tensor, roles: TokenRoles, cfg: MaskingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose the positions to predict: `(selected, unit)`, both [B, L].

    `selected` is bool. `unit` (int64) numbers the groups whose replacement is decided together: for "token" and
    "whole-word" every chosen position is its own unit (the 80/10/10 decision is made per token, as in BERT); for
    "span" every span is one unit (the whole span is masked, randomised or kept, as in SpanBERT). -1 where not
    selected.
    """
    ids = _check_ids(input_ids, roles)
    maskable = roles.maskable_table.to(ids.device)[ids]
    if cfg.strategy == "token":
        draw = torch.rand(ids.shape, generator=generator, device=generator.device).to(ids.device)
        selected = (draw < cfg.probability) & maskable
        unit = _per_position_units(selected)
    elif cfg.strategy == "whole-word":
        starts = word_starts(ids, roles).flatten()
        word = torch.cumsum(starts, 0) - 1  # global word index; every row begins a word
        num_words = int(word[-1]) + 1 if word.numel() else 0
        draw = torch.rand(num_words, generator=generator, device=generator.device).to(ids.device)
        # A special token is a word of its own, so a word is maskable iff its tokens are.
        selected = (draw < cfg.probability)[word].view(ids.shape) & maskable
        unit = _per_position_units(selected)
    else:
        selected, unit = _select_spans(ids, maskable, roles, cfg, generator)
    return selected, unit


def _check_ids(input_ids: torch.Tensor | np.ndarray, roles: TokenRoles) -> torch.Tensor:
    ids = torch.as_tensor(input_ids)
    if ids.dim() != 2:
        raise ValueError(f"input_ids: expected shape [batch, length], got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"input_ids: expected integer token ids, got {ids.dtype}")
    ids = ids.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= roles.vocab_size):
        raise ValueError(
            f"input_ids: ids must be in [0, vocab_size={roles.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]"
        )
    return ids


def _per_position_units(selected: torch.Tensor) -> torch.Tensor:
    unit = torch.arange(selected.numel(), device=selected.device).view(selected.shape)
    return torch.where(selected, unit, torch.full_like(unit, -1))


def _select_spans(
    ids: torch.Tensor, maskable: torch.Tensor, roles: TokenRoles, cfg: MaskingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT span selection, row by row.

    Each row gets a budget of p × (its maskable tokens), rounded stochastically so its expectation is exact. Span
    starts are visited in a random order over the maskable word starts. A span covers its sampled number of whole
    words; where that many free words do not follow the start (a special token, an already chosen word or the end
    of the row comes first), the length is kept and the next start is tried, so the realised lengths follow the
    sampled distribution. Spans therefore never cover special tokens; adjacent spans may touch. A span that
    would overrun the rest of the budget ends the row: it is taken whole with probability remaining / its length
    in tokens, else dropped, which keeps the expected share of chosen tokens at exactly p. Only when the starts
    run out before the budget is spent (very high p) does a second pass allow spans cut short.
    """
    batch, length = ids.shape
    device = generator.device
    starts = word_starts(ids, roles) & maskable
    # Random candidate order: sort random keys, with non-candidates pushed to the end.
    keys = torch.rand((batch, length), generator=generator, device=device).to(ids.device)
    keys = torch.where(starts, keys, torch.full_like(keys, 2.0))
    order = torch.argsort(keys, dim=1).cpu().numpy()
    span_lengths = sample_span_lengths((batch, length), cfg, generator).cpu().numpy()
    rounding = torch.rand((batch, 2), generator=generator, device=device, dtype=torch.float64).cpu().numpy()

    all_starts = word_starts(ids, roles).cpu().numpy()
    maskable_np = maskable.cpu().numpy()
    num_candidates = starts.sum(dim=1).tolist()
    budgets = np.floor(cfg.probability * maskable_np.sum(axis=1) + rounding[:, 0]).astype(np.int64).tolist()
    unit = np.full((batch, length), -1, dtype=np.int64)
    next_unit = 0
    for row in range(batch):
        word_pos = np.flatnonzero(all_starts[row])  # start position of every word in the row
        len_list = np.diff(np.append(word_pos, length)).tolist()
        taken = (~maskable_np[row, word_pos]).tolist()  # special tokens are words of their own, never taken
        first_words = (np.cumsum(all_starts[row]) - 1)[order[row, : num_candidates[row]]].tolist()
        lengths = span_lengths[row].tolist()
        pos_list = word_pos.tolist()
        num_words = len(pos_list)
        remaining = budgets[row]
        drawn = 0
        pending = 0  # the sampled length still looking for a place (0: none)
        for strict in (True, False):
            for first in first_words:
                if remaining <= 0:
                    break
                if taken[first]:
                    continue
                if not pending:
                    pending = lengths[drawn % length]
                    drawn += 1
                words: list[int] = []
                tokens = 0
                w = first
                while len(words) < pending and w < num_words and not taken[w]:
                    words.append(w)
                    tokens += len_list[w]
                    w += 1
                if strict and len(words) < pending:
                    continue  # does not fit here: try the next start with the same length
                pending = 0
                if tokens > remaining:
                    # The row's last span: taken whole with probability remaining / its length, else dropped.
                    keep = rounding[row, 1] < remaining / tokens
                    remaining = 0
                    if not keep:
                        break
                else:
                    remaining -= tokens
                for w in words:
                    taken[w] = True
                    unit[row, pos_list[w] : pos_list[w] + len_list[w]] = next_unit
                next_unit += 1
            if remaining <= 0:
                break
    unit_t = torch.from_numpy(unit).to(ids.device)
    return unit_t >= 0, unit_t


def corrupt(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    unit: torch.Tensor,
    roles: TokenRoles,
    cfg: MaskingConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the mask/random/keep replacement to the selected positions, one decision per unit."""
    ids = input_ids.long()
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    device = generator.device
    num_units = int(unit.max()) + 1 if unit.numel() else 0
    decision = torch.rand(num_units, generator=generator, device=device).to(ids.device)
    per_position = decision[unit.clamp(min=0)] if num_units else torch.ones(ids.shape, device=ids.device)
    use_mask = selected & (per_position < cfg.mask_fraction)
    use_random = selected & ~use_mask & (per_position < cfg.mask_fraction + cfg.random_fraction)
    pool = roles.random_pool.to(ids.device)
    random_ids = pool[torch.randint(len(pool), ids.shape, generator=generator, device=device).to(ids.device)]
    masked = ids.clone()
    if cfg.mask_fraction > 0:
        masked[use_mask] = require_mask(roles)
    masked = torch.where(use_random, random_ids, masked)
    return masked, labels


def mask_tokens(
    input_ids: torch.Tensor | np.ndarray, roles: TokenRoles, cfg: MaskingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic masking: `(masked_inputs, labels)` for a batch of token ids [B, L].

    `labels` holds the original id at the chosen positions and -100 elsewhere. Call it afresh every time a sample
    is seen; the result depends only on the ids and the generator's state, so a seeded generator reproduces it.
    Replacement decisions are per token for "token" and "whole-word", per span for "span" (`select_targets`).
    Raises ValueError when `mask_fraction > 0` and the vocabulary has no mask token.
    """
    if cfg.mask_fraction > 0:
        require_mask(roles)
    ids = _check_ids(input_ids, roles)
    if ids.numel() == 0:
        return ids.clone(), torch.full_like(ids, IGNORE_INDEX)
    selected, unit = select_targets(ids, roles, cfg, generator)
    return corrupt(ids, selected, unit, roles, cfg, generator)


def masked_lm_batch(
    window: torch.Tensor | np.ndarray, roles: TokenRoles, cfg: MaskingConfig, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Model inputs from windows of L tokens: input_ids (masked), labels (-100 where not chosen), attention_mask.

    The attention mask is all ones: the loader packs documents back to back, with no padding. Raises ValueError
    (via `require_mask`) when the configuration masks and the tokenizer has no mask token.
    """
    input_ids, labels = mask_tokens(window, roles, cfg, generator)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(input_ids)}
