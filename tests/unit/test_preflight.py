"""Checks before the first step: misspelt model settings, data sets too small to train or validate on, token ids
the model cannot embed. Each is refused with the field or data set named and the fix."""

import numpy as np
import pytest
import yaml

from pretrain_trainer.cli import main as cli_main
from pretrain_trainer.config import ModelSpec
from pretrain_trainer.data.shards import ShardError, ShardSet
from pretrain_trainer.preflight import check_data, check_token_ids, model_config_problems
from pretrain_trainer.storage import open_store
from tests.support.data import counting_shards


def _shards(tmp_path, name, num_tokens, vocab_size=512):
    store = open_store(str(tmp_path / name))
    counting_shards(store, num_tokens, shard_tokens=1000, vocab_size=vocab_size)
    return ShardSet.open(str(tmp_path / name))


def _check(train, validation, **overrides):
    kwargs = dict(sequence_length=16, causal=True, global_batch_samples=4, eval_batches=2, vocab_size=512)
    check_data(train, validation, **{**kwargs, **overrides})


# ------------------------------------------------------------------------------------------------- model.config


def test_a_misspelt_layer_count_is_refused_with_the_architectures_spelling():
    problems = model_config_problems(ModelSpec(architecture="gpt2", config={"n_layers": 2, "n_embd": 64}))
    assert [str(p) for p in problems] == [
        "spec.model.config.n_layers: not a setting of gpt2 (GPT2Config); did you mean 'n_layer'?"
    ]


def test_config_keys_accept_constructor_arguments_shared_attributes_and_aliases():
    gpt = {"n_layer": 2, "hidden_size": 64, "num_hidden_layers": 2, "tie_word_embeddings": False, "resid_pdrop": 0}
    assert model_config_problems(ModelSpec(architecture="gpt2", config=gpt)) == []
    bert = {"num_hidden_layers": 2, "intermediate_size": 128, "hidden_dropout_prob": 0.0}
    assert model_config_problems(ModelSpec(architecture="bert", config=bert)) == []
    llama = {"num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6}
    assert model_config_problems(ModelSpec(architecture="llama", config=llama)) == []


def test_a_key_of_another_architecture_is_refused():
    (problem,) = model_config_problems(ModelSpec(architecture="bert", config={"n_layer": 2}))
    assert problem.path == "spec.model.config.n_layer" and "BertConfig" in problem.message


def test_pretrainjob_validate_refuses_a_misspelt_model_setting(tmp_path, capsys):
    manifest = {
        "tokenizer": {"uri": "s3://bucket/tok"},
        "data": {"train": "s3://bucket/train", "sequenceLength": 64},
        "model": {"architecture": "gpt2", "config": {"n_layers": 2, "n_positions": 64}},
        "training": {"globalBatchSamples": 8, "microBatchSize": 8},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert cli_main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: spec.model.config.n_layers: not a setting of gpt2 (GPT2Config); did you mean 'n_layer'?" in out


# ------------------------------------------------------------------------------------------------------- data


def test_an_empty_validation_set_is_refused_naming_the_set_and_the_field(tmp_path):
    train = _shards(tmp_path, "train", 5000)
    empty = _shards(tmp_path, "val", 0)
    with pytest.raises(ShardError) as info:
        _check(train, empty)
    message = str(info.value)
    assert message.startswith(f"spec.data.validation: {empty.store.uri} holds 0 tokens, fewer than one sample of 17")
    assert "lower data.sequenceLength" in message


def test_a_validation_set_smaller_than_one_global_batch_is_refused(tmp_path):
    train = _shards(tmp_path, "train", 5000)
    small = _shards(tmp_path, "val", 16 * 3 + 1)  # three samples of 16 (+1) tokens, the global batch is four
    with pytest.raises(ShardError) as info:
        _check(train, small)
    assert str(info.value).startswith(
        f"spec.data.validation: {small.store.uri} holds 3 samples of 16 tokens, fewer than one global batch (4 samples)"
    )
    _check(train, small, global_batch_samples=3)  # enough for one batch of three


def test_a_validation_set_with_fewer_batches_than_eval_batches_only_warns(tmp_path, caplog):
    train = _shards(tmp_path, "train", 5000)
    val = _shards(tmp_path, "val", 16 * 5 + 1)
    _check(train, val, eval_batches=10)
    assert "holds 1 global batches" in caplog.text and "evalBatches=10" in caplog.text


def test_a_training_set_shorter_than_one_sample_is_refused_naming_it(tmp_path):
    short = _shards(tmp_path, "train", 16)  # a causal sample needs 17
    with pytest.raises(ShardError, match=r"^spec\.data\.train: .* holds 16 tokens, fewer than one sample of 17"):
        _check(short, None)
    _check(short, None, causal=False)  # a masked-LM sample is 16 tokens


def test_shards_prepared_for_a_larger_vocabulary_are_refused(tmp_path):
    train = _shards(tmp_path, "train", 5000, vocab_size=1000)
    with pytest.raises(ShardError) as info:
        _check(train, None, vocab_size=512)
    assert "was prepared for a vocabulary of 1000 tokens, but the model embeds 512" in str(info.value)


def test_token_ids_outside_the_vocabulary_are_refused_before_the_embedding_sees_them():
    check_token_ids(np.array([[0, 5, 511]]), 512, "spec.data.train: s3://b/train")
    with pytest.raises(ShardError) as info:
        check_token_ids(np.array([[0, 5, 40000]]), 512, "spec.data.train: s3://b/train")
    assert str(info.value).startswith(
        "spec.data.train: s3://b/train: token id 40000 is outside the model's vocabulary of 512 ids"
    )
