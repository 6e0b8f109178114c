"""Continued pretraining (DAPT) from a Hugging Face checkpoint in S3, with and without a vocabulary extended to
the new domain's words: the checkpoint is a tiny GPT-2 (and a tiny BERT) that the test saves and uploads itself."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from pretrain_trainer.bundled_corpus import bundled_corpus_files, load_bundled_documents
from pretrain_trainer.config import ModelSpec, load_job
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.model import build_model
from pretrain_trainer.storage import StorageOptions, open_store
from pretrain_trainer.storage.local_s3 import ensure_bucket
from pretrain_trainer.tokenizer.extend import candidates, extend_tokenizer, write_extended
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer
from pretrain_trainer.trainer import Trainer
from tests.support.data import trained
from tests.support.jobs import TINY_BERT, TINY_GPT, Dataset, make_dataset, write_job

BUCKET = "s3://dapt"
BASE_SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=512)
NEW_WORDS = 40


def _texts(*langs: str) -> list[str]:
    return [d["text"] for d in load_bundled_documents() if d["lang"] in langs]


def _corpus_files(*langs: str) -> tuple[str, ...]:
    return tuple(str(p) for p in bundled_corpus_files() if p.stem in langs)


def _upload_folder(folder: Path, uri: str, options: StorageOptions) -> str:
    store = open_store(uri, options)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            store.write(path.relative_to(folder).as_posix(), path.read_bytes())
    return store.uri


@dataclass(frozen=True)
class Checkpoint:
    uri: str
    folder: Path
    base: Tokenizer
    embeddings: torch.Tensor


@dataclass(frozen=True)
class Extended:
    tokenizer: Tokenizer
    words: tuple[str, ...]
    data: Dataset


@pytest.fixture(scope="module")
def gpt_checkpoint(s3, tmp_path_factory) -> Checkpoint:
    """A tiny GPT-2 whose vocabulary is a byte-level BPE trained on English and code only, saved with
    save_pretrained beside its tokenizer files and uploaded to S3."""
    ensure_bucket(BUCKET, s3)
    base = train_tokenizer(_texts("en", "code"), BASE_SPEC)
    torch.manual_seed(0)
    eos = base.token_to_id("<|endoftext|>")
    config = GPT2Config(vocab_size=base.get_vocab_size(), bos_token_id=eos, eos_token_id=eos, **TINY_GPT)
    model = GPT2LMHeadModel(config)
    folder = tmp_path_factory.mktemp("gpt-ckpt")
    model.save_pretrained(folder)
    save_tokenizer(base, BASE_SPEC, str(folder), None)
    uri = _upload_folder(folder, f"{BUCKET}/models/gpt-en", s3)
    return Checkpoint(uri, folder, base, model.get_input_embeddings().weight.detach().clone())


@pytest.fixture(scope="module")
def extended(gpt_checkpoint, s3) -> Extended:
    """The checkpoint's tokenizer extended with Swedish and German words, and shards prepared with it."""
    found = candidates(gpt_checkpoint.base, _texts("sv", "de"))
    words = tuple(c.word for c in found[:NEW_WORDS])
    tok = extend_tokenizer(gpt_checkpoint.base, words)
    tok_uri = write_extended(tok, f"{gpt_checkpoint.uri}/tokenizer.json", f"{BUCKET}/tok/extended", s3)
    prepare(
        PrepareConfig(
            inputs=_corpus_files("sv", "de"),
            output=f"{BUCKET}/data/sv-de",
            tokenizer=tok_uri,
            dedup=True,
            validation_fraction=0.1,
            shard_tokens=20_000,
        ),
        s3,
    )
    data = Dataset(tok_uri, f"{BUCKET}/data/sv-de/train", f"{BUCKET}/data/sv-de/validation")
    return Extended(tok, words, data)


def _special(tok: Tokenizer) -> dict[str, int | None]:
    eos = tok.token_to_id("<|endoftext|>")
    return {"pad": tok.token_to_id("<|pad|>"), "eos": eos, "bos": eos}


def _pretrained(uri: str, extend_vocab: bool = False) -> ModelSpec:
    return ModelSpec(architecture="gpt2", init="pretrained", from_=uri, extend_vocab=extend_vocab)


