"""The downstream probe (`pretrainjob eval probe`): language of a bundled-corpus line from frozen features."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers import BertConfig, BertModel

from pretrain_trainer.cli import main
from pretrain_trainer.probe import language_examples, probe_model, wilson_interval
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def tiny_bert(vocab: int) -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY))


def test_the_wilson_interval_matches_published_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0


def test_language_lines_of_one_document_never_land_on_both_sides():
    train, test = language_examples()
    assert not {t for t, _ in train} & {t for t, _ in test}
    assert len(Counter(lang for _, lang in test)) == len(Counter(lang for _, lang in train)) == 10
    assert len(test) > 100


def test_random_features_already_separate_languages_far_above_chance():
    tok = trained(SPEC)
    result = probe_model(tiny_bert(tok.get_vocab_size()), tok)
    assert result.classes == 10 and result.accuracy > 0.6 and result.low < result.accuracy < result.high


def test_constant_features_score_no_better_than_the_majority_class():
    tok = trained(SPEC)
    model = tiny_bert(tok.get_vocab_size())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    _, test = language_examples()
    majority = Counter(lang for _, lang in test).most_common(1)[0][1] / len(test)
    assert probe_model(model, tok).accuracy <= majority + 1e-9


def test_eval_probe_prints_accuracy_with_its_interval_for_an_exported_folder(tmp_path, capsys):
    tok = trained(SPEC)
    tiny_bert(tok.get_vocab_size()).save_pretrained(tmp_path / "model")
    save_tokenizer(tok, SPEC, str(tmp_path / "model"))
    assert main(["eval", "probe", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("language: accuracy 0.") and "(95% CI 0." in out and "10 classes" in out
