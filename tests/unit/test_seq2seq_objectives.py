"""Encoder–decoder objectives: T5's span corruption (against a transcription of T5's reference preprocessors) and
BART's denoising (Poisson spans, sentence permutation, deletion), per-sample seeding.

Statistical checks use fixed seeds (deterministic) and 5-sigma bounds of the sampling distribution.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from pretrain_trainer.config import parse_spec
from pretrain_trainer.metrics import model_flops_per_token
from pretrain_trainer.model import model_info
from pretrain_trainer.objectives import IGNORE_INDEX, build_objective
from pretrain_trainer.objectives.denoising import infill, permute_sentences, place_spans, poisson_span_lengths
from pretrain_trainer.objectives.span_corruption import (
    input_and_target_lengths,
    random_spans_noise_mask,
    sentinel_spans,
)
from pretrain_trainer.probe import probe_folder
from pretrain_trainer.spec_objectives import DenoisingSpec
from pretrain_trainer.token_roles import TokenRoles
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SIGMAS = 5.0
VOCAB = 1000
PAD, EOS, MASK, UNK = 0, 1, 2, 3
# T5's layout: <extra_id_0> is the LAST id, the sentinels run downwards; the order is by name, not by id.
SENTINELS = tuple(range(VOCAB - 1, VOCAB - 101, -1))
TEXT_IDS = (4, VOCAB - 100)  # ids a text token can have
PERIOD = 10  # the sentence-ending token of the synthetic vocabulary


def roles(sentinels: int = 100) -> TokenRoles:
    sentence_end = np.zeros(VOCAB, dtype=bool)
    sentence_end[PERIOD] = True
    return TokenRoles(
        vocab_size=VOCAB,
        special_ids=frozenset({PAD, EOS, MASK, UNK}),
        mask_id=MASK,
        pad_id=PAD,
        word_start=np.ones(VOCAB, dtype=bool),
        eos_id=EOS,
        sentinel_ids=SENTINELS[:sentinels],
        sentence_end=sentence_end,
    )


def spec(objective: str, sequence_length: int = 512, seed: int = 3, **settings: object):
    key = {"span-corruption": "spanCorruption", "denoising": "denoising"}[objective]
    return parse_spec(
        {
            "tokenizer": {"uri": "tok/tokenizer.json"},
            "data": {"train": "shards", "sequenceLength": sequence_length},
            "model": {"architecture": "t5" if objective == "span-corruption" else "bart"},
            "objective": {"type": objective, key: settings},
            "training": {"globalBatchSamples": 8, "microBatchSize": 8, "seed": seed},
        }
    )


def text(seed: int, rows: int, length: int) -> torch.Tensor:
    return torch.randint(*TEXT_IDS, (rows, length), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------- T5's reference, transcribed
# From google-research/text-to-text-transfer-transformer, t5/data/preprocessors.py (random_spans_noise_mask,
# random_spans_helper's compute_input_and_target_lengths) in numpy, as Hugging Face's run_t5_mlm_flax.py has it.


def t5_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    length = max(length, 2)
    num_noise = int(np.round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = int(np.round(num_noise / mean_span))
    return num_noise, max(num_spans, 1)


def t5_mask(length: int, noise_density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    num_noise, num_spans = t5_counts(length, noise_density, mean_span)
    num_nonnoise = max(length, 2) - num_noise

    def segmentation(num_items: int, num_segments: int) -> np.ndarray:
        mask_indices = np.arange(num_items - 1) < (num_segments - 1)
        rng.shuffle(mask_indices)
        first_in_segment = np.pad(mask_indices, [[1, 0]])
        _, segment_length = np.unique(np.cumsum(first_in_segment), return_counts=True)
        return segment_length

    interleaved = np.stack([segmentation(num_nonnoise, num_spans), segmentation(num_noise, num_spans)], 1).ravel()
    indicator = np.zeros(max(length, 2), dtype=np.int8)
    indicator[np.cumsum(interleaved)[:-1]] = True
    return (np.cumsum(indicator) % 2 == 1)[:length]


def t5_corrupted_lengths(tokens_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    num_noise = round(tokens_length * noise_density)
    num_nonnoise = tokens_length - num_noise
    num_spans = round(num_noise / mean_span)
    return num_nonnoise + num_spans + 1, num_noise + num_spans + 1


def t5_lengths(inputs_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    def lengths(tokens_length: int) -> tuple[int, int]:
        return t5_corrupted_lengths(tokens_length, noise_density, mean_span)

    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


# ------------------------------------------------------------------------------------------- span corruption


def test_a_512_token_input_reads_568_raw_tokens_and_predicts_114_as_in_t5():
    assert input_and_target_lengths(512, 0.15, 3.0) == (568, 114)


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.1, 1.0), (0.3, 5.0), (0.5, 3.0), (0.15, 2.5)])
def test_raw_and_target_lengths_follow_t5s_compute_input_and_target_lengths(density, mean_span):
    for inputs_length in range(16, 1100, 7):
        if t5_corrupted_lengths(inputs_length, density, mean_span)[0] > inputs_length:
            continue  # T5 starts from a raw window that already overflows (tiny inputs): see the next test
        assert input_and_target_lengths(inputs_length, density, mean_span) == t5_lengths(
            inputs_length, density, mean_span
        ), inputs_length


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.5, 1.0), (0.3, 5.0)])
def test_the_corrupted_window_fills_the_input_and_the_target_even_where_t5s_formula_counts_no_span(density, mean_span):
    """T5's formula counts round(noise / mean) spans, 0 for an 8-token input, where its mask makes one: the
    lengths here count the spans the mask really makes, so the input never overflows sequenceLength."""
    g = torch.Generator().manual_seed(0)
    for inputs_length in [*range(8, 40), 100, 512, 1000]:
        raw, target = input_and_target_lengths(inputs_length, density, mean_span)
        tokens = text(0, 1, raw)[0]
        inputs, targets = sentinel_spans(
            tokens, random_spans_noise_mask(raw, density, mean_span, g), torch.arange(10_000, 10_600), EOS
        )
        assert inputs_length - 1 <= len(inputs) <= inputs_length and len(targets) == target, inputs_length


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.5, 1.0), (0.3, 8.0), (0.01, 3.0)])
def test_the_noise_mask_has_exactly_t5s_noise_tokens_and_spans_starting_with_text(density, mean_span):
    g = torch.Generator().manual_seed(1)
    for length in [2, 3, 5, 8, 13, 31, 100, 257, 568, 1000]:
        mask = random_spans_noise_mask(length, density, mean_span, g)
        num_noise, num_spans = t5_counts(length, density, mean_span)
        if num_spans > length - num_noise:
            continue  # T5's own algorithm is undefined: more spans than text runs can separate
        starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])
        assert mask.dtype == torch.bool and mask.shape == (length,)
        assert int(mask.sum()) == num_noise and int(starts.sum()) == num_spans, (length, mask.int().tolist())
        assert not mask[0] and mask[-1], "T5's runs alternate text first and end in noise"


def test_span_lengths_are_a_uniform_cut_of_the_noise_tokens_like_t5s():
    """85 noise tokens in 28 spans (a 568-token window): every cut into 28 non-empty runs is equally likely, so a
    span has length k with probability C(85-k-1, 26) / C(84, 27); T5's own algorithm gives the same."""
    length, trials = 568, 1500
    g, rng = torch.Generator().manual_seed(2), np.random.default_rng(2)

    def span_lengths(mask: np.ndarray) -> list[int]:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
        return (edges[1::2] - edges[::2]).tolist()

    ours = [k for _ in range(trials) for k in span_lengths(random_spans_noise_mask(length, 0.15, 3.0, g).numpy())]
    ref = [k for _ in range(trials) for k in span_lengths(t5_mask(length, 0.15, 3.0, rng))]
    assert len(ours) == len(ref) == 28 * trials
    assert sum(ours) / len(ours) == pytest.approx(85 / 28)  # exact: the counts are fixed
    for k in (1, 2, 3, 5, 8):
        p = math.comb(85 - k - 1, 26) / math.comb(84, 27)
        sigma = math.sqrt(p * (1 - p) / trials)  # spans of one sample are dependent: count per sample
        for sample in (ours, ref):
            share = sum(1 for x in sample if x == k) / len(sample)
            assert abs(share - p) < SIGMAS * sigma, (k, share, p)


