"""The data path end to end against a real S3 endpoint on loopback: tokenizer and shards in a bucket,
streamed back by several ranks, through injected faults and corruption."""

import dataclasses

import boto3
import numpy as np
import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files, load_bundled_documents
from pretrain_trainer.data.loader import SampleOrder, StreamingLoader
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.shards import ShardChecksumError, ShardSet, ShardTruncatedError, TokenizerMismatchError
from pretrain_trainer.storage import StorageBucketNotFound
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=2000)
SEQ = 64


@pytest.fixture
def dataset(s3_bucket, s3_env):
    """A tokenizer and prepared train/validation shards in a fresh bucket; returns (data URI, tokenizer URI)."""
    tok_uri = save_tokenizer(trained(SPEC), SPEC, f"{s3_bucket}/tokenizers/bpe", s3_env)
    report = prepare(
        PrepareConfig(
            inputs=tuple(str(p) for p in bundled_corpus_files()),
            output=f"{s3_bucket}/datasets/bundled",
            tokenizer=tok_uri,
            dedup=True,
            validation_fraction=0.1,
            shard_tokens=10_000,
            page_bytes=1024,
        ),
        s3_env,
    )
    assert report.shards["train"] > 3
    return f"{s3_bucket}/datasets/bundled", tok_uri


def _client(options):
    return boto3.client("s3", endpoint_url=options.endpoint_url, region_name="us-east-1")


def _stream(shards, world_size, start, steps, batch=6):
    out = []
    for rank in range(world_size):
        with StreamingLoader(
            shards,
            sequence_length=SEQ,
            causal=True,
            global_batch_size=batch,
            rank=rank,
            world_size=world_size,
            seed=3,
            samples_consumed=start,
        ) as loader:
            out.append([row for _, b in zip(range(steps), loader, strict=False) for row in b])
    return out


def test_prepared_shards_in_s3_stream_back_exactly_across_a_change_of_world_size(dataset, s3_env):
    data_uri, tok_uri = dataset
    tok = load_tokenizer(tok_uri, s3_env)
    shards = ShardSet.open(f"{data_uri}/train", s3_env, expected_fingerprint=tok.fingerprint)
    everything = shards.read_tokens(0, shards.num_tokens)
    # The stream holds the kept documents in corpus order, each followed by EOS.
    first_doc = everything[: int(np.argmax(everything == tok.eos_id))]
    assert tok.tokenizer.decode(first_doc.tolist()) in {d["text"] for d in load_bundled_documents()}

    two = _stream(shards, world_size=2, start=0, steps=3)
    three = _stream(shards, world_size=3, start=18, steps=3)
    order = SampleOrder((shards.num_tokens - SEQ - 1) // SEQ + 1, seed=3).samples(0, 36)
    got = [row for batches in (two, three) for rank in batches for row in rank]
    expected = [everything[s * SEQ : s * SEQ + SEQ + 1].astype(np.int64) for s in order]
    # Together the 2-rank run and the 3-rank resume read exactly the first 36 samples of the global order.
    assert sorted(map(bytes, got)) == sorted(map(bytes, expected))
    assert len({bytes(r) for r in got}) == 36
    assert shards.bytes_read > 0


def test_loader_rides_out_resets_throttling_and_short_bodies(dataset, s3_env, faulty_s3):
    data_uri, _ = dataset
    clean = ShardSet.open(f"{data_uri}/train", s3_env)
    expected = _stream(clean, world_size=1, start=0, steps=4)
    via_proxy = dataclasses.replace(s3_env, endpoint_url=faulty_s3.url, max_attempts=6)
    shards = ShardSet.open(f"{data_uri}/train", via_proxy)
    faulty_s3.reset_next(3, methods=["GET"], path_contains=".bin")
    faulty_s3.fail_next(3, status=503, code="SlowDown", methods=["GET"], path_contains=".bin")
    faulty_s3.truncate_next(2, methods=["GET"], path_contains=".bin")
    got = _stream(shards, world_size=1, start=0, steps=4)
    assert faulty_s3.faults_total == 8
    assert [bytes(r) for r in got[0]] == [bytes(r) for r in expected[0]]


def test_a_corrupted_object_in_the_bucket_stops_the_loader(dataset, s3_env):
    data_uri, _ = dataset
    bucket, prefix = data_uri.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/train/shard-00001.bin"
    client = _client(s3_env)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[100] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    shards = ShardSet.open(f"{data_uri}/train", s3_env)
    with pytest.raises(ShardChecksumError, match=r"s3://.*shard-00001\.bin: page 0 .*crc32"):
        start = shards.index.shards[0].num_tokens
        shards.read_tokens(start, start + 10)


def test_a_truncated_object_in_the_bucket_is_caught_before_training(dataset, s3_env):
    data_uri, _ = dataset
    bucket, prefix = data_uri.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/train/shard-00002.bin"
    client = _client(s3_env)
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=data[: len(data) // 2])
    with pytest.raises(ShardTruncatedError, match=r"shard-00002\.bin: \d+ bytes, index\.json says"):
        ShardSet.open(f"{data_uri}/train", s3_env)


def test_shards_of_another_tokenizer_are_refused_before_training(dataset, s3_env, s3_bucket):
    data_uri, _ = dataset
    other = TokenizerTrainingSpec(model="bpe", vocab_size=1500)
    other_uri = save_tokenizer(trained(other), other, f"{s3_bucket}/tokenizers/other", s3_env)
    with pytest.raises(TokenizerMismatchError, match="re-run `pretrainjob prepare` with the job's tokenizer"):
        ShardSet.open(f"{data_uri}/train", s3_env, expected_fingerprint=load_tokenizer(other_uri, s3_env).fingerprint)


def test_preparing_into_a_missing_bucket_fails_with_the_uri_and_the_fix(s3_env, tmp_path):
    (tmp_path / "tok").mkdir()
    save_tokenizer(trained(SPEC), SPEC, str(tmp_path / "tok"))
    cfg = PrepareConfig(
        inputs=(str(bundled_corpus_files()[0]),),
        output="s3://no-such-bucket-here/data",
        tokenizer=str(tmp_path / "tok"),
    )
    with pytest.raises(StorageBucketNotFound, match=r"s3://no-such-bucket-here.*no such bucket"):
        prepare(cfg, s3_env)
