"""`prepare --tasks` and `prepare merge` on S3: corpus read from an s3:// prefix, parts and shards written to the
loopback endpoint, the merged objects byte-identical to a single-process prepare of the same corpus on disk."""

from __future__ import annotations

import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.data.merge import PartsError, merge
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.scatter import PARTS, prepare_task
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=800)


def test_tasks_on_s3_inputs_and_output_merge_to_the_shards_of_one_local_process(s3_bucket, s3_env, tmp_path):
    tokenizer = save_tokenizer(trained(SPEC), SPEC, str(tmp_path / "tok"))
    store = open_store(s3_bucket, s3_env)
    for path in bundled_corpus_files():
        store.write(f"corpus/{path.name}", path.read_bytes())
    settings = {"tokenizer": tokenizer, "dedup": True, "validation_fraction": 0.1, "shard_tokens": 6000}
    local = PrepareConfig(
        inputs=tuple(str(p) for p in bundled_corpus_files()), output=str(tmp_path / "one"), **settings
    )
    single = prepare(local)
    remote = PrepareConfig(inputs=(f"{s3_bucket}/corpus/",), output=f"{s3_bucket}/data", **settings)
    prepare_task(remote, 2, 1, s3_env)
    with pytest.raises(PartsError, match=r"missing parts: task\(s\) 0 of 2"):
        merge(remote.output, s3_env)
    prepare_task(remote, 2, 0, s3_env)
    report = merge(remote.output, s3_env)
    assert report.kept == single.kept and report.dropped == single.dropped
    out = store.child("data")
    for split in ("train", "validation"):
        for path in sorted((tmp_path / "one" / split).glob("shard-*")):
            assert out.read(f"{split}/{path.name}") == path.read_bytes(), path.name
    assert not out.list(f"{PARTS}/"), "parts removed after the merge"