def test_noise_falls_evenly_over_the_window_as_in_t5():
    length, trials = 64, 3000
    g, rng = torch.Generator().manual_seed(4), np.random.default_rng(4)
    ours = torch.stack([random_spans_noise_mask(length, 0.15, 3.0, g) for _ in range(trials)]).double().mean(0)
    ref = np.mean([t5_mask(length, 0.15, 3.0, rng) for _ in range(trials)], axis=0)
    sigma = math.sqrt(0.25 / trials)
    assert np.abs(ours.numpy() - ref).max() < 2 * SIGMAS * sigma
    assert ours[0] == 0 and ours[-1] == 1


def test_sentinels_replace_spans_in_order_and_inputs_plus_targets_rebuild_the_window():
    tokens = text(5, 1, 200)[0]
    noise = random_spans_noise_mask(200, 0.15, 3.0, torch.Generator().manual_seed(5))
    sentinels = torch.tensor(SENTINELS)
    inputs, targets = sentinel_spans(tokens, noise, sentinels, EOS)
    spans = 10  # round(30 / 3)
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert [t for t in inputs.tolist() if t in SENTINELS] == list(SENTINELS[:spans])
    assert [t for t in targets.tolist() if t in SENTINELS] == list(SENTINELS[:spans])
    assert len(inputs) == 200 - 30 + spans + 1 and len(targets) == 30 + spans + 1
    # Put each span back where its sentinel stands.
    pieces: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1].tolist():
        if t in SENTINELS:
            current = t
            pieces[t] = []
        else:
            pieces[current].append(t)
    rebuilt = [x for t in inputs[:-1].tolist() for x in (pieces[t] if t in SENTINELS else [t])]
    assert rebuilt == tokens.tolist()


