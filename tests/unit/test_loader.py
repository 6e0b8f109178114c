import threading

import numpy as np
import pytest

from pretrain_trainer.data.loader import StreamingLoader
from pretrain_trainer.data.order import BlockShuffledOrder
from pretrain_trainer.data.shards import ShardChecksumError, ShardSet
from pretrain_trainer.storage import open_store
from tests.support.data import counting_shards

SEQ = 16
# Blocks of 4 samples (16 uint16 tokens each), windows of 3 blocks: 60 samples make 15 blocks in 5 windows,
# so the tests cross block, window, shard (200 tokens) and epoch boundaries.
BLOCK = dict(block_bytes=4 * SEQ * 2, window_blocks=3)


@pytest.fixture
def shards(tmp_path):
    store = open_store(str(tmp_path / "set"))
    counting_shards(store, num_tokens=SEQ * 60 + 1, shard_tokens=200)  # exactly 60 causal samples
    return ShardSet.open(store.uri)


def _sample_ids(batch: np.ndarray) -> list[int]:
    # Token at stream position p is p, so a window starting at s*SEQ identifies sample s.
    assert (batch[:, 1:] - batch[:, :-1] == 1).all(), "windows are contiguous token runs"
    return [int(row[0]) // SEQ for row in batch]


def _read(shards, world_size, start, steps, global_batch_size=6, **kw):
    """Per global batch, the samples each rank got, in rank order."""
    loaders = [
        StreamingLoader(
            shards,
            sequence_length=SEQ,
            causal=True,
            global_batch_size=global_batch_size,
            rank=r,
            world_size=world_size,
            seed=7,
            samples_consumed=start,
            **{**BLOCK, **kw},
        )
        for r in range(world_size)
    ]
    batches = []
    for _ in range(steps):
        batches.append([_sample_ids(next(loader)) for loader in loaders])
    state = loaders[0].state()
    for loader in loaders:
        loader.close()
    return batches, state


def test_causal_samples_are_sequence_plus_one_tokens_and_mlm_samples_sequence_tokens(shards):
    with StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=4) as loader:
        assert next(loader).shape == (4, SEQ + 1) and loader.num_samples == 60
    with StreamingLoader(shards, sequence_length=SEQ, causal=False, global_batch_size=4) as loader:
        assert next(loader).shape == (4, SEQ) and loader.num_samples == 60


def test_resume_with_three_ranks_after_two_sees_every_sample_exactly_once(shards):
    first, state = _read(shards, world_size=2, start=0, steps=4)
    assert state.samples_consumed == 24 and state.seed == 7
    second, _ = _read(shards, world_size=3, start=state.samples_consumed, steps=6)
    seen = [s for batch in first + second for rank in batch for s in rank]
    assert len(seen) == 60 and sorted(seen) == list(range(60))
    # Each rank's part is a contiguous slice of the one global order, whatever the world size.
    order = BlockShuffledOrder(60, seed=7, block_samples=4, window_blocks=3).samples(0, 60).tolist()
    assert [s for batch in first + second for rank in batch for s in rank] == order


def test_the_global_order_is_the_same_for_one_two_and_four_ranks(shards):
    def flat(world_size):
        batches, _ = _read(shards, world_size=world_size, start=0, steps=10, global_batch_size=8)
        return [s for b in batches for rank in b for s in rank]

    one = flat(1)
    assert flat(2) == one and flat(4) == one
    assert sorted(one[:60]) == list(range(60))


def test_a_new_epoch_is_a_new_permutation_of_all_samples(shards):
    batches, _ = _read(shards, world_size=2, start=0, steps=20)
    flat = [s for batch in batches for rank in batch for s in rank]
    epoch0, epoch1 = flat[:60], flat[60:]
    assert sorted(epoch0) == sorted(epoch1) == list(range(60))
    assert epoch0 != epoch1


def test_validation_mode_reads_once_in_order_and_stops(shards):
    with StreamingLoader(
        shards, sequence_length=SEQ, causal=True, global_batch_size=8, shuffle=False, epochs=1
    ) as loader:
        ids = [s for batch in loader for s in _sample_ids(batch)]
    assert ids == list(range(56))  # 7 full global batches; the incomplete eighth is dropped


def test_uneven_global_batch_is_refused_with_the_fix(shards):
    with pytest.raises(ValueError, match="6 samples cannot be split evenly over 4 ranks; use a multiple of 4"):
        StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=6, rank=0, world_size=4)


def test_resuming_mid_batch_is_refused(shards):
    with pytest.raises(ValueError, match="samples_consumed: 5 is not a whole number of global batches of 6"):
        StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=6, samples_consumed=5)


