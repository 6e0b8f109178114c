import json
from dataclasses import replace

import numpy as np
import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.data.merge import merge
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.scatter import prepare_task
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=2000)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(trained(SPEC), SPEC, str(path))
    return str(path)


def _config(tokenizer_dir, output, **kw):
    base = {
        "inputs": tuple(str(p) for p in bundled_corpus_files()),
        "output": str(output),
        "tokenizer": tokenizer_dir,
        "shard_tokens": 20_000,
    }
    return PrepareConfig(**{**base, **kw})


def test_prepare_writes_shards_whose_tokens_decode_to_the_documents_joined_by_eos(tokenizer_dir, tmp_path):
    report = prepare(_config(tokenizer_dir, tmp_path / "out"))
    shards = ShardSet.open(str(tmp_path / "out" / "train"))
    tok = load_tokenizer(tokenizer_dir)
    index = shards.index
    assert index.tokenizer.fingerprint == tok.fingerprint and index.tokenizer.eos_token == "<|endoftext|>"
    assert index.dtype == "uint16" and len(index.shards) == report.shards["train"] > 1
    assert index.num_tokens == report.tokens["train"] and index.num_documents == report.kept["train"]
    # The first document comes back exactly, followed by EOS.
    ends = shards.document_ends(0)
    first = shards.read_tokens(0, int(ends[0]))
    assert first[-1] == tok.eos_id
    from pretrain_trainer.bundled_corpus import load_bundled_documents

    assert tok.tokenizer.decode(first[:-1].tolist()) == load_bundled_documents()[0]["text"]
    assert (np.diff(shards.document_ends(1)) > 0).all()
    assert json.loads(open_store(str(tmp_path / "out")).read("report.json"))["kept"]["train"] == report.kept["train"]


def test_prepare_is_deterministic(tokenizer_dir, tmp_path):
    prepare(_config(tokenizer_dir, tmp_path / "a", dedup=True, validation_fraction=0.1))
    prepare(_config(tokenizer_dir, tmp_path / "b", dedup=True, validation_fraction=0.1))
    for split in ("train", "validation"):
        a, b = sorted((tmp_path / "a" / split).iterdir()), sorted((tmp_path / "b" / split).iterdir())
        assert [p.name for p in a] == [p.name for p in b]
        for pa, pb in zip(a, b, strict=True):
            if pa.name != "index.json":  # the index names its output folder's inputs, which are the same
                assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert (
            json.loads((a[-1].parent / "index.json").read_text())["shards"]
            == json.loads((b[-1].parent / "index.json").read_text())["shards"]
        )


def test_dedup_and_min_tokens_drop_documents_and_say_why(tokenizer_dir, tmp_path):
    plain = prepare(_config(tokenizer_dir, tmp_path / "plain"))
    filtered = prepare(_config(tokenizer_dir, tmp_path / "filtered", dedup=True, min_tokens=8))
    assert plain.dropped["duplicate"] == 0
    assert filtered.dropped["duplicate"] > 0, "the bundled corpus has exact duplicates on purpose"
    assert filtered.dropped["too_short"] > 0, "and very short documents"
    assert filtered.kept["train"] + sum(filtered.dropped.values()) == filtered.documents_read
    assert filtered.documents_read == plain.documents_read
    text = filtered.format()
    assert "duplicate" in text and "too_short" in text and "tokens/s" in text


def test_validation_split_is_by_document_and_disjoint(tokenizer_dir, tmp_path):
    report = prepare(_config(tokenizer_dir, tmp_path / "out", dedup=True, validation_fraction=0.2))
    total = report.kept["train"] + report.kept["validation"]
    assert 0.1 < report.kept["validation"] / total < 0.3
    tok = load_tokenizer(tokenizer_dir).tokenizer

    def documents(split):
        shards = ShardSet.open(str(tmp_path / "out" / split))
        tokens = shards.read_tokens(0, shards.num_tokens)
        eos = shards.index.tokenizer.eos_id
        cuts = np.flatnonzero(tokens == eos)
        return {tok.decode(part.tolist()) for part in np.split(tokens, cuts + 1) if len(part)}

    assert not documents("train") & documents("validation")


def test_existing_output_is_kept_unless_overwrite_and_stale_shards_are_removed(tokenizer_dir, tmp_path):
    prepare(_config(tokenizer_dir, tmp_path / "out", shard_tokens=5000))
    many = len(list((tmp_path / "out" / "train").glob("*.bin")))
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(_config(tokenizer_dir, tmp_path / "out"))
    prepare(_config(tokenizer_dir, tmp_path / "out", overwrite=True, shard_tokens=50_000))
    few = len(list((tmp_path / "out" / "train").glob("*.bin")))
    assert few < many
    ShardSet.open(str(tmp_path / "out" / "train")).verify()
    assert len(list((tmp_path / "out" / "train").iterdir())) == 3 * few + 1


def test_a_tokenizer_without_an_eos_token_is_refused(tmp_path):
    tok = trained(SPEC)
    body = json.loads(tok.to_str())
    body["added_tokens"] = [t for t in body["added_tokens"] if t["content"] != "<|endoftext|>"]
    body["model"]["vocab"].pop("<|endoftext|>")
    (tmp_path / "tokenizer.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"no end-of-document token.*--eos-token"):
        prepare(_config(str(tmp_path / "tokenizer.json"), tmp_path / "out"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"inputs": ()}, "inputs"),
        ({"batch_documents": 0}, "batch_documents"),
    ],
)
def test_bad_prepare_settings_name_the_field(tokenizer_dir, tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        _config(tokenizer_dir, tmp_path, **kwargs)


def test_a_document_that_spells_special_tokens_keeps_them_as_text(tmp_path):
    """A document cannot end itself early, plant a mask or collide with T5's sentinels: the spelling of a special
    token in the text is encoded as ordinary pieces, the single and the multi-task prepare alike."""
    spec = TokenizerTrainingSpec(model="bpe", vocab_size=1000, objective="span-corruption")
    save_tokenizer(trained(spec), spec, str(tmp_path / "tok"))
    text = "Skriv <extra_id_0> eller </s> eller <pad> i texten, <extra_id_7>."
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": text}) + "\n" + json.dumps({"text": "Hej då."}) + "\n")
    config = PrepareConfig(
        inputs=(str(tmp_path / "docs.jsonl"),), output=str(tmp_path / "out"), tokenizer=str(tmp_path / "tok")
    )
    prepare(config)
    tok = load_tokenizer(str(tmp_path / "tok"))
    special = {tok.tokenizer.token_to_id(t) for t in spec.special_tokens.all()}
    shards = ShardSet.open(str(tmp_path / "out" / "train"))
    tokens = shards.read_tokens(0, shards.index.num_tokens).tolist()
    ends = shards.document_ends(0).tolist()
    assert [i for i, t in enumerate(tokens) if t in special] == [e - 1 for e in ends], "only the separating EOS"
    assert tok.tokenizer.decode(tokens[: ends[0] - 1]) == text
    as_task = replace(config, output=str(tmp_path / "tasks"))
    prepare_task(as_task, 1, 0)
    merge(as_task.output)
    assert ShardSet.open(str(tmp_path / "tasks" / "train")).read_tokens(0, len(tokens)).tolist() == tokens