def test_a_span_corruption_batch_fills_sequence_length_exactly_and_shifts_the_targets():
    objective = build_objective(spec("span-corruption"), roles())
    assert objective.raw_length(objective.spec) == 568
    window = text(6, 4, 568)
    batch = objective.batch(window, 40)
    assert batch["input_ids"].shape == (4, 512) and batch["labels"].shape == (4, 114)
    assert bool((batch["attention_mask"] == 1).all()), "the encoder input is exactly sequenceLength tokens"
    assert bool((batch["labels"] != IGNORE_INDEX).all())
    assert bool((batch["decoder_input_ids"][:, 0] == PAD).all()), "T5 starts decoding from pad"
    assert torch.equal(batch["decoder_input_ids"][:, 1:], batch["labels"][:, :-1])
    assert objective.counts(batch) == {"lm": 4 * 114.0}
    text_ids = batch["input_ids"][(batch["input_ids"] < VOCAB - 100) & (batch["input_ids"] != EOS)]
    assert bool((text_ids >= TEXT_IDS[0]).all()), "no text token became a sentinel"
    per_row = [sum(1 for t in row if t in SENTINELS) for row in batch["input_ids"].tolist()]
    assert per_row == [28] * 4


def test_corruption_follows_the_sample_position_and_the_training_seed_not_the_batch():
    objective = build_objective(spec("span-corruption", 64), roles())
    raw = objective.raw_length(objective.spec)
    window = text(7, 6, raw)
    whole = objective.batch(window, 100)
    for row in range(6):
        alone = objective.batch(window[row : row + 1], 100 + row)
        assert all(torch.equal(alone[k][0], whole[k][row]) for k in whole)
    assert not torch.equal(objective.batch(window, 101)["input_ids"][0], whole["input_ids"][1])
    other_seed = build_objective(spec("span-corruption", 64, seed=4), roles())
    assert not torch.equal(other_seed.batch(window, 100)["input_ids"], whole["input_ids"])


def test_a_tokenizer_with_too_few_sentinels_is_refused_naming_the_field_and_the_fix():
    with pytest.raises(ValueError) as err:
        build_objective(spec("span-corruption"), roles(sentinels=20))
    message = str(err.value)
    assert "spec.tokenizer.uri" in message and "has 20 sentinel tokens" in message and "28" in message
    assert "--objective span-corruption" in message and "noiseDensity" in message
    build_objective(spec("span-corruption"), roles(sentinels=28))  # exactly enough


# ------------------------------------------------------------------------------------------------- denoising


def test_poisson_span_lengths_follow_poisson_3_and_spend_the_budget_exactly():
    g = torch.Generator().manual_seed(8)
    draws: list[int] = []
    for _ in range(400):
        lengths = poisson_span_lengths(150, 3.0, g)
        assert int(lengths.sum()) == 150 and bool((lengths >= 0).all())
        draws += lengths[:-1].tolist()  # the last one is trimmed to the budget
    n = len(draws)
    assert sum(draws) / n == pytest.approx(3.0, abs=SIGMAS * math.sqrt(3.0 / n))
    for k in range(8):
        p = math.exp(-3.0) * 3.0**k / math.factorial(k)
        share = draws.count(k) / n
        assert abs(share - p) < SIGMAS * math.sqrt(p * (1 - p) / n), (k, share, p)


