"""The global sample order: block-shuffled, a pure function of (seed, epoch, number of samples, block layout).

The N samples of a shard set are cut into blocks of `block_samples` consecutive samples (the last block may be
shorter). Epoch `e` permutes the blocks with a generator seeded by (seed, e), groups the permuted blocks into
windows of `window_blocks` blocks, and shuffles the samples of each window with a generator seeded by
(seed, e, window). Positions are consumed window after window.

What this guarantees:
- every epoch visits every sample exactly once;
- the order depends only on (seed, epoch, N, block_samples, window_blocks): not on the world size, the node
  count or anything a run accumulates, so the loader's state is `(seed, samples_consumed)` and resume is exact
  with any number of ranks;
- each block is read with one large request, and a window's blocks are all the data the consumer needs until
  the window ends, so reading ahead one window hides the storage latency.

What it does not give, next to a full permutation: samples of one block always land in the same window, so two
samples that are close in the corpus are at most `window_blocks * block_samples` positions apart; a window (and
so every batch drawn from it) holds samples of only `window_blocks` contiguous stretches of the corpus. With
blocks of 8 MiB and windows of 16 blocks, each batch mixes 16 random places in the corpus; documents that
cluster by source across many blocks still mix, clusters smaller than a block do not. Use more, smaller blocks
(or more blocks per window) when the corpus was not shuffled before `prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """Window `index` of `epoch`: global positions [start, stop), the blocks it reads."""

    epoch: int
    index: int
    start: int
    stop: int
    blocks: tuple[int, ...]


class BlockShuffledOrder:
    """Global position g (samples consumed by all ranks together) → sample index."""

    def __init__(
        self, num_samples: int, seed: int, block_samples: int, window_blocks: int, shuffle: bool = True
    ) -> None:
        if num_samples < 1:
            raise ValueError("the shard set holds no complete sample; use a shorter sequence or more data")
        if block_samples < 1 or window_blocks < 1:
            raise ValueError(f"block_samples ({block_samples}) and window_blocks ({window_blocks}) must be positive")
        self.num_samples = num_samples
        self.seed = seed
        self.block_samples = block_samples
        self.window_blocks = window_blocks
        self.shuffle = shuffle
        self.num_blocks = -(-num_samples // block_samples)
        self.num_windows = -(-self.num_blocks // window_blocks)
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._window_samples: dict[tuple[int, int], np.ndarray] = {}
        self._last: Window | None = None

    def block_range(self, block: int) -> tuple[int, int]:
        """Samples [first, stop) of a block."""
        first = block * self.block_samples
        return first, min(first + self.block_samples, self.num_samples)

    def _plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's block sequence and the start position (within the epoch) of every window, plus the end."""
        plan = self._plans.get(epoch)
        if plan is None:
            blocks = np.arange(self.num_blocks, dtype=np.int64)
            if self.shuffle:
                blocks = np.random.default_rng([self.seed, epoch]).permutation(blocks)
            sizes = np.full(self.num_blocks, self.block_samples, dtype=np.int64)
            sizes[blocks == self.num_blocks - 1] = self.num_samples - (self.num_blocks - 1) * self.block_samples
            per_window = np.add.reduceat(sizes, np.arange(0, self.num_blocks, self.window_blocks))
            plan = blocks, np.concatenate([[0], np.cumsum(per_window)])
            if len(self._plans) >= 2:  # only the current and the next epoch are ever asked for
                self._plans.pop(min(self._plans))
            self._plans[epoch] = plan
        return plan

    def window_at(self, position: int) -> Window:
        """The window that holds global position `position`."""
        epoch, offset = divmod(position, self.num_samples)
        blocks, starts = self._plan(epoch)
        index = int(np.searchsorted(starts, offset, side="right")) - 1
        base = epoch * self.num_samples
        chosen = blocks[index * self.window_blocks : (index + 1) * self.window_blocks]
        return Window(epoch, index, base + int(starts[index]), base + int(starts[index + 1]), tuple(chosen.tolist()))

    def windows(self, start: int, stop: int) -> list[Window]:
        """The windows that overlap positions [start, stop), in order."""
        out: list[Window] = []
        while start < stop:
            window = self.window_at(start)
            out.append(window)
            start = window.stop
        return out

    def _samples_of(self, window: Window) -> np.ndarray:
        key = (window.epoch, window.index)
        samples = self._window_samples.get(key)
        if samples is None:
            samples = np.concatenate([np.arange(*self.block_range(b), dtype=np.int64) for b in window.blocks])
            if self.shuffle:
                samples = np.random.default_rng([self.seed, window.epoch, window.index]).permutation(samples)
            if len(self._window_samples) >= 4:
                self._window_samples.pop(next(iter(self._window_samples)))
            self._window_samples[key] = samples
        return samples

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Sample indices at global positions [start, stop), across window and epoch boundaries."""
        last = self._last
        if last is not None and last.start <= start and stop <= last.stop:  # the usual case: one window, again
            return self._samples_of(last)[start - last.start : stop - last.start]
        parts = [np.empty(0, dtype=np.int64)]
        for window in self.windows(start, stop):
            self._last = window
            lo, hi = max(start, window.start), min(stop, window.stop)
            parts.append(self._samples_of(window)[lo - window.start : hi - window.start])
        return np.concatenate(parts)
