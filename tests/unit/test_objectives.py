"""Training objectives: causal-LM shifting and masked-LM target selection.

Statistical checks use fixed seeds (deterministic) and 5-sigma bounds computed from the sampling distribution
of the quantity measured, over samples of tens of thousands of tokens.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.objectives import (
    IGNORE_INDEX,
    MaskingConfig,
    causal_lm_batch,
    geometric_success_probability,
    mask_tokens,
    masked_lm_batch,
    sample_span_lengths,
    select_targets,
)
from pretrain_trainer.spec_objectives import MlmSpec
from pretrain_trainer.token_roles import TokenRoles, require_mask
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, train_tokenizer

SIGMAS = 5.0
STRATEGIES = ("token", "whole-word", "span")

# A synthetic vocabulary: ids 0-3 special (pad, eos, mask, cls), every other id a word start when even and a
# continuation when odd, so words are one or more tokens long.
VOCAB = 1000
PAD, EOS, MASK, CLS = 0, 1, 2, 3


def synthetic_roles() -> TokenRoles:
    word_start = np.arange(VOCAB) % 2 == 0
    return TokenRoles(
        vocab_size=VOCAB, special_ids=frozenset({PAD, EOS, CLS}), mask_id=MASK, pad_id=PAD, word_start=word_start
    )


def synthetic_batch(seed: int, rows: int = 64, length: int = 512, special_share: float = 0.02) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (rows, length), generator=g)
    specials = torch.rand((rows, length), generator=g) < special_share
    return torch.where(specials, torch.randint(0, 4, (rows, length), generator=g), ids)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@cache
def real_tokenizer(model: str) -> Tokenizer:
    texts = [d["text"] for d in load_bundled_documents()]
    return train_tokenizer(texts, TokenizerTrainingSpec(model=model, vocab_size=2000, objective="mlm"))


@cache
def real_batch(model: str, rows: int = 32, length: int = 256) -> torch.Tensor:
    """The bundled corpus tokenized and packed with [SEP] between documents, as the loader would serve it."""
    tok = real_tokenizer(model)
    eos = tok.token_to_id("[SEP]")
    texts = [d["text"] for d in load_bundled_documents()]
    stream: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        stream += [*enc.ids, eos]
    # Take windows spread over the whole stream so every language appears.
    step = (len(stream) - length) // rows
    return torch.tensor([stream[i * step : i * step + length] for i in range(rows)])


def reference_words(row: list[int], roles: TokenRoles) -> list[range]:
    """Word spans of one row straight from the rule in TokenRoles' docstring (independent of the module's code)."""
    starts = [
        j == 0 or bool(roles.word_start[t]) or bool(roles.word_end[row[j - 1]]) or t in roles.special_ids
        for j, t in enumerate(row)
    ]
    bounds = [j for j, s in enumerate(starts) if s] + [len(row)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def binomial_bound(p: float, n: int) -> float:
    return SIGMAS * math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------------------------------- causal LM


def test_causal_lm_batch_gives_inputs_and_labels_already_shifted_by_one():
    window = torch.arange(2 * 6).view(2, 6)
    batch = causal_lm_batch(window)
    assert batch["input_ids"].tolist() == [[0, 1, 2, 3, 4], [6, 7, 8, 9, 10]]
    assert batch["labels"].tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 10, 11]]
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])


def test_causal_lm_batch_accepts_the_loaders_numpy_windows_and_returns_int64():
    batch = causal_lm_batch(np.arange(10, dtype=np.int64).reshape(2, 5))
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape == (2, 4)


def test_causal_lm_batch_rejects_a_window_with_no_label():
    with pytest.raises(ValueError, match="window"):
        causal_lm_batch(torch.zeros((2, 1), dtype=torch.long))


# --------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"probability": 0.0}, "probability"),
        ({"probability": 1.0}, "probability"),
        ({"probability": -0.1}, "probability"),
        ({"strategy": "words"}, "strategy"),
        ({"mask_fraction": 1.5}, "mask_fraction"),
        ({"random_fraction": -0.1}, "random_fraction"),
        ({"mask_fraction": 0.8, "random_fraction": 0.3}, "mask_fraction \\+ random_fraction"),
        ({"mean_span_length": 0.5}, "mean_span_length"),
        ({"mean_span_length": 12.0, "max_span_length": 10}, "mean_span_length"),
        ({"max_span_length": 0}, "max_span_length"),
    ],
)
def test_bad_masking_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        MaskingConfig(**kwargs)


def test_masking_config_is_built_from_the_job_spec_with_its_defaults_and_bounds():
    assert MaskingConfig.from_spec(MlmSpec()) == MaskingConfig()
    spec = MlmSpec(probability=0.3, masking="span", mean_span_length=2.0, max_span_length=5)
    cfg = MaskingConfig.from_spec(spec)
    assert (cfg.probability, cfg.strategy, cfg.mean_span_length, cfg.max_span_length) == (0.3, "span", 2.0, 5)
    with pytest.raises(ValueError, match=r"^probability: must be < 1\.0"):
        MaskingConfig.from_spec(MlmSpec(probability=1.0))


def test_bad_strategy_error_lists_the_allowed_values():
    with pytest.raises(ValueError, match="token, whole-word, span"):
        MaskingConfig(strategy="ngram")


# --------------------------------------------------------------------------------------------------- rates


def test_token_masking_selects_probability_p_of_the_non_special_tokens():
    roles, cfg = synthetic_roles(), MaskingConfig(probability=0.15)
    ids = synthetic_batch(0)
    selected = maskable = 0
    g = gen(1)
    for _ in range(4):
        _, labels = mask_tokens(ids, roles, cfg, g)
        selected += int((labels != IGNORE_INDEX).sum())
        maskable += int(roles.maskable_table[ids].sum())
    rate = selected / maskable
    assert abs(rate - 0.15) <= binomial_bound(0.15, maskable), rate


@pytest.mark.parametrize("p", [0.15, 0.4])
def test_whole_word_masking_selects_probability_p_of_the_tokens_in_expectation(p):
    roles, cfg = synthetic_roles(), MaskingConfig(probability=p, strategy="whole-word")
    ids = synthetic_batch(2)
    # Words are chosen independently with probability p, so the token count has variance p(1-p) Σ len(word)².
    lengths = [
        len(w) for row in ids.tolist() for w in reference_words(row, roles) if row[w[0]] not in roles.special_ids
    ]
    total, square_sum = sum(lengths), sum(n * n for n in lengths)
    _, labels = mask_tokens(ids, roles, cfg, gen(3))
    rate = int((labels != IGNORE_INDEX).sum()) / total
    assert abs(rate - p) <= SIGMAS * math.sqrt(p * (1 - p) * square_sum) / total, rate


@pytest.mark.parametrize("p", [0.15, 0.4])
@pytest.mark.parametrize("mean", [2.0, 4.0])
def test_span_masking_selects_probability_p_of_each_rows_tokens(p, mean):
    roles, cfg = synthetic_roles(), MaskingConfig(probability=p, strategy="span", mean_span_length=mean)
    g = gen(5)
    deviations = []
    for seed in range(4):
        ids = synthetic_batch(seed)
        selected, _ = select_targets(ids, roles, cfg, g)
        maskable = roles.maskable_table[ids]
        for r in range(ids.shape[0]):
            # A row spends a budget of p × maskable (stochastically rounded) and takes its last span whole or not
            # at all, so it misses its expectation by less than 1 + the longest possible span in tokens.
            words = [len(w) for w in reference_words(ids[r].tolist(), roles)]
            longest = max(sum(words[i : i + cfg.max_span_length]) for i in range(len(words)))
            deviation = int(selected[r].sum()) - p * int(maskable[r].sum())
            assert abs(deviation) < 1 + longest, (r, deviation)
            deviations.append(deviation)
    # Each row is unbiased: the mean deviation is zero within 5 standard errors (256 rows).
    d = torch.tensor(deviations, dtype=torch.float64)
    assert abs(float(d.mean())) <= SIGMAS * float(d.std()) / math.sqrt(len(d)), float(d.mean())
    assert abs(float(d.mean())) / 510 < 0.002, "the share selected is p to within 0.2 points"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masking_rate_on_real_text_is_close_to_p(strategy):
    tok = real_tokenizer("wordpiece")
    roles, cfg = TokenRoles.from_tokenizer(tok), MaskingConfig(strategy=strategy)
    ids = real_batch("wordpiece")
    _, labels = mask_tokens(ids, roles, cfg, gen(6))
    rate = int((labels != IGNORE_INDEX).sum()) / int(roles.maskable_table[ids].sum())
    # ~8,000 tokens in ~5,000 words: a looser bound than the token-level binomial one.
    assert abs(rate - 0.15) < 0.025, rate


# --------------------------------------------------------------------------------------------------- replacements


def replacement_shares(cfg: MaskingConfig, seed: int) -> tuple[int, float, float, float]:
    roles = synthetic_roles()
    ids = synthetic_batch(seed)
    masked, labels = mask_tokens(ids, roles, cfg, gen(seed + 100))
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    to_mask = int((masked[chosen] == MASK).sum())
    unchanged = int((masked[chosen] == ids[chosen]).sum())
    changed = n - to_mask - unchanged
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen]), "only chosen positions change"
    replaced = masked[chosen & (masked != MASK) & (masked != ids)]
    assert not any(int(t) in roles.special_ids for t in replaced), "random replacements are never special tokens"
    return n, to_mask / n, changed / n, unchanged / n


@pytest.mark.parametrize(
    ("mask_fraction", "random_fraction"), [(0.8, 0.1), (0.5, 0.5), (0.0, 1.0), (0.0, 0.0), (1.0, 0.0)]
)
def test_chosen_tokens_split_into_mask_random_and_kept_as_configured(mask_fraction, random_fraction):
    cfg = MaskingConfig(probability=0.3, mask_fraction=mask_fraction, random_fraction=random_fraction)
    n, mask_share, random_share, kept_share = replacement_shares(cfg, seed=10)
    assert n > 9000
    # A random replacement equals the original with probability 1/996 (the non-special ids); those count as kept.
    pool = VOCAB - 4
    expected = (mask_fraction, random_fraction * (1 - 1 / pool), cfg.keep_fraction + random_fraction / pool)
    for share, want in zip((mask_share, random_share, kept_share), expected, strict=True):
        assert abs(share - want) <= binomial_bound(want, n) + 1e-12, (share, want)


def test_default_split_is_80_10_10():
    cfg = MaskingConfig()
    assert (cfg.mask_fraction, cfg.random_fraction, cfg.keep_fraction) == pytest.approx((0.8, 0.1, 0.1))
    n, mask_share, random_share, kept_share = replacement_shares(cfg, seed=11)
    assert abs(mask_share - 0.8) <= binomial_bound(0.8, n)
    assert abs(random_share - 0.1) <= binomial_bound(0.1, n) + 0.001
    assert abs(kept_share - 0.1) <= binomial_bound(0.1, n) + 0.001


def test_span_masking_decides_mask_random_or_keep_per_span():
    roles, cfg = synthetic_roles(), MaskingConfig(probability=0.3, strategy="span")
    ids = synthetic_batch(12)
    g = gen(13)
    state = g.get_state()
    selected, unit = select_targets(ids, roles, cfg, g)
    g.set_state(state)
    masked, labels = mask_tokens(ids, roles, cfg, g)
    assert torch.equal(labels != IGNORE_INDEX, selected)
    spans = unit[selected].unique()
    masked_spans = 0
    for s in spans.tolist():
        at = unit == s
        if (masked[at] == MASK).any():
            assert (masked[at] == MASK).all(), "a span is masked whole"
            masked_spans += 1
        else:
            assert not (masked[at] == MASK).any()
    share = masked_spans / len(spans)
    assert abs(share - 0.8) <= binomial_bound(0.8, len(spans)), share


# --------------------------------------------------------------------------------------------------- specials


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_special_tokens_are_never_selected_or_replaced(strategy):
    roles, cfg = (
        synthetic_roles(),
        MaskingConfig(probability=0.5, strategy=strategy, mask_fraction=0.5, random_fraction=0.5),
    )
    ids = synthetic_batch(20, special_share=0.4)  # pad, eos, mask and cls everywhere
    special = ~roles.maskable_table[ids]
    assert int(special.sum()) > 10000
    g = gen(21)
    for _ in range(3):
        masked, labels = mask_tokens(ids, roles, cfg, g)
        assert (labels[special] == IGNORE_INDEX).all()
        assert torch.equal(masked[special], ids[special])
        assert (labels[~special] != IGNORE_INDEX).any()


def test_a_row_of_only_special_tokens_selects_nothing():
    roles = synthetic_roles()
    ids = torch.tensor([[PAD] * 8, [EOS, CLS, MASK, PAD] * 2])
    for strategy in STRATEGIES:
        masked, labels = mask_tokens(ids, roles, MaskingConfig(strategy=strategy, probability=0.9), gen(0))
        assert (labels == IGNORE_INDEX).all() and torch.equal(masked, ids)


# --------------------------------------------------------------------------------------------------- whole words


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
@pytest.mark.parametrize("strategy", ["whole-word", "span"])
def test_whole_word_and_span_masking_select_only_whole_words_of_a_real_tokenizer(model, strategy):
    tok = real_tokenizer(model)
    roles = TokenRoles.from_tokenizer(tok)
    ids = real_batch(model)
    cfg = MaskingConfig(strategy=strategy, probability=0.3)
    g = gen(30)
    multi_token_words_selected = 0
    for _ in range(3):
        _, labels = mask_tokens(ids, roles, cfg, g)
        chosen = (labels != IGNORE_INDEX).tolist()
        for row, row_chosen in zip(ids.tolist(), chosen, strict=True):
            for word in reference_words(row, roles):
                flags = {row_chosen[j] for j in word}
                assert len(flags) == 1, [tok.id_to_token(row[j]) for j in word]
                multi_token_words_selected += len(word) > 1 and row_chosen[word[0]]
    assert multi_token_words_selected > 100, "the check saw many selected words of several tokens"


def test_token_masking_does_split_words():
    tok = real_tokenizer("wordpiece")
    roles = TokenRoles.from_tokenizer(tok)
    ids = real_batch("wordpiece")
    _, labels = mask_tokens(ids, roles, MaskingConfig(probability=0.3), gen(31))
    chosen = (labels != IGNORE_INDEX).tolist()
    partial = sum(
        len({row_chosen[j] for j in word}) > 1
        for row, row_chosen in zip(ids.tolist(), chosen, strict=True)
        for word in reference_words(row, roles)
    )
    assert partial > 100, "the whole-word check above is not vacuous"


# --------------------------------------------------------------------------------------------------- span lengths


@pytest.mark.parametrize("mean", [2.0, 4.0])
def test_sampled_span_lengths_have_the_configured_mean_after_clipping(mean):
    cfg = MaskingConfig(strategy="span", mean_span_length=mean, max_span_length=10)
    lengths = sample_span_lengths((200_000,), cfg, gen(40)).double()
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= 10
    assert abs(float(lengths.mean()) - mean) <= SIGMAS * float(lengths.std()) / math.sqrt(len(lengths))
    # Geometric before clipping: P(length = 1) = q.
    q = geometric_success_probability(mean, 10)
    share_one = float((lengths == 1).double().mean())
    assert abs(share_one - q) <= binomial_bound(q, len(lengths))


@pytest.mark.parametrize("mean", [2.0, 4.0])
def test_realised_spans_follow_the_configured_mean_length_in_words(mean):
    # Every token a word of its own, so span lengths in words are counted in tokens.
    roles = TokenRoles(
        vocab_size=VOCAB, special_ids=frozenset({PAD, EOS}), mask_id=MASK, pad_id=PAD, word_start=np.ones(VOCAB, bool)
    )
    cfg = MaskingConfig(strategy="span", mean_span_length=mean)
    ids = synthetic_batch(41, special_share=0.005)
    g = gen(42)
    sizes = []
    for _ in range(6):
        _, unit = select_targets(ids, roles, cfg, g)
        counts = torch.bincount(unit[unit >= 0])
        sizes.append(counts[counts > 0])
    sizes_t = torch.cat(sizes).double()
    assert len(sizes_t) > 5000 and int(sizes_t.max()) <= cfg.max_span_length
    # Sampling error, plus 2% for the bias of each row's last span (kept with probability ∝ 1 / its length).
    tolerance = SIGMAS * float(sizes_t.std()) / math.sqrt(len(sizes_t)) + 0.02 * mean
    assert abs(float(sizes_t.mean()) - mean) <= tolerance, float(sizes_t.mean())


def test_mean_span_length_one_gives_single_words():
    cfg = MaskingConfig(strategy="span", mean_span_length=1.0)
    assert torch.equal(sample_span_lengths((100,), cfg, gen(0)), torch.ones(100, dtype=torch.long))


# --------------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_gives_identical_masks_and_another_seed_different_ones(strategy):
    roles, cfg = synthetic_roles(), MaskingConfig(strategy=strategy)
    ids = synthetic_batch(50, rows=8, length=128)
    first = mask_tokens(ids, roles, cfg, gen(7))
    again = mask_tokens(ids, roles, cfg, gen(7))
    other = mask_tokens(ids, roles, cfg, gen(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masking_is_dynamic_the_same_sample_seen_twice_gets_a_fresh_mask(strategy):
    roles, cfg = synthetic_roles(), MaskingConfig(strategy=strategy)
    ids = synthetic_batch(51, rows=8, length=128)
    g = gen(9)
    _, first = mask_tokens(ids, roles, cfg, g)
    _, second = mask_tokens(ids, roles, cfg, g)
    assert not torch.equal(first, second)


def test_masked_lm_batch_returns_inputs_labels_and_an_all_ones_attention_mask():
    roles, cfg = synthetic_roles(), MaskingConfig()
    window = synthetic_batch(52, rows=4, length=64).numpy()  # the loader's int64 arrays
    batch = masked_lm_batch(window, roles, cfg, gen(0))
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert all(t.shape == (4, 64) and t.dtype == torch.int64 for t in batch.values())
    assert (batch["attention_mask"] == 1).all()
    assert (batch["input_ids"] == MASK).any()


def test_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(ValueError, match="input_ids"):
        mask_tokens(torch.tensor([[5, VOCAB]]), synthetic_roles(), MaskingConfig(), gen(0))


# --------------------------------------------------------------------------------------------------- token roles


def test_roles_of_a_wordpiece_tokenizer_find_mask_pad_specials_and_continuations():
    tok = real_tokenizer("wordpiece")
    roles = TokenRoles.from_tokenizer(tok)
    assert roles.mask_id == tok.token_to_id("[MASK]") and roles.pad_id == tok.token_to_id("[PAD]")
    assert roles.special_ids == {tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    vocab = tok.get_vocab()
    for token, index in vocab.items():
        if token.startswith("##") and token != "##" and any(c.isalnum() for c in token):
            assert not roles.word_start[index], token
    assert roles.word_start[vocab["the"]] and roles.word_start[vocab[","]] and roles.word_end[vocab[","]]


def test_roles_of_a_byte_level_bpe_tokenizer_use_the_space_byte_and_isolate_punctuation():
    tok = real_tokenizer("bpe")
    roles = TokenRoles.from_tokenizer(tok)
    vocab = tok.get_vocab()
    pairs = [t for t in vocab if t.isalpha() and t.isascii() and "Ġ" + t in vocab]
    assert len(pairs) > 20
    for token in pairs:
        assert roles.word_start[vocab["Ġ" + token]] and not roles.word_start[vocab[token]], token
    for punct in (",", ".", "Ċ"):  # Ċ is the newline byte
        assert roles.word_start[vocab[punct]] and roles.word_end[vocab[punct]], punct
    assert not roles.word_end[vocab["Ġ" + pairs[0]]]


def test_roles_of_a_metaspace_tokenizer_use_the_marker_and_keep_a_lone_marker_with_its_word():
    pieces = [("<unk>", 0.0), ("<mask>", 0.0), ("▁the", -1.0), ("▁", -2.0), ("cat", -3.0), (",", -3.0)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.add_special_tokens(["<unk>", "<mask>"])
    roles = TokenRoles.from_tokenizer(tok)
    assert roles.mask_id == 1 and roles.pad_id is None
    start, end = roles.word_start.tolist(), roles.word_end.tolist()
    assert start[2:] == [True, True, False, True]
    assert end[2:] == [False, False, False, True], "'▁' + 'cat' is one word; ',' stands alone"


@cache
def causal_tokenizer() -> Tokenizer:
    texts = [d["text"] for d in load_bundled_documents()[:200]]
    return train_tokenizer(texts, TokenizerTrainingSpec(model="bpe", vocab_size=600, objective="clm"))


def test_roles_find_an_angle_bracket_mask_token():
    tok = Tokenizer.from_str(causal_tokenizer().to_str())
    tok.add_special_tokens(["<mask>"])
    roles = TokenRoles.from_tokenizer(tok)
    assert roles.mask_id == tok.token_to_id("<mask>") and roles.mask_id in roles.special_ids


def test_masked_lm_is_refused_for_a_tokenizer_without_a_mask_token():
    tok = causal_tokenizer()
    roles = TokenRoles.from_tokenizer(tok)
    assert roles.mask_id is None and roles.pad_id == tok.token_to_id("<|pad|>")
    with pytest.raises(ValueError, match="masked LM needs a mask token"):
        require_mask(roles)
    with pytest.raises(ValueError, match="masked LM needs a mask token"):
        masked_lm_batch(torch.tensor([[5, 6, 7]]), roles, MaskingConfig(), gen(0))


def test_an_explicit_mask_token_must_exist():
    with pytest.raises(ValueError, match="mask_token"):
        TokenRoles.from_tokenizer(real_tokenizer("wordpiece"), mask_token="<MASK>")
    roles = TokenRoles.from_tokenizer(real_tokenizer("wordpiece"), mask_token="[UNK]")
    assert roles.mask_id == real_tokenizer("wordpiece").token_to_id("[UNK]")
