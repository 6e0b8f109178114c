"""Throughput of the streaming loader against local files and an embedded S3 endpoint, next to raw ranged reads.

    .venv/bin/python benchmarks/loader_throughput.py                 # ~5 M tokens, seq 2048, batch 32, 8 threads
    .venv/bin/python benchmarks/loader_throughput.py --backends file --seconds 20 --compute-ms 100

Prepares a dataset of about --tokens tokens (generated multilingual documents, 1 M-token shards, the default
checksum page size) once into a file:// temp folder and once into a bucket on an embedded moto S3 endpoint
(`start_local_s3`, same process, loopback). For each backend it then measures

  raw store.read       the ranged reads the loader issues (one per sample, page-aligned, the same samples and the
                       same thread count) straight through `ObjectStore.read`: the ceiling for the loader
  raw boto3 (s3 only)  the same reads as a plain boto3 `get_object(Range=...)` loop in a thread pool
  loader               `StreamingLoader` (causal, world size 1) iterated with no compute in between
  loader+compute       the same with a sleep of --compute-ms per batch standing in for a training step

and prints one table. `wait` is the loader's `wait_seconds` over the wall time: the share of the run the
consumer sat blocked on data. With a compute step, a wait near 0 % means prefetch hides the reads. `amp` is
read amplification, bytes read from storage over bytes of sample windows delivered (page-aligned reads and
checksum tables make it > 1). Figures only: nothing here asserts on timing. See benchmarks/README.md for how
to read them, and why the moto figures understate what the loader does against real S3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.data.loader import SampleOrder, StreamingLoader
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.storage import StorageOptions, open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer

# The corpus generator is a developer tool at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bundled_corpus.generate import generate_documents

BUCKET = "s3://bench-loader"
SHARD_TOKENS = 1 << 20
SEED = 0


@dataclass
class Row:
    backend: str
    what: str
    seconds: float
    requests: int = 0
    samples: int = 0
    tokens: int = 0
    bytes_read: int = 0
    window_bytes: int = 0
    wait_seconds: float | None = None

    def cells(self) -> list[str]:
        def rate(n: int) -> str:
            return f"{n / self.seconds:,.0f}" if n and self.seconds else "-"

        amp = self.bytes_read / self.window_bytes if self.window_bytes else None
        per_token = self.bytes_read / self.tokens if self.tokens else None
        return [
            self.backend,
            self.what,
            f"{self.seconds:.2f}",
            rate(self.requests),
            rate(self.samples),
            rate(self.tokens),
            f"{self.bytes_read / self.seconds / 1e6:.1f}" if self.seconds else "-",
            "-" if per_token is None else f"{per_token:.2f}",
            "-" if amp is None else f"{amp:.2f}",
            "-" if self.wait_seconds is None else f"{100 * self.wait_seconds / self.seconds:.0f}%",
        ]


HEADER = ["backend", "measurement", "seconds", "req/s", "samples/s", "tokens/s", "MB/s", "B/token", "amp", "wait"]


def print_table(rows: list[Row]) -> None:
    table = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for line in table:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))


# ------------------------------------------------------------------------------------------------ dataset


def build_corpus(folder: Path, tok_path: str, target_tokens: int) -> tuple[list[str], int]:
    """JSONL files from seeds 0, 1, ... sized from seed 0's token count to give about `target_tokens`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tok_path)
    first = [d["text"] for d in generate_documents(0)]
    per_seed = sum(len(e.ids) + 1 for e in tok.encode_batch(first, add_special_tokens=False))
    seeds = max(1, -(-target_tokens // per_seed))
    files = []
    size = 0
    for seed in range(seeds):
        path = folder / f"corpus-{seed:05d}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in generate_documents(seed):
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
                size += len(doc["text"].encode())
        files.append(str(path))
    return files, size


# ------------------------------------------------------------------------------------------ measurements


def sample_ranges(shards: ShardSet, sequence_length: int, window: int, samples: int) -> list[tuple[str, int, int]]:
    """The (object, start, end) reads the loader makes for its first `samples` samples (seed SEED)."""
    index = shards.index
    itemsize = shards.dtype.itemsize
    page = index.page_bytes
    starts = np.cumsum([0] + [s.num_tokens for s in index.shards]).tolist()
    order = SampleOrder((shards.num_tokens - window) // sequence_length + 1, SEED)
    ranges = []
    for s in order.samples(0, samples).tolist():
        lo, hi = s * sequence_length, s * sequence_length + window
        i = int(np.searchsorted(starts, lo, side="right")) - 1
        while lo < hi:
            take = min(hi, starts[i + 1])
            shard = index.shards[i]
            first, last = (lo - starts[i]) * itemsize, (take - starts[i]) * itemsize
            ranges.append((shard.name, first // page * page, min(((last - 1) // page + 1) * page, shard.num_bytes)))
            lo, i = take, i + 1
    return ranges


def raw_reads(
    read: Callable[[str, int, int], bytes], ranges: list[tuple[str, int, int]], threads: int, seconds: float
) -> tuple[int, int, float]:
    """Issue `ranges` from `threads` threads (each a strided share) until done or `seconds` pass."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    done = [0, 0]

    def worker(part: list[tuple[str, int, int]]) -> None:
        count = nbytes = 0
        for key, start, end in part:
            if time.perf_counter() > deadline:
                break
            nbytes += len(read(key, start, end))
            count += 1
        with lock:
            done[0] += count
            done[1] += nbytes

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for f in [pool.submit(worker, ranges[t::threads]) for t in range(threads)]:
            f.result()
    return done[0], done[1], time.perf_counter() - started


def run_loader(
    shards_uri: str, options: StorageOptions | None, args: argparse.Namespace, compute_s: float
) -> tuple[int, int, int, float, float]:
    """Iterate a fresh loader; returns samples, bytes read, window bytes, wall seconds, wait seconds."""
    shards = ShardSet.open(shards_uri, options)
    samples = 0
    with StreamingLoader(
        shards,
        sequence_length=args.seq,
        causal=True,
        global_batch_size=args.batch,
        world_size=1,
        seed=SEED,
        prefetch=args.prefetch,
        threads=args.threads,
    ) as loader:
        started = time.perf_counter()
        deadline = started + args.seconds
        for n, batch in enumerate(loader, 1):
            samples += len(batch)
            if compute_s:
                time.sleep(compute_s)
            if time.perf_counter() > deadline or n == args.max_batches:
                break
        wall = time.perf_counter() - started
        wait = loader.wait_seconds
    return samples, shards.bytes_read, samples * loader.window * shards.dtype.itemsize, wall, wait


def measure(
    backend: str, shards_uri: str, options: StorageOptions | None, args: argparse.Namespace, endpoint: str | None
) -> list[Row]:
    window = args.seq + 1
    samples, nbytes, window_bytes, wall, wait = run_loader(shards_uri, options, args, 0.0)
    loader_row = Row(backend, "loader", wall, 0, samples, samples * args.seq, nbytes, window_bytes, wait)

    shards = ShardSet.open(shards_uri, options)
    ranges = sample_ranges(shards, args.seq, window, samples)
    store = open_store(shards_uri, options)
    count, got, secs = raw_reads(store.read, ranges, args.threads, args.seconds)
    rows = [Row(backend, "raw store.read", secs, count, bytes_read=got)]
    if endpoint is not None:
        import boto3
        from botocore.config import Config

        opts = options or StorageOptions()
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=opts.region,
            aws_access_key_id=opts.access_key_id,
            aws_secret_access_key=opts.secret_access_key,
            config=Config(max_pool_connections=max(10, args.threads), s3={"addressing_style": "path"}),
        )
        bucket, _, prefix = shards_uri[len("s3://") :].partition("/")

        def boto_read(key: str, start: int, end: int) -> bytes:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{key}", Range=f"bytes={start}-{end - 1}")["Body"]
            with body:
                return body.read()

        count, got, secs = raw_reads(boto_read, ranges, args.threads, args.seconds)
        rows.append(Row(backend, "raw boto3 get_object", secs, count, bytes_read=got))
    rows.append(loader_row)

    compute_s = args.compute_ms / 1000
    samples, nbytes, window_bytes, wall, wait = run_loader(shards_uri, options, args, compute_s)
    rows.append(
        Row(
            backend,
            f"loader+compute {args.compute_ms:g} ms",
            wall,
            0,
            samples,
            samples * args.seq,
            nbytes,
            window_bytes,
            wait,
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=float, default=5e6, help="dataset size in tokens (default 5e6)")
    parser.add_argument("--seq", type=int, default=2048, help="sequence length (default 2048; window = seq + 1)")
    parser.add_argument("--batch", type=int, default=32, help="global batch size in samples (default 32)")
    parser.add_argument("--threads", type=int, default=8, help="loader threads, and raw-read threads (default 8)")
    parser.add_argument("--prefetch", type=int, default=2, help="batches the loader fetches ahead (default 2)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time limit of each measurement (default 8)")
    parser.add_argument("--max-batches", type=int, default=0, help="also stop a loader run after K batches (0: no cap)")
    parser.add_argument("--compute-ms", type=float, default=50.0, help="simulated compute per batch (default 50)")
    parser.add_argument("--backends", default="file,s3", help="comma-separated: file, s3 (default file,s3)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size asked for (default 8192)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"file", "s3"}:
        parser.error("--backends: give file, s3 or both, comma-separated")
    if min(args.tokens, args.seq, args.batch, args.threads, args.seconds) <= 0 or args.compute_ms < 0:
        parser.error("--tokens, --seq, --batch, --threads and --seconds must be positive, --compute-ms >= 0")

    print(
        f"cpus {os.cpu_count()}  seq {args.seq}  batch {args.batch}  threads {args.threads}  "
        f"prefetch {args.prefetch}  {args.seconds:g} s per measurement"
    )
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
        stack.callback(shutil.rmtree, tmp, True)
        (tmp / "corpus").mkdir()
        spec = TokenizerTrainingSpec(model="bpe", vocab_size=args.vocab_size, objective="clm")
        tok = train_tokenizer((d["text"] for d in load_bundled_documents()), spec)
        tok_uri = save_tokenizer(tok, spec, str(tmp / "tokenizer"))
        files, text_bytes = build_corpus(tmp / "corpus", tok_uri[len("file://") :], int(args.tokens))

        def prepare_into(output: str, options: StorageOptions | None) -> str:
            cfg = PrepareConfig(inputs=tuple(files), output=output, tokenizer=tok_uri, shard_tokens=SHARD_TOKENS)
            report = prepare(cfg, options)
            tokens = sum(report.tokens.values())
            print(
                f"prepared {tokens:,} tokens ({text_bytes / 1e6:.1f} MB of text, {report.shards['train']} shards, "
                f"{report.bytes_written / 1e6:.1f} MB, {cfg.page_bytes} B checksum pages) into {output} in "
                f"{report.seconds:.1f} s"
            )
            return report.outputs["train"]

        rows: list[Row] = []
        if "file" in backends:
            uri = prepare_into((tmp / "data").as_uri(), None)
            rows += measure("file", uri, None, args, None)
        if "s3" in backends:
            from pretrain_trainer.storage.local_s3 import ensure_bucket, start_local_s3

            endpoint = stack.enter_context(start_local_s3())
            options = StorageOptions(
                endpoint_url=endpoint, region="us-east-1", access_key_id="bench", secret_access_key="bench-secret"
            )
            ensure_bucket(BUCKET, options)
            uri = prepare_into(f"{BUCKET}/data", options)
            rows += measure("s3 (moto)", uri, options, args, endpoint)
        print()
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
