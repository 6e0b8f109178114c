"""The data path end to end against a real S3 endpoint on loopback: tokenizer and shards in a bucket,
streamed back by several ranks, through injected faults and corruption."""

import dataclasses
import multiprocessing

import boto3
import numpy as np
import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files, load_bundled_documents
from pretrain_trainer.data.loader import StreamingLoader
from pretrain_trainer.data.order import BlockShuffledOrder
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.shards import ShardChecksumError, ShardSet, ShardTruncatedError, TokenizerMismatchError
from pretrain_trainer.storage import StorageBucketNotFound
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import read_as_rank, trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=2000)
SEQ = 64
# Blocks of 16 samples (2 KiB of uint16 tokens), windows of 3 blocks: the set (~10k-token shards) spans many
# blocks and windows, and blocks cross shard boundaries.
BLOCK_SAMPLES, WINDOW_BLOCKS = 16, 3
BLOCK = dict(block_bytes=BLOCK_SAMPLES * SEQ * 2, window_blocks=WINDOW_BLOCKS)


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


def _stream(shards, world_size, start, steps, batch=6, cache_dir=None):
    """Per rank, the rows it read, each rank a loader of its own (sharing `cache_dir` when given)."""
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
            cache_dir=cache_dir,
            **BLOCK,
        ) as loader:
            out.append([row for _, b in zip(range(steps), loader, strict=False) for row in b])
    return out


def _global_order(per_rank, batch):
    """Interleave per-rank rows back into global positions: each global batch is rank 0's slice, then rank 1's..."""
    local = batch // len(per_rank)
    steps = len(per_rank[0]) // local
    return [row for step in range(steps) for rows in per_rank for row in rows[step * local : (step + 1) * local]]


def test_an_epoch_from_s3_is_read_exactly_once_by_two_ranks_then_three_after_a_resume(dataset, s3_env, tmp_path):
    data_uri, tok_uri = dataset
    tok = load_tokenizer(tok_uri, s3_env)
    shards = ShardSet.open(f"{data_uri}/train", s3_env, expected_fingerprint=tok.fingerprint)
    everything = shards.read_tokens(0, shards.num_tokens)
    # The stream holds the kept documents in corpus order, each followed by EOS.
    first_doc = everything[: int(np.argmax(everything == tok.eos_id))]
    assert tok.tokenizer.decode(first_doc.tolist()) in {d["text"] for d in load_bundled_documents()}

    num_samples = (shards.num_tokens - SEQ - 1) // SEQ + 1
    steps = -(-num_samples // 6)  # the epoch, and the start of the next in the last batch
    cache = str(tmp_path / "cache")
    two = _global_order(_stream(shards, world_size=2, start=0, steps=steps // 3, cache_dir=cache), 6)
    three = _global_order(_stream(shards, world_size=3, start=6 * (steps // 3), steps=steps - steps // 3), 6)
    got = [bytes(r) for r in (two + three)[:num_samples]]
    order = BlockShuffledOrder(num_samples, 3, BLOCK_SAMPLES, WINDOW_BLOCKS).samples(0, num_samples)
    expected = [bytes(everything[s * SEQ : s * SEQ + SEQ + 1].astype(np.int64)) for s in order]
    assert got == expected, "the 2-rank run and the 3-rank resume read the global order, position by position"
    assert sorted(order.tolist()) == list(range(num_samples)), "which holds every sample of the epoch once"


def test_local_ranks_share_one_download_per_chunk(dataset, s3_env, faulty_s3, tmp_path):
    """Two rank processes of one pod read through a counting proxy: each chunk is fetched from S3 once."""
    data_uri, _ = dataset
    via_proxy = dataclasses.replace(s3_env, endpoint_url=faulty_s3.url)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    args = dict(sequence_length=SEQ, causal=True, global_batch_size=8, world_size=2, seed=3, **BLOCK)
    args["cache_dir"] = str(tmp_path / "cache")
    procs = [
        ctx.Process(
            target=read_as_rank,
            args=(f"{data_uri}/train", via_proxy, {**args, "rank": r, "local_rank": r}, 12, results),
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    chunks = list((tmp_path / "cache").glob("*.chunk"))
    gets = [r for r in faulty_s3.requests if r.method == "GET" and r.path.endswith(".bin")]
    # 12 steps of 8 samples read two whole windows (6 blocks); read-ahead may fetch more, as the timing allows.
    assert len(gets) == len(chunks) == sum(fetches for _, _, fetches in got) >= 2 * WINDOW_BLOCKS
    expected = _stream(ShardSet.open(f"{data_uri}/train", s3_env), world_size=2, start=0, steps=12, batch=8)
    assert [rows for _, rows, _ in got] == [[bytes(r) for r in rows] for rows in expected]


def test_loader_rides_out_resets_throttling_and_short_bodies(dataset, s3_env, faulty_s3):
    data_uri, _ = dataset
    clean = ShardSet.open(f"{data_uri}/train", s3_env)
    expected = _stream(clean, world_size=1, start=0, steps=4)
    # Enough attempts that one request could absorb every fault: which request meets which fault depends on
    # how the download threads interleave.
    via_proxy = dataclasses.replace(s3_env, endpoint_url=faulty_s3.url, max_attempts=10)
    shards = ShardSet.open(f"{data_uri}/train", via_proxy)
    faulty_s3.reset_next(3, methods=["GET"], path_contains=".bin")
    faulty_s3.fail_next(3, status=503, code="SlowDown", methods=["GET"], path_contains=".bin")
    faulty_s3.truncate_next(2, methods=["GET"], path_contains=".bin")
    got = _stream(shards, world_size=1, start=0, steps=4)
    assert faulty_s3.faults_total == 8
    assert [bytes(r) for r in got[0]] == [bytes(r) for r in expected[0]]


def test_a_corrupted_object_in_the_bucket_stops_the_loader_naming_shard_and_offset(dataset, s3_env):
    data_uri, _ = dataset
    bucket, prefix = data_uri.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/train/shard-00001.bin"
    client = _client(s3_env)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[1500] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    shards = ShardSet.open(f"{data_uri}/train", s3_env)
    loader = StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=6, epochs=1, **BLOCK)
    with (
        loader,
        pytest.raises(ShardChecksumError, match=r"s3://.*shard-00001\.bin: page 1 \(bytes 1024-2048\) .*crc32"),
    ):
        for _ in loader:
            pass


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
