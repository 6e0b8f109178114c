"""T5's span corruption (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"), with the semantics of its reference preprocessors (`random_spans_noise_mask`,
`noise_span_to_unique_sentinel`, `compute_input_and_target_lengths`):

- A raw window of T tokens has round(T · noiseDensity) noise tokens (at least 1, at most T - 1) in
  max(1, round(noise / meanNoiseSpanLength)) spans. The noise tokens and the non-noise tokens are each cut into
  that many non-empty runs, uniformly among all such cuts; the runs alternate, non-noise first.
- The encoder input is the non-noise tokens with each noise span replaced by one sentinel (<extra_id_0>,
  <extra_id_1>, ... in order), then EOS; the target is each sentinel followed by the span it replaced, then EOS.
- T is the longest raw window whose encoder input fits data.sequenceLength (`input_and_target_lengths`), so
  the loader reads T tokens per sample and the encoder sees exactly sequenceLength tokens (one pad at the end
  where rounding makes no T fit exactly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pretrain_trainer.objectives.seq2seq import Seq2Seq
from pretrain_trainer.tokenizer.load import SENTINEL_FORMAT

if TYPE_CHECKING:
    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.token_roles import TokenRoles


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int, int]:
    """(noise tokens, non-noise tokens, noise spans) of a raw window of `length` tokens, as T5 counts them."""
    length = max(length, 2)
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_nonnoise = length - num_noise
    num_spans = min(max(round(num_noise / mean_noise_span_length), 1), num_nonnoise)
    return num_noise, num_nonnoise, num_spans


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(encoder input, decoder target) lengths of a raw window of `length` tokens, EOS included in both."""
    noise, nonnoise, spans = noise_counts(length, noise_density, mean_noise_span_length)
    return nonnoise + spans + 1, noise + spans + 1