def test_spans_are_laid_apart_uniformly_and_never_touch():
    g = torch.Generator().manual_seed(9)
    lengths = torch.tensor([3, 1, 4, 2])
    first = []
    for _ in range(2000):
        starts = place_spans(20, lengths, g)
        ends = starts + lengths
        assert bool((starts[1:] > ends[:-1]).all()) and int(ends[-1]) <= 20 and int(starts[0]) >= 0
        first.append(int(starts[0]))
    # 10 items stay free around 4 spans: the first gap is 0..7 with P(g) = C(7 - g + 3, 3) / C(11, 4).
    for gap in range(3):
        p = math.comb(10 - gap, 3) / math.comb(11, 4)
        assert abs(first.count(gap) / 2000 - p) < SIGMAS * math.sqrt(p * (1 - p) / 2000)
    assert len(place_spans(5, torch.tensor([3, 3]), g)) == 1, "a span that cannot fit is dropped"


def test_text_infilling_masks_30_percent_in_spans_of_poisson_3_each_one_mask_token():
    cfg = DenoisingSpec()
    g = torch.Generator().manual_seed(10)
    laid: list[int] = []
    for row in text(10, 200, 256):
        out, spans = infill(row, torch.ones(256, dtype=torch.bool), MASK, cfg, g)
        masks = int((out == MASK).sum())
        inserts = masks - len(spans)
        assert inserts >= 0 and len(out) == 256 - int(spans.sum()) + masks
        assert int(spans.sum()) == math.ceil(0.3 * 256), "the whole budget is laid"
        kept = out[out != MASK].tolist()
        assert _is_subsequence(kept, row.tolist())
        laid += spans[:-1].tolist()
    # Laid spans are Poisson(3) draws of length >= 1: mean 3 / (1 - e^-3).
    mean = 3.0 / (1 - math.exp(-3.0))
    var = (3.0 + 9.0) / (1 - math.exp(-3.0)) - mean**2
    assert sum(laid) / len(laid) == pytest.approx(mean, abs=SIGMAS * math.sqrt(var / len(laid)) + 0.05)


def _is_subsequence(short: list[int], long: list[int]) -> bool:
    it = iter(long)
    return all(x in it for x in short)


def test_inserted_masks_never_make_the_input_longer_than_the_window():
    """Poisson(0.3) draws are mostly 0: spans of length 0 insert a mask each, until the input would outgrow the
    window; the rest are dropped."""
    cfg = DenoisingSpec(mask_ratio=0.5, poisson_lambda=0.3)
    g = torch.Generator().manual_seed(14)
    lengths = []
    for row in text(14, 50, 64):
        out, spans = infill(row, torch.ones(64, dtype=torch.bool), MASK, cfg, g)
        assert len(out) <= 64 and int((out == MASK).sum()) >= len(spans)
        lengths.append(len(out))
    assert max(lengths) == 64, "insertions fill the window up to its width"


def test_special_tokens_are_never_masked_and_a_span_across_one_keeps_it():
    cfg = DenoisingSpec(mask_ratio=0.6)
    g = torch.Generator().manual_seed(11)
    for row in text(11, 50, 64):
        row[::8] = EOS
        out, _ = infill(row, row != EOS, MASK, cfg, g)
        assert int((out == EOS).sum()) == 8 and out[0] == EOS


def test_token_deletion_removes_its_share_and_keeps_the_order():
    cfg = DenoisingSpec(mask_ratio=0.0, delete_ratio=0.1)
    g = torch.Generator().manual_seed(12)
    for row in text(12, 20, 100):
        out, _ = infill(row, torch.ones(100, dtype=torch.bool), MASK, cfg, g)
        assert len(out) == 90 and MASK not in out.tolist() and _is_subsequence(out.tolist(), row.tolist())


