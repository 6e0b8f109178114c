import numpy as np
import pytest

from pretrain_trainer.data.order import BlockShuffledOrder


def test_every_epoch_visits_every_sample_once_with_a_short_last_block():
    order = BlockShuffledOrder(103, seed=5, block_samples=10, window_blocks=4)  # 11 blocks, the last of 3
    assert order.num_blocks == 11 and order.num_windows == 3
    for epoch in range(3):
        assert sorted(order.samples(epoch * 103, (epoch + 1) * 103).tolist()) == list(range(103))


def test_the_order_is_a_pure_function_of_seed_epoch_and_layout():
    a = BlockShuffledOrder(500, seed=9, block_samples=16, window_blocks=3)
    b = BlockShuffledOrder(500, seed=9, block_samples=16, window_blocks=3)
    # Asked in a different sequence of calls, from a fresh instance: the same positions give the same samples.
    assert b.samples(700, 900).tolist() == a.samples(0, 1000)[700:900].tolist()
    assert a.samples(0, 1000).tolist() == b.samples(0, 1000).tolist()


def test_a_window_holds_the_samples_of_its_blocks_only_shuffled_among_them():
    order = BlockShuffledOrder(1000, seed=1, block_samples=10, window_blocks=5)
    for window in order.windows(0, 1000):
        samples = order.samples(window.start, window.stop)
        expected = sorted(s for b in window.blocks for s in range(*order.block_range(b)))
        assert sorted(samples.tolist()) == expected
        assert samples.tolist() != expected, "shuffled within the window"
    blocks = [b for w in order.windows(0, 1000) for b in w.blocks]
    assert sorted(blocks) == list(range(100)) and blocks != list(range(100)), "blocks are permuted"


def test_epochs_and_seeds_give_different_orders():
    order = BlockShuffledOrder(400, seed=2, block_samples=8, window_blocks=4)
    assert order.samples(0, 400).tolist() != order.samples(400, 800).tolist()
    other = BlockShuffledOrder(400, seed=3, block_samples=8, window_blocks=4)
    assert order.samples(0, 400).tolist() != other.samples(0, 400).tolist()


def test_without_shuffle_the_order_is_the_stream_order():
    order = BlockShuffledOrder(95, seed=4, block_samples=10, window_blocks=3, shuffle=False)
    np.testing.assert_array_equal(order.samples(0, 190), np.arange(190) % 95)


def test_an_empty_set_is_refused():
    with pytest.raises(ValueError, match="no complete sample"):
        BlockShuffledOrder(0, seed=0, block_samples=4, window_blocks=2)
