"""Builders for test data: tokenizers trained on the bundled corpus and shard sets with known contents."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.data.shards import ShardIndex, ShardWriter, TokenizerMeta
from pretrain_trainer.storage import ObjectStore, StorageOptions
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, train_tokenizer


@cache
def bundled_texts() -> tuple[str, ...]:
    return tuple(d["text"] for d in load_bundled_documents())


@cache
def trained(spec: TokenizerTrainingSpec) -> Tokenizer:
    """A tokenizer trained on the bundled corpus (cached: specs are frozen dataclasses)."""
    return train_tokenizer(bundled_texts(), spec)


def counting_shards(
    store: ObjectStore, num_tokens: int, shard_tokens: int, vocab_size: int = 1 << 16, page_bytes: int = 256
) -> ShardIndex:
    """A shard set whose token at stream position i is i % vocab_size: any window read back proves where
    it came from. Documents are 100 tokens long."""
    meta = TokenizerMeta(fingerprint="f" * 64, vocab_size=vocab_size, eos_token="<eos>", eos_id=0)
    writer = ShardWriter(store, meta, shard_tokens=shard_tokens, page_bytes=page_bytes)
    dtype = np.uint16 if vocab_size <= 1 << 16 else np.uint32
    for start in range(0, num_tokens, 100):
        writer.add_document((np.arange(start, min(start + 100, num_tokens)) % vocab_size).astype(dtype))
    return writer.close()


def read_as_rank(
    uri: str, options: StorageOptions | None, loader_args: dict[str, Any], steps: int, results: Any
) -> None:
    """One rank in its own process (a multiprocessing target): read `steps` batches from the shard set at `uri`
    with StreamingLoader(**loader_args); put (rank, rows as bytes, chunks this process downloaded) on `results`."""
    from pretrain_trainer.data.loader import StreamingLoader
    from pretrain_trainer.data.shards import ShardSet

    with StreamingLoader(ShardSet.open(uri, options), **loader_args) as loader:
        rows = [bytes(row) for _, batch in zip(range(steps), loader, strict=False) for row in batch]
    results.put((loader.rank, rows, loader.cache.fetches))  # after close: read-ahead downloads count too