def test_a_sequence_longer_than_the_data_is_refused(shards):
    with pytest.raises(ValueError, match="no complete sample"):
        StreamingLoader(shards, sequence_length=10_000, causal=True, global_batch_size=1)


def test_the_next_window_is_fetched_in_background_threads_while_the_current_one_trains(shards):
    threads: set[str] = set()
    read = shards.read_pages

    def spy(i, start, end):
        threads.add(threading.current_thread().name)
        return read(i, start, end)

    shards.read_pages = spy
    with StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=4, seed=7, **BLOCK) as loader:
        next(loader)
        current = loader.order.window_at(0)
        following = loader.order.window_at(current.stop)
        assert set(current.blocks) | set(following.blocks) <= set(loader._blocks)
        for block in following.blocks:
            loader._blocks[block].result()
    assert threads and all(t.startswith("loader-r0") for t in threads)


def test_a_read_error_surfaces_in_the_training_loop_and_keeps_the_position(shards):
    def broken(i, start, end):
        raise OSError("disk on fire")

    read = shards.read_pages
    shards.read_pages = broken
    loader = StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=4, **BLOCK)
    with pytest.raises(OSError, match="disk on fire"):
        next(loader)
    assert loader.state().samples_consumed == 0
    shards.read_pages = read
    epoch = [s for _ in range(15) for s in _sample_ids(next(loader))]
    assert epoch == loader.order.samples(0, 60).tolist(), "the failed blocks are fetched again"
    loader.close()


def test_batches_come_from_large_reads_one_per_block_and_shard(tmp_path):
    store = open_store(str(tmp_path / "set"))
    counting_shards(store, num_tokens=SEQ * 600 + 1, shard_tokens=100_000)  # one shard, 600 samples
    shards = ShardSet.open(store.uri)
    reads = []
    read = shards.read_pages
    shards.read_pages = lambda i, start, end: reads.append(end - start) or read(i, start, end)
    with StreamingLoader(
        shards, sequence_length=SEQ, causal=True, global_batch_size=50, epochs=1, block_bytes=100 * SEQ * 2
    ) as loader:
        seen = [s for batch in loader for s in _sample_ids(batch)]
    assert sorted(seen) == list(range(600))
    assert len(reads) == 6, "6 blocks of 100 samples, each one ranged read"
    assert min(reads) >= 100 * SEQ * 2


def test_a_corrupted_chunk_stops_the_loader_naming_the_shard_and_offset(tmp_path):
    store = open_store(str(tmp_path / "set"))
    counting_shards(store, num_tokens=SEQ * 60 + 1, shard_tokens=200)
    path = tmp_path / "set" / "shard-00002.bin"
    data = bytearray(path.read_bytes())
    data[300] ^= 0x01
    path.write_bytes(bytes(data))
    shards = ShardSet.open(store.uri)
    loader = StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=60, **BLOCK)
    with loader, pytest.raises(ShardChecksumError, match=r"shard-00002\.bin: page 1 \(bytes 256-400\) fails its crc32"):
        next(loader)


def test_a_cache_too_small_for_the_read_ahead_is_refused_with_the_fix(shards):
    with pytest.raises(ValueError, match=r"spec\.data\.cacheMib: .* raise cacheMib or lower blockMib"):
        StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=4, cache_bytes=1000, **BLOCK)


def test_the_cache_never_exceeds_its_bound_over_an_epoch_and_more(tmp_path):
    store = open_store(str(tmp_path / "set"))
    counting_shards(store, num_tokens=SEQ * 300 + 1, shard_tokens=2000)  # 300 samples: 75 blocks, 25 windows
    shards = ShardSet.open(store.uri)
    bound = 3 * 3 * (4 * SEQ * 2 + 2 + 2 * 256)  # three windows of three blocks, the smallest bound accepted
    assert bound < shards.num_tokens * 2, "the set does not fit the cache"
    with StreamingLoader(
        shards,
        sequence_length=SEQ,
        causal=True,
        global_batch_size=4,
        cache_dir=str(tmp_path / "cache"),
        cache_bytes=bound,
        seed=3,
        **BLOCK,
    ) as loader:
        seen = []
        for _ in range(100):  # an epoch and a third
            seen += _sample_ids(next(loader))
            assert loader.cache.used_bytes() <= bound
    assert sorted(seen[:300]) == list(range(300)) and len(set(seen[300:])) == 100
    assert loader.cache.fetches > 75, "blocks of the first epoch were evicted and fetched again in the second"