def test_the_extension_adds_domain_words_and_the_shards_use_them(gpt_checkpoint, extended, s3):
    base_size = gpt_checkpoint.base.get_vocab_size()
    assert len(extended.words) == NEW_WORDS
    assert extended.tokenizer.get_vocab_size() == base_size + NEW_WORDS
    assert open_store(f"{BUCKET}/tok/extended", s3).exists("tokenizer_config.json")
    from pretrain_trainer.data.shards import ShardSet

    shards = ShardSet.open(extended.data.train, s3)
    assert shards.index.tokenizer.vocab_size == base_size + NEW_WORDS
    tokens = shards.read_tokens(0, shards.num_tokens)
    assert int(tokens.max()) >= base_size, "the Swedish/German shards use the new tokens"


def test_extend_vocab_grows_the_embeddings_keeps_old_rows_and_starts_new_rows_at_the_mean_of_their_pieces(
    gpt_checkpoint, extended, s3
):
    base, old = gpt_checkpoint.base, gpt_checkpoint.embeddings
    old_size, new_size = old.shape[0], extended.tokenizer.get_vocab_size()
    model, info = build_model(
        _pretrained(gpt_checkpoint.uri, extend_vocab=True), AutoModelForCausalLM, extended.tokenizer, _special(base), s3
    )
    weight = model.get_input_embeddings().weight
    assert weight.shape == (new_size, old.shape[1])
    assert info.vocab_size == new_size and info.extended_from == old_size
    assert model.config.vocab_size == new_size
    assert torch.equal(weight[:old_size], old), "old rows must be bit-identical to the checkpoint's"
    for word in extended.words:
        token_id = extended.tokenizer.token_to_id(word)
        assert old_size <= token_id < new_size
        pieces = base.encode(word, add_special_tokens=False).ids
        assert len(pieces) >= 3
        torch.testing.assert_close(weight[token_id], old[pieces].mean(dim=0), rtol=0, atol=1e-7, msg=word)
    # GPT-2 ties the LM head to the input embeddings: it must still be the same (resized) matrix.
    head = model.get_output_embeddings().weight
    assert head.shape == weight.shape
    assert head.data_ptr() == weight.data_ptr()
    ids = torch.tensor([extended.tokenizer.encode(" ".join(extended.words[:5])).ids])
    assert int(ids.max()) >= old_size
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], new_size) and torch.isfinite(logits).all()


def test_new_rows_of_words_with_latin1_letters_start_from_the_word_not_its_garbled_decoding(gpt_checkpoint, s3):
    # Byte-level BPE decodes an added "Örebro" through its byte-level decoder into mojibake; the new row must
    # still be the mean of the pieces of "Örebro" itself.
    base, old = gpt_checkpoint.base, gpt_checkpoint.embeddings
    words = ["Örebro", "Växjö", "Straße"]
    tok = extend_tokenizer(base, words)
    model, _ = build_model(
        _pretrained(gpt_checkpoint.uri, extend_vocab=True), AutoModelForCausalLM, tok, _special(base), s3
    )
    weight = model.get_input_embeddings().weight
    for word in words:
        pieces = base.encode(word, add_special_tokens=False).ids
        torch.testing.assert_close(weight[tok.token_to_id(word)], old[pieces].mean(dim=0), rtol=0, atol=1e-7)


