"""Throughput of the streaming loader from S3, side by side with the raw ranged-GET ceiling, LitData and MosaicML.

    .venv/bin/python benchmarks/loader_throughput.py --bench-python /work/benchvenv/bin/python
    .venv/bin/python benchmarks/loader_throughput.py --tokens 5e6 --reps 1 --readers ceiling,ours

Writes a stream of --tokens random uint16 tokens (documents of 50-4000 tokens, EOS-separated) in three formats
into a bucket on a loopback S3 endpoint (benchmarks/bench_s3_server.py: moto in its own process, ranged GETs
served without copying the object, every request counted): our shard set (`ShardWriter`), LitData's
`optimize(..., item_loader=TokensLoader())` and MosaicML's `MDSWriter` (one sample of seq + 1 tokens per row).
Then, for each scenario (loopback; every response delayed by --delay-ms, as a real object store's first
byte is), each reader reads one epoch (causal windows of --seq + 1 tokens, batches of --batch, shuffled, 0
workers) in a fresh process (benchmarks/loader_readers.py), --reps times; the table shows medians:

  ceiling   plain boto3 ranged GETs of --block-mib over every shard object from --threads threads: no checks
  ours      StreamingLoader (blocks of --block-mib, --window-blocks per window, a fresh /dev/shm cache)
  litdata   litdata.StreamingDataset + StreamingDataLoader, TokensLoader(block_size=seq + 1)
  mds       streaming.StreamingDataset + torch DataLoader

Columns: tokens/s (training tokens, batch × seq, over the time from building the reader to its last batch),
its ratio to the ceiling and to LitData, GETs per million tokens (counted at the server), client CPU seconds
per million tokens, the reader process's peak RSS, and the time to the first batch.

The last line is the data-wait figure: --ranks processes of one node (world size --ranks, one shared cache)
each sleep the step time that makes the node consume --node-tokens-per-s, over an epoch, through the delayed
endpoint; it prints the share of wall time the worst rank spent waiting for data. Figures only: nothing here
asserts. LitData and MDS need the packages in benchmarks/requirements.txt; run the script with a Python that
has them (--bench-python), else their rows say why they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from pretrain_trainer.data.shards import ShardWriter, TokenizerMeta
from pretrain_trainer.storage import StorageOptions, open_store

HERE = Path(__file__).resolve().parent
BUCKET = "bench-loader"
VOCAB = 32000  # below 2**15, so LitData's int16 tensors hold the same ids


def start_server(stack: ExitStack, tmp: Path) -> str:
    port_file = tmp / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "bench_s3_server.py"), str(port_file)], stdin=subprocess.PIPE)
    stack.callback(proc.wait, 30)
    stack.callback(proc.stdin.close)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the benchmark S3 server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port_file.read_text()}"


def server(endpoint: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{endpoint}/__bench__/{path}", data=b"" if "delay" in path else None) as reply:
        return json.loads(reply.read())


def make_tokens(path: Path, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCAB, size=count, dtype=np.uint16)
    ends = np.cumsum(rng.integers(50, 4000, size=count // 50))
    ends = ends[ends < count]
    tokens[ends - 1] = 0  # EOS
    np.save(path, tokens)
    return np.split(tokens, ends)


def upload(folder: Path, endpoint: str, prefix: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder)}")


def run_reader(python: str, reader: str, cfg: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(HERE / "loader_readers.py"), reader, json.dumps(cfg)], capture_output=True, text=True
    )
    if done.returncode:
        lines = [line.strip() for line in done.stderr.splitlines() if "Error" in line or "error:" in line]
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare_other(python: str, kind: str, cfg: dict[str, Any], tmp: Path) -> str | None:
    """Write LitData's or MDS's format and upload it; None, or why it could not be done."""
    out = tmp / kind
    got = run_reader(python, f"prepare-{kind}", {**cfg, "out": str(out)})
    if "error" in got:
        return got["error"]
    upload(out, cfg["endpoint"], kind)
    shutil.rmtree(out, ignore_errors=True)
    return None


def measure(python: str, reader: str, cfg: dict[str, Any], reps: int) -> dict[str, Any]:
    runs = []
    for _ in range(reps):
        before = server(cfg["endpoint"], "stats").get("GET", 0)
        got = run_reader(python, reader, cfg)
        if "error" in got:
            return got
        got["gets"] = server(cfg["endpoint"], "stats").get("GET", 0) - before
        runs.append(got)
    row = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu_seconds", "tokens", "gets")}
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    row["first_batch_s"] = statistics.median(r["first_batch_s"] or 0.0 for r in runs)
    row["tokens_per_s"] = statistics.median(r["tokens"] / r["seconds"] for r in runs)
    return row


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    ceiling = rows.get("ceiling", {}).get("tokens_per_s")
    lit = rows.get("litdata", {}).get("tokens_per_s")
    header = ["reader", "tokens/s", "x ceiling", "x LitData", "GETs/1M tok", "CPU s/1M tok", "peak RSS", "1st batch"]
    table = [header]
    for name, r in rows.items():
        if "error" in r:
            table.append([name, f"not run: {r['error'][:120]}"] + [""] * 6)
            continue
        per_m = 1e6 / r["tokens"]
        table.append(
            [
                name,
                f"{r['tokens_per_s'] / 1e6:.2f}M",
                f"{r['tokens_per_s'] / ceiling:.2f}" if ceiling else "-",
                f"{r['tokens_per_s'] / lit:.2f}" if lit else "-",
                f"{r['gets'] * per_m:.2f}",
                f"{r['cpu_seconds'] * per_m:.3f}" if name != "ceiling" else f"({r['cpu_seconds'] * per_m:.3f})",
                f"{r['peak_rss_mib']:.0f} MiB",
                f"{r['first_batch_s']:.2f} s",
            ]
        )
    widths = [max(len(line[i]) for line in table if len(line) > 2 and line[2]) for i in range(len(header))]
    print(f"\n{title}")
    for line in table:
        if not line[2] and line[1].startswith("not run"):
            print(f"{line[0].ljust(widths[0])}  {line[1]}")
            continue
        print(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=float, default=20e6, help="tokens in the stream (default 20e6)")
    parser.add_argument("--seq", type=int, default=2048, help="sequence length; windows are seq + 1 (default 2048)")
    parser.add_argument("--batch", type=int, default=8, help="samples per batch (default 8)")
    parser.add_argument("--reps", type=int, default=3, help="runs per reader and scenario; medians (default 3)")
    parser.add_argument("--readers", default="ceiling,litdata,mds,ours", help="comma-separated, in table order")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="per-response delay of scenario 2 (default 20)")
    parser.add_argument("--block-mib", type=int, default=8, help="read size: ours and the ceiling (default 8)")
    parser.add_argument("--window-blocks", type=int, default=16, help="our shuffle window (default 16)")
    parser.add_argument("--cache-mib", type=int, default=1024, help="our cache bound (default 1024)")
    parser.add_argument("--threads", type=int, default=8, help="download threads: ours and the ceiling (default 8)")
    parser.add_argument("--ranks", type=int, default=8, help="ranks of the data-wait run (0 skips it; default 8)")
    parser.add_argument("--wait-block-mib", type=int, default=2, help="data-wait run's block size (default 2)")
    parser.add_argument("--wait-window-blocks", type=int, default=4, help="data-wait run's window (default 4)")
    parser.add_argument("--node-tokens-per-s", type=float, default=4e6, help="data-wait step time (default 4e6)")
    parser.add_argument("--bench-python", default=sys.executable, help="a Python with litdata and streaming")
    args = parser.parse_args(argv)
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    if not readers or set(readers) - {"ceiling", "litdata", "mds", "ours"}:
        parser.error("--readers: a comma-separated subset of ceiling, litdata, mds, ours")

    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
        stack.callback(shutil.rmtree, tmp, True)
        endpoint = start_server(stack, tmp)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret")
        options = StorageOptions(
            endpoint_url=endpoint, region="us-east-1", access_key_id="bench", secret_access_key="bench-secret"
        )
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        docs = make_tokens(tmp / "tokens.npy", int(args.tokens))
        writer = ShardWriter(
            open_store(f"s3://{BUCKET}/ours", options),
            TokenizerMeta(fingerprint="0" * 64, vocab_size=VOCAB, eos_token="<eos>", eos_id=0),
        )
        for doc in docs:
            writer.add_document(doc)
        index = writer.close()
        cfg: dict[str, Any] = {
            "endpoint": endpoint,
            "token_file": str(tmp / "tokens.npy"),
            "ours": f"s3://{BUCKET}/ours",
            "litdata": f"s3://{BUCKET}/litdata",
            "mds": f"s3://{BUCKET}/mds",
            **{k: getattr(args, k) for k in ("seq", "batch", "block_mib", "window_blocks", "cache_mib", "threads")},
        }
        skipped = {k: prepare_other(args.bench_python, k, cfg, tmp) for k in ("litdata", "mds") if k in readers}
        print(
            f"cpus {os.cpu_count()}  {index.num_tokens:,} tokens in {len(index.shards)} shards  seq {args.seq}  "
            f"batch {args.batch}  block {args.block_mib} MiB  window {args.window_blocks} blocks  threads "
            f"{args.threads}  {args.reps} reps (medians)"
        )
        for title, delay in (("loopback S3", 0.0), (f"every response delayed {args.delay_ms:g} ms", args.delay_ms)):
            server(endpoint, f"delay?ms={delay}")
            rows = {}
            for reader in readers:
                if skipped.get(reader):
                    rows[reader] = {"error": skipped[reader]}
                else:
                    rows[reader] = measure(args.bench_python, reader, cfg, args.reps)
            print_table(title, rows)
        if args.ranks:
            server(endpoint, f"delay?ms={args.delay_ms}")
            step_s = args.batch * args.ranks * args.seq / args.node_tokens_per_s
            layout = {"block_mib": args.wait_block_mib, "window_blocks": args.wait_window_blocks}
            before = server(endpoint, "stats").get("GET", 0)
            got = run_reader(args.bench_python, "ranks", {**cfg, **layout, "ranks": args.ranks, "step_s": step_s})
            if "error" in got:
                print(f"\ndata wait: not run: {got['error']}")
            else:
                print(
                    f"\ndata wait: {args.ranks} ranks of one node, one shared cache, {args.node_tokens_per_s / 1e6:g}M "
                    f"tokens/s per node (a step of {step_s * 1000:.1f} ms), {args.delay_ms:g} ms per response, blocks "
                    f"of {args.wait_block_mib} MiB in windows of {args.wait_window_blocks}, one epoch: the worst rank "
                    f"waited {100 * got['steady_wait_share']:.2f} % of {got['steady_s']:.1f} s after its first "
                    f"batch (first batch after {got['first_batch_s']:.2f} s); "
                    f"{server(endpoint, 'stats').get('GET', 0) - before} GETs for the node"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