def input_and_target_lengths(
    inputs_length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """(raw window length, target length) for an encoder input of `inputs_length` tokens: T5's
    `compute_input_and_target_lengths` (the longest raw window whose input fits; at density 0.5 one token less,
    so that the targets are no longer than the inputs). Where T5's formula counts no span at all (inputs of a
    few tokens) the mask still makes one, and the count here follows the mask."""
    tokens = inputs_length
    while tokens > 2 and corrupted_lengths(tokens, noise_density, mean_noise_span_length)[0] > inputs_length:
        tokens -= 1  # tiny inputs only: one noise token in its own span, plus EOS, outgrow the window
    while corrupted_lengths(tokens + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens += 1
    _, targets = corrupted_lengths(tokens, noise_density, mean_noise_span_length)
    if noise_density == 0.5 and targets > inputs_length:
        tokens -= 1
        targets -= 1
    return tokens, targets


def random_segmentation(num_items: int, num_segments: int, generator: torch.Generator) -> torch.Tensor:
    """Lengths (int64, all ≥ 1, summing to num_items) of `num_segments` runs cutting `num_items` items, every
    such cut equally likely: the num_segments - 1 cut points are a uniform sample of the num_items - 1 gaps."""
    if not 1 <= num_segments <= num_items:
        raise ValueError(f"cannot cut {num_items} items into {num_segments} non-empty runs")
    cuts = torch.randperm(num_items - 1, generator=generator)[: num_segments - 1]
    first_in_segment = torch.zeros(num_items, dtype=torch.long)
    first_in_segment[cuts + 1] = 1
    return torch.bincount(torch.cumsum(first_in_segment, 0), minlength=num_segments)


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, generator: torch.Generator
) -> torch.Tensor:
    """bool [length]: which tokens of a raw window are noise (T5's `random_spans_noise_mask`)."""
    num_noise, num_nonnoise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    noise_lengths = random_segmentation(num_noise, num_spans, generator)
    nonnoise_lengths = random_segmentation(num_nonnoise, num_spans, generator)
    interleaved = torch.stack([nonnoise_lengths, noise_lengths], dim=1).flatten()
    span_starts = torch.cumsum(interleaved, 0)[:-1]
    indicator = torch.zeros(max(length, 2), dtype=torch.long)
    indicator[span_starts] = 1
    return (torch.cumsum(indicator, 0) % 2 == 1)[:length]


def sentinel_spans(
    tokens: torch.Tensor, noise: torch.Tensor, sentinels: torch.Tensor, eos: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of one row: the noise spans of `tokens` replaced by sentinels[0], sentinels[1], ... in
    the inputs; the targets are each span's sentinel followed by the span. EOS ends both."""
    previous = torch.cat([noise.new_zeros(1), noise[:-1]])
    span_start = noise & ~previous
    span_index = torch.cumsum(span_start.long(), 0) - 1
    num_spans = int(span_start.sum())
    if num_spans > len(sentinels):
        raise ValueError(f"{num_spans} noise spans but only {len(sentinels)} sentinel tokens")
    with_sentinels = torch.where(span_start, sentinels[span_index.clamp(min=0)], tokens)
    end = torch.tensor([eos], dtype=torch.long)
    inputs = torch.cat([with_sentinels[~noise | span_start], end])
    # Targets: the same construction with the roles swapped (every noise token kept, a sentinel before each span).
    target_tokens = torch.stack([sentinels[span_index.clamp(min=0)], tokens], dim=1)
    keep = torch.stack([span_start, noise], dim=1)
    targets = torch.cat([target_tokens[keep], end])
    return inputs, targets


def require_sentinels(roles: TokenRoles, needed: int, tokenizer_uri: str, where: str) -> torch.Tensor:
    """The ids of <extra_id_0> .. <extra_id_{needed-1}>, or a ValueError naming the tokenizer and the fix."""
    have = len(roles.sentinel_ids)
    if have < needed:
        raise ValueError(
            f"spec.tokenizer.uri: {tokenizer_uri} has {have} sentinel tokens ({SENTINEL_FORMAT.format(0)}, ...), "
            f"but span corruption with {where} makes up to {needed} noise spans per sample; train the tokenizer "
            f"with `pretrainjob tokenizer train --objective span-corruption --sentinels {max(needed, 100)}`, or "
            "lower data.sequenceLength or objective.spanCorruption.noiseDensity"
        )
    return torch.tensor(roles.sentinel_ids[:needed], dtype=torch.long)


class SpanCorruption(Seq2Seq):
    """objective.type: span-corruption."""

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        super().__init__(spec, roles)
        cfg = spec.objective.span_corruption
        self.density, self.mean_span = cfg.noise_density, cfg.mean_noise_span_length
        self.raw = self.raw_length(spec)
        _, _, spans = noise_counts(self.raw, self.density, self.mean_span)
        where = (
            f"data.sequenceLength {spec.data.sequence_length} (raw windows of {self.raw} tokens) and "
            f"objective.spanCorruption.noiseDensity {self.density:g}, meanNoiseSpanLength {self.mean_span:g}"
        )
        self.sentinels = require_sentinels(self.token_roles, spans, spec.tokenizer.uri, where)
        if self.token_roles.eos_id is None:
            raise ValueError(f"spec.tokenizer.uri: {spec.tokenizer.uri} has no end-of-sequence token for T5's EOS")
        self.eos = self.token_roles.eos_id

    @classmethod
    def raw_length(cls, spec: PretrainJobSpec) -> int:
        cfg = spec.objective.span_corruption
        return input_and_target_lengths(spec.data.sequence_length, cfg.noise_density, cfg.mean_noise_span_length)[0]

    @classmethod
    def decoder_length(cls, spec: PretrainJobSpec) -> int:
        cfg = spec.objective.span_corruption
        return input_and_target_lengths(spec.data.sequence_length, cfg.noise_density, cfg.mean_noise_span_length)[1]

    def corrupt_row(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = random_spans_noise_mask(len(tokens), self.density, self.mean_span, generator)
        return sentinel_spans(tokens, noise, self.sentinels, self.eos)