def _documents(seed: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    row = torch.randint(20, 900, (length,), generator=g)
    row[torch.rand(length, generator=g) < 0.15] = PERIOD
    row[torch.rand(length, generator=g) < 0.03] = EOS
    return row


def test_sentence_permutation_keeps_every_token_and_every_document_boundary():
    g = torch.Generator().manual_seed(13)
    changed = 0
    for seed in range(200):
        row = _documents(seed, 128)
        out = permute_sentences(row, row == PERIOD, row == EOS, g)
        assert sorted(out.tolist()) == sorted(row.tolist())
        assert torch.equal(out == EOS, row == EOS), "documents keep their places"
        for a, b in zip(_doc_spans(row), _doc_spans(out), strict=True):
            assert _is_reordering(_sentences(row[a[0] : a[1]]), out[b[0] : b[1]].tolist())
        changed += not torch.equal(out, row)
    assert changed > 150


def _is_reordering(sentences: list[tuple[int, ...]], doc: list[int]) -> bool:
    """Whether `doc` is the concatenation of `sentences` in some order (each used once)."""
    if not doc:
        return not sentences
    return any(
        tuple(doc[: len(s)]) == s and _is_reordering(sentences[:i] + sentences[i + 1 :], doc[len(s) :])
        for i, s in enumerate(sentences)
    )


def _doc_spans(row: torch.Tensor) -> list[tuple[int, int]]:
    ends = [-1, *torch.nonzero(row == EOS).flatten().tolist(), len(row)]
    return [(a + 1, b) for a, b in itertools.pairwise(ends)]


def _sentences(doc: torch.Tensor) -> list[tuple[int, ...]]:
    out, current = [], []
    for t in doc.tolist():
        current.append(t)
        if t == PERIOD:
            out.append(tuple(current))
            current = []
    return [*out, tuple(current)] if current else out


def test_a_denoising_batch_reconstructs_the_original_window_from_a_shorter_corrupted_input():
    objective = build_objective(spec("denoising", 128), roles())
    window = torch.stack([_documents(s, 128) for s in range(8)])
    batch = objective.batch(window, 0)
    assert torch.equal(batch["labels"], window), "the decoder reconstructs the window as read"
    assert bool((batch["decoder_input_ids"][:, 0] == EOS).all()), "BART starts decoding from eos"
    assert torch.equal(batch["decoder_input_ids"][:, 1:], window[:, :-1])
    lengths = batch["attention_mask"].sum(1)
    assert bool((lengths < 128).all()) and batch["input_ids"].shape == (8, 128)
    for row, n in enumerate(lengths.tolist()):
        assert bool((batch["input_ids"][row, n:] == PAD).all())
        assert int((batch["input_ids"][row, :n] == MASK).sum()) > 0
        assert int((batch["input_ids"][row, :n] == EOS).sum()) == int((window[row] == EOS).sum())
    again = objective.batch(window[3:4], 3)
    assert torch.equal(again["input_ids"][0], batch["input_ids"][3])


def test_denoising_needs_a_mask_token_unless_infilling_is_off():
    no_mask = TokenRoles(
        vocab_size=VOCAB,
        special_ids=frozenset({PAD, EOS}),
        mask_id=None,
        pad_id=PAD,
        word_start=np.ones(VOCAB, dtype=bool),
        eos_id=EOS,
    )
    with pytest.raises(ValueError, match=r"spec\.tokenizer\.uri.*maskRatio: 0"):
        build_objective(spec("denoising", 64), no_mask)
    build_objective(spec("denoising", 64, maskRatio=0.0, deleteRatio=0.1), no_mask)


def test_flops_count_the_encoder_over_the_input_and_the_decoder_over_the_targets_and_probes_read_the_encoder():
    objective = build_objective(spec("span-corruption", 512), roles())
    config = T5Config(vocab_size=VOCAB, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=3, num_decoder_layers=2)
    model = T5ForConditionalGeneration(config)
    info = model_info(model, model)
    encoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.") and "embed" not in n)
    assert 0 < encoder < info.num_params
    le, ld = 512, 114
    matmuls = 6 * (encoder * le + (info.num_params - encoder) * ld)
    attention = 12 * 64 * (3 * le * le + 2 * (ld * ld + ld * le))
    assert objective.flops_per_token(model, info, le) == pytest.approx((matmuls + attention) / le, rel=1e-12)
    # Fewer than an encoder of all the parameters over 512 tokens would do: the decoder sees 114 tokens a sample.
    assert objective.flops_per_token(model, info, le) < model_flops_per_token(info.num_params, 5, 64, le)
    # A downstream probe reads the encoder's features (it takes no decoder inputs).
    ids = torch.randint(4, 500, (2, 7))
    out = objective.probe_target(model)(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    assert out.hidden_states[-1].shape == (2, 7, 64)


def test_an_exported_encoder_decoder_is_probed_through_its_encoder(tmp_path):
    tok_spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=500, objective="span-corruption")
    save_tokenizer(trained(tok_spec), tok_spec, str(tmp_path))
    config = T5Config(vocab_size=500, d_model=16, d_ff=32, d_kv=4, num_heads=4, num_layers=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    result = probe_folder(str(tmp_path), max_train=200)
    assert result.test_examples > 0 and 0.0 <= result.accuracy <= 1.0
