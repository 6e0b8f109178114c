"""Streaming loader: fixed-length samples from a shard set, in a block-shuffled global order, split across ranks.

Sample `s` is the token window [s*L, s*L + W) of the set's stream, where L is the sequence length and W is L
(masked LM) or L + 1 (causal LM: inputs and shifted labels from one window). The global order is
`BlockShuffledOrder` (data/order.py): blocks of whole samples, about `block_bytes` each, permuted per epoch,
samples shuffled within windows of `window_blocks` blocks. Global position `g` (samples consumed by all ranks
together) names the next sample, so the loader's whole state is `(seed, g)`: a restart, even with a different
number of ranks, continues at exactly the next sample.

Each step consumes one global batch of B samples, positions [g, g + B); rank r of R takes the contiguous slice
[g + r*B/R, g + (r+1)*B/R). Storage is read one block at a time: each block's token range is one ranged read
per shard it touches (page-aligned, every page's crc32 checked) into the node-local `ChunkCache`, which the
ranks of a pod share, so a block is downloaded once per node. A thread pool fetches the blocks of the windows
the next batch touches plus the window after them while the current batch trains; batches are cut from the
cached blocks with numpy, one fancy-index per block, no Python per sample.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pretrain_trainer import contract as c
from pretrain_trainer.data.chunk_cache import ChunkCache, private_cache_dir
from pretrain_trainer.data.order import BlockShuffledOrder
from pretrain_trainer.data.shards import ShardSet


def sample_count(num_tokens: int, sequence_length: int, causal: bool) -> int:
    """Samples a stream of `num_tokens` holds: windows of L (+1 for causal LM) tokens starting every L tokens."""
    window = sequence_length + 1 if causal else sequence_length
    return (num_tokens - window) // sequence_length + 1 if num_tokens >= window else 0


MiB = 1 << 20
DEFAULT_BLOCK_BYTES = 8 * MiB
DEFAULT_WINDOW_BLOCKS = 16
DEFAULT_CACHE_BYTES = 1024 * MiB


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
        local_rank: int = 0,
        seed: int = 0,
        samples_consumed: int = 0,
        shuffle: bool = True,
        epochs: int | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        window_blocks: int = DEFAULT_WINDOW_BLOCKS,
        cache_dir: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
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
        sample_bytes = sequence_length * shards.dtype.itemsize
        self.order = BlockShuffledOrder(
            num_samples, seed, max(1, block_bytes // sample_bytes), window_blocks, shuffle=shuffle
        )
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.rank = rank
        self.local_rank = local_rank
        self.world_size = world_size
        self.samples_consumed = samples_consumed
        self.end = None if epochs is None else epochs * num_samples
        self._check_cache_bound(cache_bytes)
        self._own_cache_dir = None
        if cache_dir is None and not os.environ.get(c.PRETRAIN_DATA_CACHE_DIR):
            cache_dir = self._own_cache_dir = private_cache_dir()
        self.cache = ChunkCache(cache_dir or os.environ[c.PRETRAIN_DATA_CACHE_DIR], cache_bytes)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"loader-r{rank}")
        self._blocks: dict[int, Future[np.ndarray]] = {}
        self._covered = (0, -1)  # positions whose windows _schedule has submitted (an empty range at first)
        self.wait_seconds = 0.0
        """Time the consumer spent blocked on data: near zero when prefetch keeps ahead of compute."""
        self._schedule()

    @property
    def num_samples(self) -> int:
        return self.order.num_samples

    def state(self) -> LoaderState:
        return LoaderState(self.order.seed, self.samples_consumed)

    def _block_bytes(self) -> int:
        """Bytes a block takes in the cache at most: its tokens, widened to whole pages at both ends."""
        samples = min(self.order.block_samples, self.order.num_samples)
        tokens = (samples - 1) * self.sequence_length + self.window
        return tokens * self.shards.dtype.itemsize + 2 * self.shards.index.page_bytes

    def _check_cache_bound(self, cache_bytes: int) -> None:
        # Read-ahead holds the windows one global batch overlaps, plus the next one (see _schedule).
        window_samples = self.order.block_samples * self.order.window_blocks
        windows = -(-self.global_batch_size // window_samples) + 2
        need = min(windows * self.order.window_blocks, self.order.num_blocks) * self._block_bytes()
        if cache_bytes < need:
            raise ValueError(
                f"spec.data.cacheMib: {cache_bytes / MiB:.0f} MiB cannot hold the {windows} windows of "
                f"{self.order.window_blocks} blocks that read-ahead keeps ({need / MiB:.0f} MiB); raise cacheMib "
                "or lower blockMib or shuffleWindowBlocks"
            )

    def _fetch_block(self, block: int) -> np.ndarray:
        """The block's samples as rows [samples, W] (a view of the node cache, downloaded and verified on a miss)."""
        first, stop = self.order.block_range(block)
        tokens = self.shards.locate(first * self.sequence_length, (stop - 1) * self.sequence_length + self.window)
        parts = []
        for i, lo, hi in tokens:
            start, end = self.shards.page_span(i, lo, hi)
            key = f"{self.shards.index.shards[i].sha256[:32]}-{start}-{end}"
            chunk = self.cache.get(key, end - start, lambda i=i, s=start, e=end: self.shards.read_pages(i, s, e))
            skip = lo - start // self.shards.dtype.itemsize
            parts.append(np.frombuffer(chunk, dtype=self.shards.dtype)[skip : skip + hi - lo])
        tokens = parts[0] if len(parts) == 1 else np.concatenate(parts)
        # Row k is sample first + k: a strided view, so a batch copies whole rows out of it.
        return np.lib.stride_tricks.sliding_window_view(tokens, self.window)[:: self.sequence_length]

    def _schedule(self) -> None:
        """Fetch the blocks of the windows the next batch touches and of the window after; forget the rest."""
        start = self.samples_consumed
        stop = start + self.global_batch_size
        if self.end is not None:
            stop = min(stop, self.end)
        if self._covered[0] <= start and stop <= self._covered[1]:
            return  # the same windows as for the last batch: nothing to add or drop
        windows = self.order.windows(start, stop) if start < stop else []
        if windows:
            self._covered = (windows[0].start, windows[-1].stop)
            if self.end is None or windows[-1].stop < self.end:
                windows.append(self.order.window_at(windows[-1].stop))
        live = [b for w in windows for b in w.blocks]
        for block in set(self._blocks) - set(live):
            self._blocks.pop(block).cancel()
        # Ranks of one node start at different blocks, so their downloads spread instead of queueing on one lock.
        shift = self.local_rank % len(live) if live else 0
        for block in live[shift:] + live[:shift]:
            if block not in self._blocks:
                self._blocks[block] = self._pool.submit(self._fetch_block, block)

    def _forget_failed(self) -> None:
        """After a failed fetch: drop every fetch not known to have succeeded (those still running may fail the
        same way), so that the next batch fetches those blocks again."""
        for block, future in list(self._blocks.items()):
            if not future.done() or future.cancelled() or future.exception() is not None:
                future.cancel()
                del self._blocks[block]
        self._covered = (0, -1)

    def __iter__(self) -> StreamingLoader:
        return self

    def __next__(self) -> np.ndarray:
        if self.end is not None and self.samples_consumed + self.global_batch_size > self.end:
            raise StopIteration
        self._schedule()
        lo = self.samples_consumed + self.rank * self.local_batch_size
        samples = self.order.samples(lo, lo + self.local_batch_size)
        blocks = samples // self.order.block_samples
        batch = np.empty((len(samples), self.window), dtype=np.int64)
        by_block = np.argsort(blocks, kind="stable")
        cuts = np.flatnonzero(np.diff(blocks[by_block])) + 1
        for rows in np.split(by_block, cuts):  # the rows of each block the batch draws from
            block = int(blocks[rows[0]])
            future = self._blocks[block]
            waited = time.perf_counter()
            try:
                tokens = future.result()  # a read error surfaces here; the position stays put
            except BaseException:
                self._forget_failed()
                raise
            finally:
                self.wait_seconds += time.perf_counter() - waited
            batch[rows] = tokens[samples[rows] - block * self.order.block_samples]  # widened to int64 here
        self.samples_consumed += self.global_batch_size
        self._schedule()
        return batch

    def close(self) -> None:
        for future in self._blocks.values():
            future.cancel()
        self._blocks.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._own_cache_dir is not None:
            shutil.rmtree(self._own_cache_dir, ignore_errors=True)

    def __enter__(self) -> StreamingLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
