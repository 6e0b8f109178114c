"""A deterministic, bounded sample of a corpus, for training a tokenizer without the whole corpus in one process.

    pretrainjob tokenizer train --input s3://b/corpus/ --sample-bytes 2e9 ...         # one process
    pretrainjob tokenizer sample --input s3://b/corpus/ --bytes 2e9 --output s3://b/sample/ --tasks 8   # per pod
    pretrainjob tokenizer train --input s3://b/sample/ ...

A document is in the sample when a salted hash of its text falls below `budget / corpus bytes`: the choice depends
on the document alone, so the sample is the same whatever the order, the task count or the machine, spreads evenly
over every file, and holds about `budget` bytes (the corpus size comes from the listing, without reading it).
Tasks write one `sample-IIIIII.jsonl` per input file (its global index), so the sample's document order is the
corpus order however many tasks made it; each object is written atomically, so a re-run task simply rewrites it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence

from pretrain_trainer.data.readers import Document, ReadOptions, expand_inputs, input_bytes, read_documents
from pretrain_trainer.data.scatter import assign_files
from pretrain_trainer.storage import StorageOptions, open_store

# A salt of its own: the sample must not line up with prepare's validation split, which hashes the same texts.
_SALT = b"tokenizer-sample"


def sample_fraction(total_bytes: int, budget_bytes: float) -> float:
    if budget_bytes <= 0:
        raise ValueError(f"--sample-bytes: must be positive, got {budget_bytes:g}")
    return min(1.0, budget_bytes / total_bytes) if total_bytes else 1.0


def in_sample(text: str, fraction: float) -> bool:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=_SALT).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def sampled_documents(
    patterns: Sequence[str],
    budget_bytes: float,
    read: ReadOptions | None = None,
    storage: StorageOptions | None = None,
    flag: str = "--input",
) -> Iterator[Document]:
    """The sample's documents in corpus order (one process)."""
    files = expand_inputs(patterns, flag, storage)
    fraction = sample_fraction(input_bytes(files, storage), budget_bytes)
    return (d for d in read_documents(files, read, storage) if in_sample(d.text, fraction))


def write_sample_task(
    patterns: Sequence[str],
    budget_bytes: float,
    output: str,
    tasks: int = 1,
    index: int = 0,
    read: ReadOptions | None = None,
    storage: StorageOptions | None = None,
) -> tuple[int, int]:
    """Write task `index`'s share of the sample under `output`; returns (documents, bytes) written."""
    if not 0 <= index < tasks:
        raise ValueError(f"--task-index: must be in [0, {tasks}) for --tasks {tasks}, got {index}")
    files = expand_inputs(patterns, "--input", storage)
    sizes = [input_bytes([f], storage) for f in files]
    fraction = sample_fraction(sum(sizes), budget_bytes)
    out = open_store(output, storage)
    documents = written = 0
    for i in assign_files(sizes, tasks)[index]:
        lines = [
            json.dumps({"text": d.text, "source": d.source}, ensure_ascii=False)
            for d in read_documents([files[i]], read, storage)
            if in_sample(d.text, fraction)
        ]
        body = "".join(line + "\n" for line in lines).encode()
        out.write(f"sample-{i:06d}.jsonl", body)
        documents += len(lines)
        written += len(body)
    return documents, written
