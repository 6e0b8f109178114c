import json

import numpy as np
import pytest

from pretrain_trainer.data.shards import (
    INDEX_NAME,
    ShardChecksumError,
    ShardError,
    ShardSet,
    ShardTruncatedError,
    TokenizerMismatchError,
    dtype_for_vocab,
)
from pretrain_trainer.storage import open_store
from tests.support.data import counting_shards


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "set"))


def test_reads_any_window_across_shard_and_page_boundaries(store):
    index = counting_shards(store, num_tokens=5000, shard_tokens=1000)
    assert len(index.shards) == 5 and index.num_tokens == 5000 and index.num_documents == 50
    shards = ShardSet.open(store.uri)
    for start, end in [(0, 1), (0, 5000), (990, 1010), (127, 129), (1999, 3001), (4999, 5000), (10, 10)]:
        np.testing.assert_array_equal(shards.read_tokens(start, end), np.arange(start, end))
    with pytest.raises(IndexError):
        shards.read_tokens(4990, 5001)


def test_vocab_size_chooses_uint16_or_uint32():
    assert dtype_for_vocab(65536) == "uint16"
    assert dtype_for_vocab(65537) == "uint32"


def test_large_vocab_shards_are_uint32_and_read_back_exactly(store):
    index = counting_shards(store, num_tokens=300, shard_tokens=1000, vocab_size=200_000)
    assert index.dtype == "uint32"
    assert store.size("shard-00000.bin") == 300 * 4
    np.testing.assert_array_equal(ShardSet.open(store.uri).read_tokens(0, 300), np.arange(300))


def test_index_records_counts_checksums_and_document_boundaries(store):
    counting_shards(store, num_tokens=1050, shard_tokens=500)
    body = json.loads(store.read(INDEX_NAME))
    assert body["num_tokens"] == 1050 and body["dtype"] == "uint16" and body["format"] == "pretrain-shards/1"
    first = body["shards"][0]
    assert first["num_tokens"] == 500 and first["num_documents"] == 5 and len(first["sha256"]) == 64
    shards = ShardSet.open(store.uri)
    np.testing.assert_array_equal(shards.document_ends(0), [100, 200, 300, 400, 500])
    np.testing.assert_array_equal(shards.document_ends(2), [50])
    shards.verify()


def test_a_flipped_byte_fails_the_page_checksum_on_read(store, tmp_path):
    counting_shards(store, num_tokens=2000, shard_tokens=1000)
    path = tmp_path / "set" / "shard-00001.bin"
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF  # page 2 of shard 1 with 256-byte pages
    path.write_bytes(bytes(data))
    shards = ShardSet.open(store.uri)
    np.testing.assert_array_equal(shards.read_tokens(1000, 1100), np.arange(1000, 1100))  # pages 0-1: intact
    with pytest.raises(ShardChecksumError, match=r"shard-00001\.bin: page 2 .*crc32.*corrupt.*prepare"):
        shards.read_tokens(1300, 1400)
    with pytest.raises(ShardChecksumError, match="sha256 differs"):
        shards.verify()


def test_a_truncated_shard_is_rejected_when_the_set_is_opened(store, tmp_path):
    counting_shards(store, num_tokens=2000, shard_tokens=1000)
    path = tmp_path / "set" / "shard-00001.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ShardTruncatedError, match=r"shard-00001\.bin: 1990 bytes, index\.json says 2000"):
        ShardSet.open(store.uri)


def test_a_missing_sidecar_is_rejected_when_the_set_is_opened(store, tmp_path):
    counting_shards(store, num_tokens=2000, shard_tokens=1000)
    (tmp_path / "set" / "shard-00000.crc").unlink()
    with pytest.raises(ShardTruncatedError, match=r"shard-00000\.crc: missing, but index\.json lists it"):
        ShardSet.open(store.uri)


def test_a_corrupt_checksum_table_is_caught_by_its_sha256(store, tmp_path):
    counting_shards(store, num_tokens=2000, shard_tokens=1000)
    path = tmp_path / "set" / "shard-00000.crc"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ShardChecksumError, match=r"shard-00000\.crc: sha256 differs"):
        ShardSet.open(store.uri).read_tokens(0, 10)


def test_shards_from_another_tokenizer_are_refused(store):
    counting_shards(store, num_tokens=500, shard_tokens=1000)
    with pytest.raises(TokenizerMismatchError, match=r"made with tokenizer ffffffffffff.*job uses tokenizer 0123"):
        ShardSet.open(store.uri, expected_fingerprint="0123" * 16)
    ShardSet.open(store.uri, expected_fingerprint="f" * 64)


def test_a_folder_without_index_says_to_run_prepare(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match=r"index\.json: no shard index.*prepare"):
        ShardSet.open(str(tmp_path / "empty"))


def test_an_index_of_another_format_is_refused(store):
    store.write(INDEX_NAME, b'{"format": "something-else/9"}')
    with pytest.raises(ShardError, match="format 'something-else/9' is not 'pretrain-shards/1'"):
        ShardSet.open(store.uri)
