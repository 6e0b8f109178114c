"""BART's denoising (Lewis et al., 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
Generation, Translation, and Comprehension"): the encoder reads a corrupted window, the decoder reconstructs the
original window of data.sequenceLength tokens. The corruptions, in this order, each drawn from the sample's own
generator:

- Sentence permutation (`permute_sentences`): each document of the window (the runs between EOS tokens, which
  stay where they are) is cut after every sentence-ending token (text ending in . ! ? and the like) and its
  sentences are shuffled. Every token is kept.
- Text infilling (`infill`): span lengths are drawn from Poisson(λ) until they cover ceil(maskRatio × the
  maskable tokens) (the last one trimmed to the budget, as fairseq does). The spans of length ≥ 1 are laid over the
  maskable tokens (special tokens are never masked) at uniformly random places, never touching one another, and
  each becomes one mask token (a span that crosses a special token keeps it, with a mask on each side); each span
  of length 0 inserts a mask token at a random place, as long as the input stays within sequenceLength.
- Token deletion: deleteRatio of the maskable tokens, among those not masked, are removed.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from pretrain_trainer.objectives.seq2seq import Seq2Seq
from pretrain_trainer.objectives.span_corruption import random_segmentation
from pretrain_trainer.token_roles import require_mask

if TYPE_CHECKING:
    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.spec_objectives import DenoisingSpec
    from pretrain_trainer.token_roles import TokenRoles


def permute_sentences(
    tokens: torch.Tensor, sentence_end: torch.Tensor, doc_end: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """`tokens` with the sentences of each document shuffled. `sentence_end` and `doc_end` are bool per position;
    document ends stay in place, a sentence runs up to and including its sentence-ending token (the window's
    first and last sentences may be cut)."""
    ends = np.flatnonzero(sentence_end.numpy()).tolist()
    docs = np.flatnonzero(doc_end.numpy()).tolist()
    order: list[range] = []  # the output as ranges of input positions
    start, e = 0, 0
    for end in [*docs, len(tokens)]:
        if end > start:
            edges = [start]
            while e < len(ends) and ends[e] < end:
                if ends[e] + 1 < end:
                    edges.append(ends[e] + 1)
                e += 1
            edges.append(end)
            sentences = [range(a, b) for a, b in itertools.pairwise(edges)]
            order += [sentences[i] for i in torch.randperm(len(sentences), generator=generator).tolist()]
        while e < len(ends) and ends[e] <= end:
            e += 1
        if end < len(tokens):
            order.append(range(end, end + 1))
        start = end + 1
    index = np.fromiter((i for r in order for i in r), dtype=np.int64, count=len(tokens))
    return tokens[torch.from_numpy(index)]


def poisson_span_lengths(budget: int, lam: float, generator: torch.Generator) -> torch.Tensor:
    """Span lengths (int64) drawn from Poisson(lam) until they sum to at least `budget`, the last one trimmed so
    that they sum to exactly `budget` (fairseq's DenoisingDataset)."""
    if budget <= 0:
        return torch.zeros(0, dtype=torch.long)
    rate = torch.full((max(budget, 1),), float(lam), dtype=torch.float64)
    lengths = torch.poisson(rate, generator=generator).long()
    while int(lengths.sum()) < budget:
        lengths = torch.cat([lengths, torch.poisson(rate, generator=generator).long()])
    cumulative = torch.cumsum(lengths, 0)
    last = int(torch.searchsorted(cumulative, torch.tensor(budget)))  # first index with cumulative >= budget
    lengths = lengths[: last + 1].clone()
    lengths[last] = budget - (int(cumulative[last - 1]) if last else 0)
    return lengths


def place_spans(num_items: int, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Starts (int64, increasing) of spans of `lengths` (all ≥ 1, in order) over `num_items` items, with at least
    one free item between two spans, uniformly among all such layouts. Spans that do not fit are dropped from the
    end (the returned starts are for the leading spans that fit)."""
    lengths = lengths.long()
    while len(lengths) and int(lengths.sum()) + len(lengths) - 1 > num_items:
        lengths = lengths[:-1]
    spans = len(lengths)
    if not spans:
        return torch.zeros(0, dtype=torch.long)
    free = num_items - int(lengths.sum())
    # Gaps before, between and after the spans: inner gaps ≥ 1, outer ≥ 0 (cut free + 2 items into spans + 1
    # non-empty runs, then take one item off each end).
    gaps = random_segmentation(free + 2, spans + 1, generator)
    gaps[0] -= 1
    gaps[-1] -= 1
    return torch.cumsum(gaps[:-1], 0) + torch.cumsum(lengths, 0) - lengths


def infill(
    tokens: torch.Tensor, maskable: torch.Tensor, mask_id: int, cfg: DenoisingSpec, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted tokens, span lengths laid) of one row: text infilling and token deletion (see the module doc);
    the corrupted row is never longer than `tokens`."""
    width = len(tokens)
    positions = torch.nonzero(maskable).flatten()
    n = len(positions)
    lengths = poisson_span_lengths(math.ceil(n * cfg.mask_ratio), cfg.poisson_lambda, generator)
    spans = lengths[lengths > 0]
    inserts = int((lengths == 0).sum())
    starts = place_spans(n, spans, generator)
    spans = spans[: len(starts)]
    edges = torch.zeros(n + 1, dtype=torch.long)  # +1 where a span starts, -1 just after it ends
    edges[starts] += 1
    edges[starts + spans] -= 1
    covered = torch.cumsum(edges, 0)[:n] > 0
    masked = torch.zeros(width, dtype=torch.bool)
    masked[positions[covered]] = True
    deleted = torch.zeros(width, dtype=torch.bool)
    candidates = positions[~covered]
    deletions = min(round(n * cfg.delete_ratio), len(candidates))
    if deletions:
        deleted[candidates[torch.randperm(len(candidates), generator=generator)[:deletions]]] = True
    previous = torch.cat([masked.new_zeros(1), masked[:-1]])
    run_start = masked & ~previous
    kept = torch.where(run_start, torch.full_like(tokens, mask_id), tokens)[(~masked | run_start) & ~deleted]
    inserts = min(inserts, width - len(kept))
    if inserts <= 0:
        return kept, spans
    total = len(kept) + inserts
    at = torch.zeros(total, dtype=torch.bool)
    at[torch.randperm(total, generator=generator)[:inserts]] = True
    out = torch.full((total,), mask_id, dtype=torch.long)
    out[~at] = kept
    return out, spans


class Denoising(Seq2Seq):
    """objective.type: denoising."""

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        super().__init__(spec, roles)
        self.cfg = spec.objective.denoising
        roles = self.token_roles
        self.mask_id = -1  # never placed: no spans without maskRatio
        if self.cfg.mask_ratio > 0:
            try:
                self.mask_id = require_mask(roles)
            except ValueError as err:
                raise ValueError(
                    f"spec.tokenizer.uri: {spec.tokenizer.uri}: {err} (or set objective.denoising.maskRatio: 0)"
                ) from None
        self.maskable = roles.maskable_table
        ends = roles.sentence_end if roles.sentence_end is not None else np.zeros(roles.vocab_size, dtype=bool)
        self.sentence_end = torch.from_numpy(ends.copy())
        self.eos = roles.eos_id

    @classmethod
    def decoder_length(cls, spec: PretrainJobSpec) -> int:
        return spec.data.sequence_length

    def noise(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input, span lengths laid) of one original row."""
        if self.cfg.permute_sentences:
            doc_end = tokens == self.eos if self.eos is not None else torch.zeros_like(tokens, dtype=torch.bool)
            tokens = permute_sentences(tokens, self.sentence_end[tokens], doc_end, generator)
        if self.cfg.mask_ratio == 0 and self.cfg.delete_ratio == 0:
            return tokens, torch.zeros(0, dtype=torch.long)
        return infill(tokens, self.maskable[tokens], self.mask_id, self.cfg, generator)

    def corrupt_row(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.noise(tokens, generator)[0], tokens
