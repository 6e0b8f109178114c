import threading

import numpy as np
import pytest

from pretrain_trainer.data.loader import SampleOrder, StreamingLoader
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.storage import open_store
from tests.support.data import counting_shards

SEQ = 16


@pytest.fixture
def shards(tmp_path):
    store = open_store(str(tmp_path / "set"))
    counting_shards(store, num_tokens=SEQ * 60 + 1, shard_tokens=200)  # exactly 60 causal samples
    return ShardSet.open(store.uri)


def _sample_ids(batch: np.ndarray) -> list[int]:
    # Token at stream position p is p, so a window starting at s*SEQ identifies sample s.
    assert (batch[:, 1:] - batch[:, :-1] == 1).all(), "windows are contiguous token runs"
    return [int(row[0]) // SEQ for row in batch]


def _read(shards, world_size, start, steps, **kw):
    """Per global batch, the samples each rank got, in rank order."""
    loaders = [
        StreamingLoader(
            shards,
            sequence_length=SEQ,
            causal=True,
            global_batch_size=6,
            rank=r,
            world_size=world_size,
            seed=7,
            samples_consumed=start,
            **kw,
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
    order = SampleOrder(60, seed=7).samples(0, 60).tolist()
    assert [s for batch in first + second for rank in batch for s in rank] == order


def test_the_global_order_is_the_same_for_any_world_size(shards):
    one, _ = _read(shards, world_size=1, start=0, steps=5)
    three, _ = _read(shards, world_size=3, start=0, steps=5)
    assert [[s for rank in b for s in rank] for b in one] == [[s for rank in b for s in rank] for b in three]


def test_a_new_epoch_is_a_new_permutation_of_all_samples(shards):
    batches, _ = _read(shards, world_size=2, start=0, steps=20)
    flat = [s for batch in batches for rank in batch for s in rank]
    epoch0, epoch1 = flat[:60], flat[60:]
    assert sorted(epoch0) == sorted(epoch1) == list(range(60))
    assert epoch0 != epoch1


def test_different_seeds_give_different_orders():
    assert SampleOrder(100, 1).samples(0, 100).tolist() != SampleOrder(100, 2).samples(0, 100).tolist()


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


def test_prefetch_reads_ahead_in_background_threads(shards):
    threads: set[str] = set()
    read = shards.read_tokens

    def spy(start, end):
        threads.add(threading.current_thread().name)
        return read(start, end)

    shards.read_tokens = spy
    with StreamingLoader(
        shards, sequence_length=SEQ, causal=True, global_batch_size=4, prefetch=3, threads=4
    ) as loader:
        next(loader)
        assert len(loader._pending) == 4, "the next `prefetch`+1 batches are already requested"
    assert threads and all(t.startswith("loader-r0") for t in threads)


def test_a_read_error_surfaces_in_the_training_loop_and_keeps_the_position(shards):
    def broken(start, end):
        raise OSError("disk on fire")

    shards.read_tokens = broken
    loader = StreamingLoader(shards, sequence_length=SEQ, causal=True, global_batch_size=4)
    with pytest.raises(OSError, match="disk on fire"):
        next(loader)
    assert loader.state().samples_consumed == 0
    loader.close()