def test_a_job_with_extend_vocab_continues_pretraining_and_exports_the_extended_model(
    gpt_checkpoint, extended, s3, s3_env, s3_endpoint, tmp_path
):
    ckpt = f"{BUCKET}/runs/{tmp_path.name}"
    job = write_job(
        tmp_path / "job.yaml",
        "dapt-extended",
        extended.data,
        s3_endpoint,
        model={"init": "pretrained", "from": gpt_checkpoint.uri, "extendVocab": True},
        training={"maxSteps": 10, "logEverySteps": 100},
        checkpoint={"uri": ckpt, "everySteps": 100, "exportHF": True},
    )
    summary = Trainer(load_job(job), DistEnv(), tmp_path / "run").run()
    losses = summary.losses
    assert summary.steps == 10 and len(losses) == 10
    assert all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert summary.hf_export is not None

    exported = open_store(summary.hf_export, s3)
    local = tmp_path / "export"
    for obj in exported.list(""):
        (local / obj.key).parent.mkdir(parents=True, exist_ok=True)
        (local / obj.key).write_bytes(exported.read(obj.key))
    new_size = extended.tokenizer.get_vocab_size()
    reloaded = AutoModelForCausalLM.from_pretrained(local)
    assert reloaded.config.vocab_size == new_size
    assert reloaded.get_input_embeddings().weight.shape[0] == new_size
    assert Tokenizer.from_file(str(local / "tokenizer.json")).get_vocab_size() == new_size


def test_a_larger_tokenizer_without_extend_vocab_is_refused(gpt_checkpoint, extended, s3):
    with pytest.raises(ValueError, match=r"spec\.model\.extendVocab") as err:
        build_model(
            _pretrained(gpt_checkpoint.uri), AutoModelForCausalLM, extended.tokenizer, _special(extended.tokenizer), s3
        )
    assert f"{extended.tokenizer.get_vocab_size()} tokens" in str(err.value)


@pytest.mark.parametrize("extend_vocab", [True, False])
def test_a_tokenizer_that_moves_old_ids_is_refused(gpt_checkpoint, s3, extend_vocab):
    # Trained from scratch on other text: the same size as the checkpoint's or larger, but other ids.
    size = BASE_SPEC.vocab_size + (64 if extend_vocab else 0)
    other = train_tokenizer(_texts("sv", "de", "fr"), TokenizerTrainingSpec(model="bpe", vocab_size=size))
    assert other.get_vocab_size() == size
    spec = _pretrained(gpt_checkpoint.uri, extend_vocab=extend_vocab)
    with pytest.raises(ValueError, match=r"spec\.tokenizer\.uri") as err:
        build_model(spec, AutoModelForCausalLM, other, _special(other), s3)
    assert gpt_checkpoint.uri in str(err.value)
    assert "pretrainjob tokenizer extend" in str(err.value)


def test_model_from_a_folder_without_config_json_names_the_uri(gpt_checkpoint, s3):
    uri = f"{BUCKET}/models/not-a-checkpoint"
    open_store(uri, s3).write("tokenizer.json", gpt_checkpoint.base.to_str().encode())
    with pytest.raises(FileNotFoundError, match=r"config\.json") as err:
        build_model(_pretrained(uri), AutoModelForCausalLM, gpt_checkpoint.base, _special(gpt_checkpoint.base), s3)
    assert uri in str(err.value)
    empty = f"{BUCKET}/models/nothing-here"
    with pytest.raises(FileNotFoundError, match=r"config\.json") as err:
        build_model(_pretrained(empty), AutoModelForCausalLM, gpt_checkpoint.base, _special(gpt_checkpoint.base), s3)
    assert empty in str(err.value)


def test_masked_lm_continues_pretraining_a_bert_checkpoint_with_its_own_vocabulary(s3, s3_env, s3_endpoint, tmp_path):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    data = make_dataset(BUCKET, "bert", spec, s3)
    tok = trained(spec)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=tok.get_vocab_size(), pad_token_id=0, **TINY_BERT))
    folder = tmp_path / "bert-ckpt"
    model.save_pretrained(folder)
    save_tokenizer(tok, spec, str(folder), None)
    uri = _upload_folder(folder, f"{BUCKET}/models/bert", s3)
    job = write_job(
        tmp_path / "job.yaml",
        "dapt-bert",
        data,
        s3_endpoint,
        kind="mlm",
        model={"init": "pretrained", "from": uri},
        optimizer={"lr": 3e-3},
        training={"maxSteps": 8, "logEverySteps": 100},
    )
    trainer = Trainer(load_job(job), DistEnv(), tmp_path / "run")
    assert trainer.info.extended_from is None and trainer.info.vocab_size == tok.get_vocab_size()
    summary = trainer.run()
    assert summary.steps == 8
    assert all(math.isfinite(x) for x in summary.losses), summary.losses
