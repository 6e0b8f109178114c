"""`prepare` over many processes or pods: N tasks each write a part, one merge writes the shard sets.

    pretrainjob prepare --tasks 8 --task-index 3 --tokenizer ... --input s3://b/corpus/ --output s3://b/data/
    pretrainjob prepare merge --output s3://b/data/

The merged output is byte-identical to a single-process `prepare` of the same inputs and settings:

- **Deterministic parts.** Input files (sorted) are dealt to tasks by size (largest first to the least loaded task,
  ties to the lower index), so every task computes the same assignment on its own. Parallelism is per file.
- **Tasks decide what one document decides alone** (empty, language, redaction, quality), and record per document
  its text hash, that decision, its MinHash signature (with `--near-dedup`) and its tokens. A document whose exact
  copy came earlier in the same task is marked a duplicate without being tokenized: that copy is earlier globally too.
- **The merge decides what needs the whole corpus**, in global document order with the same code and order as a
  single process: exact duplicates (first copy wins), near duplicates (the LSH index of kept documents, fed the stored
  signatures), `--min-tokens`, the validation split; then it writes the kept tokens through the same ShardWriter,
  so shard boundaries, offsets and checksums come out as one process makes them. This is datatrove's MinHash pipeline
  (signatures, then a reduction, then filtering) with the reduction and the filtering folded into the merge.
- **Idempotent tasks.** A task's objects live under `OUTPUT/parts/N-tasks/task-IIIII/`; each is written atomically
  and `done.json` (listing them with sizes and sha256) last. A re-run first removes its `done.json`, then rewrites
  the same objects. The merge reads only completed parts, verifies every object against `done.json`, and refuses a
  set with missing parts, parts of runs with different task counts or settings, or a file claimed twice, naming them.
  After the index is written it deletes the parts (unless `keep_parts`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from pretrain_trainer.curation.filters import CurationFilter
from pretrain_trainer.curation.neardup import NUM_PERM
from pretrain_trainer.data.prepare import (
    PrepareConfig,
    batches,
    check_output,
)
from pretrain_trainer.data.readers import Document, expand_inputs, input_bytes, read_documents
from pretrain_trainer.data.shards import DTYPES, TokenizerMeta, dtype_for_vocab
from pretrain_trainer.storage import ObjectStore, StorageOptions, open_store
from pretrain_trainer.tokenizer.load import document_encoder, load_tokenizer

PARTS = "parts"
DONE = "done.json"
PART_FORMAT = "pretrain-prepare-part/1"
EMPTY, DUPLICATE = "empty", "duplicate"


def part_prefix(tasks: int, index: int) -> str:
    return f"{PARTS}/{tasks}-tasks/task-{index:05d}"


def assign_files(sizes: list[int], tasks: int) -> list[list[int]]:
    """File indices per task: largest file first to the least loaded task (ties: lower index), each list sorted."""
    if tasks < 1:
        raise ValueError(f"--tasks: must be at least 1, got {tasks}")
    loads = [0] * tasks
    owned: list[list[int]] = [[] for _ in range(tasks)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        t = min(range(tasks), key=lambda t: (loads[t], t))
        loads[t] += sizes[i]
        owned[t].append(i)
    return [sorted(o) for o in owned]


@dataclass
class _Records:
    """What a task knows about each document of one file, in file order."""

    digests: list[bytes] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    """"" for a candidate the merge judges; else why the task dropped it."""
    lengths: list[int] = field(default_factory=list)
    """Tokens written for it (-1: none, it was dropped)."""
    signatures: list[np.ndarray | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)

    def add(self, digest: bytes, status: str, source: str, redacted: tuple[str, ...] = (), sig: Any = None) -> int:
        self.digests.append(digest)
        self.status.append(status)
        self.lengths.append(-1)
        self.signatures.append(sig)
        self.sources.append(source)
        self.redacted.append(",".join(redacted))
        return len(self.digests) - 1

    def to_bytes(self, num_perm: int) -> bytes:
        sigs = np.zeros((len(self.digests), num_perm), dtype="<u4")
        for i, s in enumerate(self.signatures):
            if s is not None:
                sigs[i] = s
        buf = io.BytesIO()
        np.savez(
            buf,
            digests=np.frombuffer(b"".join(self.digests), dtype=np.uint8).reshape(-1, 16),
            status=_strings(self.status),
            lengths=np.array(self.lengths, dtype="<i8"),
            has_signature=np.array([s is not None for s in self.signatures], dtype=bool),
            signatures=sigs,
            sources=_strings(self.sources),
            redacted=_strings(self.redacted),
        )
        return buf.getvalue()


def _strings(values: list[str]) -> np.ndarray:
    # UTF-8 joined by NUL (which no path, reason or kind holds): numpy's str arrays are fixed-width UTF-32, which
    # would spend the longest source's length times four bytes on every document.
    return np.frombuffer("\0".join(values).encode(), dtype=np.uint8)


def strings(array: np.ndarray, count: int) -> list[str]:
    """The list `_strings` stored, checked to hold `count` values."""
    values = array.tobytes().decode().split("\0") if count else []
    if len(values) != count:
        raise ValueError(f"part records hold {len(values)} strings for {count} documents; re-run that task")
    return values


def prepare_task(
    cfg: PrepareConfig, tasks: int, index: int, options: StorageOptions | None = None, progress: bool = False
) -> dict[str, Any]:
    """Process task `index`'s share of the inputs into its part; returns the part's `done.json` content."""
    if not 0 <= index < tasks:
        raise ValueError(f"--task-index: must be in [0, {tasks}) for --tasks {tasks}, got {index}")
    started = time.perf_counter()
    files = expand_inputs(cfg.inputs, storage=options)
    sizes = [input_bytes([f], options) for f in files]
    mine = assign_files(sizes, tasks)[index]
    tok = load_tokenizer(cfg.tokenizer, options, cfg.eos_token)
    out = open_store(cfg.output, options)
    check_output(out, cfg.overwrite)
    part = out.child(part_prefix(tasks, index))
    part.delete(DONE)  # unpublish an earlier attempt before rewriting any of its objects
    curate = CurationFilter(cfg.curation) if cfg.curation.active else None
    dtype = dtype_for_vocab(tok.vocab_size)
    bar = tqdm(total=sum(sizes[i] for i in mine), unit="B", unit_scale=True, desc=f"task {index}/{tasks}",
               disable=not progress)  # fmt: skip
    run = _TaskRun(cfg, document_encoder(tok.tokenizer), curate, part, dtype, bar, options)
    objects = {str(i): run.file(files[i], i) for i in mine}
    bar.close()
    counts = run.counts
    done = {
        "format": PART_FORMAT,
        "tasks": tasks,
        "task_index": index,
        "settings": cfg.settings(),
        "inputs": files,
        "sizes": sizes,
        "tokenizer": vars(TokenizerMeta(tok.fingerprint, tok.vocab_size, tok.eos_token, tok.eos_id, tok.uri)),
        "dtype": dtype,
        "files": objects,
        "documents_read": counts["documents"],
        "bytes_read": counts["bytes"],
        "tokens": counts["tokens"],
        "examples": dict(curate.log.examples) if curate else {},
        "seconds": round(time.perf_counter() - started, 3),
    }
    part.write(DONE, json.dumps(done, indent=1, sort_keys=True, ensure_ascii=False).encode())
    return done


@dataclass
class _TaskRun:
    cfg: PrepareConfig
    tokenizer: Any
    curate: CurationFilter | None
    part: ObjectStore
    dtype: str
    bar: tqdm
    options: StorageOptions | None
    seen: set[bytes] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def file(self, path: str, i: int) -> dict[str, Any]:
        """One input file into `file-I.tokens` (candidates' tokens, no EOS) and `file-I.npz` (per-document records)."""
        records = _Records()
        tokens_sha = hashlib.sha256()
        written = 0
        with self.part.open_writer(f"file-{i:06d}.tokens") as out:
            for batch in batches(read_documents([path], self.cfg.read, self.options), self.cfg.batch_documents):
                todo = [job for job in map(lambda doc: self._screen(doc, records), batch) if job is not None]
                encodings = self.tokenizer.encode_batch([t for _, t in todo], add_special_tokens=False)
                for (n, _), enc in zip(todo, encodings, strict=True):
                    data = np.asarray(enc.ids, dtype=DTYPES[self.dtype]).tobytes()
                    out.write(data)
                    tokens_sha.update(data)
                    written += len(data)
                    records.lengths[n] = len(enc.ids)
                    self.counts["tokens"] += len(enc.ids)
        body = records.to_bytes(NUM_PERM if self.cfg.curation.near_dedup else 0)
        self.part.write(f"file-{i:06d}.npz", body)
        return {
            "path": path,
            "documents": len(records.digests),
            "tokens": {"key": f"file-{i:06d}.tokens", "size": written, "sha256": tokens_sha.hexdigest()},
            "records": {"key": f"file-{i:06d}.npz", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()},
        }

    def _screen(self, doc: Document, records: _Records) -> tuple[int, str] | None:
        """Record one document; (record number, text to tokenize) when it is a candidate for the merge."""
        raw = doc.text.encode()
        self.counts["documents"] += 1
        self.counts["bytes"] += len(raw)
        self.bar.update(len(raw))
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if not doc.text.strip():
            records.add(digest, EMPTY, doc.source)
            return None
        if self.cfg.dedup and digest in self.seen:
            records.add(digest, DUPLICATE, doc.source)
            return None
        if self.cfg.dedup:
            self.seen.add(digest)
        curate = self.curate
        kept, redacted, reason = curate.screen(doc.source, doc.text) if curate else (doc.text, (), "")
        sig = curate.signature(kept) if curate and kept is not None else None
        n = records.add(digest, reason, doc.source, redacted, sig)
        return None if kept is None else (n, kept)
