"""Token-level batch building shared by the objectives: causal-LM shifting and masked-LM target selection.

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
from dataclasses import dataclass, fields

import numpy as np
import torch

from pretrain_trainer.config import field_problems
from pretrain_trainer.spec_objectives import MlmSpec
from pretrain_trainer.token_roles import TokenRoles, require_mask

IGNORE_INDEX = -100
"""Label of positions that carry no loss (Hugging Face and `torch.nn.functional.cross_entropy` default)."""


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


def sample_generator(training_seed: int, position: int, stream: int = 0) -> torch.Generator:
    """The generator of the sample at global `position`: masks follow the sample, not the rank or run.

    `stream` separates independent draws for the same sample (0: its mask; ELECTRA's generator sampling uses 1).
    torch's CPU generator keeps only the low 32 bits of a seed, so `seed * 2**40 + position` (an old formula)
    gave every training seed the same masks; SeedSequence mixes the numbers into the 32 bits that count.
    """
    entropy = [training_seed, position] if stream == 0 else [training_seed, position, stream]
    mixed = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0]
    return torch.Generator().manual_seed(int(mixed))


def masked_rows(
    window: torch.Tensor, first_position: int, training_seed: int, roles: TokenRoles, cfg: MaskingConfig
) -> dict[str, torch.Tensor]:
    """`masked_lm_batch` of rows at global positions first_position, first_position + 1, ..., each masked by its
    own `sample_generator`, so a row's mask does not depend on the batch it is read in."""
    parts = [
        masked_lm_batch(window[row : row + 1], roles, cfg, sample_generator(training_seed, first_position + row))
        for row in range(window.shape[0])
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
