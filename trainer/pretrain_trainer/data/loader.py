"""Streaming loader: fixed-length samples from a shard set, in a seeded global order, split across ranks.

Sample `s` is the token window [s*L, s*L + W) of the set's stream, where L is the sequence length and W is L
(masked LM) or L + 1 (causal LM: inputs and shifted labels from one window). Epoch `e` visits every sample
once, in the order `permutation(seed, e)`. Global position `g` (samples consumed by all ranks together) names
the next sample, so the loader's whole state is `(seed, g)`: a restart, even with a different number of ranks,
continues at exactly the next sample.

Each step consumes one global batch of B samples, positions [g, g + B); rank r of R takes the contiguous slice
[g + r*B/R, g + (r+1)*B/R). A thread pool fetches the samples of the next `prefetch` batches while the current
one is being trained on; every page read is checksum-verified by the shard set.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pretrain_trainer.data.shards import ShardSet


def sample_count(num_tokens: int, sequence_length: int, causal: bool) -> int:
    """Samples a stream of `num_tokens` holds: windows of L (+1 for causal LM) tokens starting every L tokens."""
    window = sequence_length + 1 if causal else sequence_length
    return (num_tokens - window) // sequence_length + 1 if num_tokens >= window else 0


class SampleOrder:
    """The global order: position g → sample index, one seeded permutation per epoch."""

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError("the shard set holds no complete sample; use a shorter sequence or more data")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = rng.permutation(self.num_samples)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Sample indices at global positions [start, stop), across epoch boundaries."""
        positions = np.arange(start, stop, dtype=np.int64)
        if not self.shuffle:
            return positions % self.num_samples
        out = np.empty(len(positions), dtype=np.int64)
        epochs = positions // self.num_samples
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self._permutation(int(epoch))[positions[mask] % self.num_samples]
        return out


@dataclass(frozen=True)
class LoaderState:
    """Everything needed to resume: the seed and the number of samples all ranks consumed together."""

    seed: int
    samples_consumed: int

    def as_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "samples_consumed": self.samples_consumed}


class StreamingLoader:
    """Iterates over this rank's part of successive global batches, as int64 arrays [B/R, W].

    `epochs=None` loops forever (training); `epochs=1, shuffle=False` reads the set once in order
    (validation), dropping a last global batch that would be incomplete.
    """

    def __init__(
        self,
        shards: ShardSet,
        *,
        sequence_length: int,
        causal: bool,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        samples_consumed: int = 0,
        shuffle: bool = True,
        epochs: int | None = None,
        prefetch: int = 2,
        threads: int = 8,
    ) -> None:
        if sequence_length < 1:
            raise ValueError(f"sequence_length: must be positive, got {sequence_length}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if global_batch_size < 1 or global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size: {global_batch_size} samples cannot be split evenly over {world_size} "
                f"ranks; use a multiple of {world_size}"
            )
        if samples_consumed % global_batch_size:
            raise ValueError(
                f"samples_consumed: {samples_consumed} is not a whole number of global batches of "
                f"{global_batch_size}; resume needs the global batch size the state was saved with"
            )
        self.shards = shards
        self.sequence_length = sequence_length
        self.window = sequence_length + 1 if causal else sequence_length
        num_samples = sample_count(shards.num_tokens, sequence_length, causal)
        self.order = SampleOrder(num_samples, seed, shuffle)
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.rank = rank
        self.world_size = world_size
        self.samples_consumed = samples_consumed
        self.end = None if epochs is None else epochs * num_samples
        self.prefetch = max(0, prefetch)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"loader-r{rank}")
        self._pending: deque[tuple[int, list[Future[np.ndarray]]]] = deque()
        self._next_submit = samples_consumed
        self.wait_seconds = 0.0
        """Time the consumer spent blocked on data: near zero when prefetch keeps ahead of compute."""

    @property
    def num_samples(self) -> int:
        return self.order.num_samples

    def state(self) -> LoaderState:
        return LoaderState(self.order.seed, self.samples_consumed)

    def _read_sample(self, sample: int) -> np.ndarray:
        start = sample * self.sequence_length
        return self.shards.read_tokens(start, start + self.window)

    def _has_batch(self, position: int) -> bool:
        return self.end is None or position + self.global_batch_size <= self.end

    def _submit_ahead(self) -> None:
        while len(self._pending) <= self.prefetch and self._has_batch(self._next_submit):
            lo = self._next_submit + self.rank * self.local_batch_size
            samples = self.order.samples(lo, lo + self.local_batch_size)
            self._pending.append((self._next_submit, [self._pool.submit(self._read_sample, int(s)) for s in samples]))
            self._next_submit += self.global_batch_size

    def __iter__(self) -> StreamingLoader:
        return self

    def __next__(self) -> np.ndarray:
        self._submit_ahead()
        if not self._pending:
            raise StopIteration
        position, futures = self._pending.popleft()
        assert position == self.samples_consumed
        batch = np.empty((len(futures), self.window), dtype=np.int64)
        waited = time.perf_counter()
        for row, future in enumerate(futures):
            batch[row] = future.result()  # one copy, widening uint16/uint32 to int64 as it goes
        self.wait_seconds += time.perf_counter() - waited
        self.samples_consumed += self.global_batch_size
        self._submit_ahead()
        return batch

    def close(self) -> None:
        for _, futures in self._pending:
            for f in futures:
                f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> StreamingLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
