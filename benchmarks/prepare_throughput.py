"""Throughput of `prepare` (corpus → token shards) against the raw tokenizer it is built on.

    .venv/bin/python benchmarks/prepare_throughput.py            # 20 MB corpus, vocab 8192, best of 2
    .venv/bin/python benchmarks/prepare_throughput.py --mb 50 --repeat 3

Builds a corpus of about --mb MB of JSONL from `generate_documents(seed)` for seeds 0, 1, 2, ..., trains a
byte-level BPE tokenizer on the bundled documents, then measures

  raw      `Tokenizer.encode_batch` on the same texts in batches of 1024 (the ceiling for prepare), and
  prepare  `prepare()` end to end into a file:// temp folder: reading JSONL, blake2b hashing for dedup and the
           split, tokenizing, writing uint16 shards with page checksums and sha256, and the index.

Both report tokens/s and MB/s of input text; the ratio prepare/raw says how much of the tokenizer's speed
survives the rest of the pipeline. Then, for each count in --tasks (default 1,2,4):

  tasks N  N `pretrainjob prepare --tasks N --task-index I` processes at once (each with cpus/N tokenizer
           threads, as N pods would each have their own cores), then `prepare merge`: tokens/s over the wall time
           of the slowest task plus the merge, and the scaling efficiency against N times the 1-task rate (and
           against min(N, cpus) times it: tasks cannot scale past the cores this machine has).

and projects the wall time of a 100 GB corpus on --pods pods of --pod-cpus cores. Figures only: nothing here
asserts on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tokenizers

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.data.merge import merge
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer

# The corpus generator is a developer tool at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bundled_corpus.generate import generate_documents

BATCH = 1024


def build_corpus(folder: Path, target_bytes: int) -> tuple[list[Path], list[str]]:
    """JSONL files (one per seed) holding at least `target_bytes` of UTF-8 text; returns them and the texts."""
    files: list[Path] = []
    texts: list[str] = []
    size = 0
    seed = 0
    while size < target_bytes:
        path = folder / f"corpus-{seed:05d}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in generate_documents(seed):
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
                texts.append(doc["text"])
                size += len(doc["text"].encode())
        files.append(path)
        seed += 1
    return files, texts


def uri_to_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def time_raw(tok: tokenizers.Tokenizer, texts: list[str]) -> tuple[float, int]:
    """Seconds and tokens for encoding every text, `BATCH` documents per `encode_batch` call."""
    started = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), BATCH):
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i : i + BATCH], add_special_tokens=False))
    return time.perf_counter() - started, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of UTF-8 text (default 20)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size asked for (default 8192)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best counts (default 2)")
    parser.add_argument("--tasks", default="1,2,4", help="task counts to measure, comma-separated ('' for none)")
    parser.add_argument("--pods", default="8,32,128", help="pod counts for the 100 GB projection (default 8,32,128)")
    parser.add_argument("--pod-cpus", type=int, default=4, help="cores per pod in the projection (default 4)")
    args = parser.parse_args(argv)
    if args.mb <= 0 or args.repeat < 1:
        parser.error("--mb must be positive and --repeat at least 1")

    print(f"cpus {os.cpu_count()}  tokenizers {tokenizers.__version__}  corpus {args.mb:g} MB  best of {args.repeat}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        corpus_dir = tmp / "corpus"
        corpus_dir.mkdir()
        files, texts = build_corpus(corpus_dir, int(args.mb * 1e6))
        text_bytes = sum(len(t.encode()) for t in texts)

        spec = TokenizerTrainingSpec(model="bpe", vocab_size=args.vocab_size, objective="clm")
        tok = train_tokenizer((d["text"] for d in load_bundled_documents()), spec)
        tok_uri = save_tokenizer(tok, spec, str(tmp / "tokenizer"))
        print(
            f"corpus {len(texts)} documents, {text_bytes / 1e6:.1f} MB in {len(files)} files; "
            f"tokenizer byte-level BPE, {tok.get_vocab_size()} tokens (trained on the bundled corpus)"
        )

        # A fresh copy per run, read from the saved file as prepare does: the first pass over a corpus fills the
        # BPE word cache, so re-using one object would flatter the later runs.
        tok_path = uri_to_path(tok_uri)
        raw_s, raw_tokens = min(time_raw(tokenizers.Tokenizer.from_file(tok_path), texts) for _ in range(args.repeat))

        reports = []
        for run in range(args.repeat):
            cfg = PrepareConfig(
                inputs=tuple(str(f) for f in files),
                output=(tmp / f"out-{run}").as_uri(),
                tokenizer=tok_uri,
                dedup=True,
                batch_documents=BATCH,
            )
            reports.append(prepare(cfg))
            shutil.rmtree(tmp / f"out-{run}")
        best = min(reports, key=lambda r: r.seconds)
        prep_tokens = sum(best.tokens.values())

        raw_tps, raw_mbps = raw_tokens / raw_s, text_bytes / raw_s / 1e6
        prep_tps, prep_mbps = prep_tokens / best.seconds, best.bytes_read / best.seconds / 1e6
        print(f"{'':<9}{'seconds':>9}{'tokens':>12}{'tokens/s':>12}{'MB/s':>8}")
        print(f"{'raw':<9}{raw_s:>9.2f}{raw_tokens:>12,}{raw_tps:>12,.0f}{raw_mbps:>8.2f}")
        print(f"{'prepare':<9}{best.seconds:>9.2f}{prep_tokens:>12,}{prep_tps:>12,.0f}{prep_mbps:>8.2f}")
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(best.dropped.items())) or "none"
        print(
            f"prepare/raw: {prep_mbps / raw_mbps:.2f} by input MB/s ({prep_tps / raw_tps:.2f} by tokens/s; prepare "
            f"adds one EOS per document and dropped {dropped}); wrote {best.bytes_written / 1e6:.1f} MB in "
            f"{sum(best.shards.values())} shards"
        )
        counts = [int(n) for n in args.tasks.split(",") if n.strip()]
        if counts:
            scaling(files, tok_uri, tmp, counts, text_bytes, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run_tasks(files: list[Path], tok_uri: str, out: Path, tasks: int) -> tuple[float, float, int]:
    """Seconds for N concurrent task processes, seconds for the merge, and the merged token count."""
    cpus = os.cpu_count() or 1
    env = {**os.environ, "RAYON_NUM_THREADS": str(max(1, cpus // tasks))}
    base = [sys.executable, "-m", "pretrain_trainer.cli", "prepare", "--tokenizer", tok_uri, "--input",
            *map(str, files), "--output", str(out), "--dedup", "--no-progress", "--tasks", str(tasks)]  # fmt: skip
    started = time.perf_counter()
    procs = [
        subprocess.Popen([*base, "--task-index", str(i)], env=env, stdout=subprocess.DEVNULL) for i in range(tasks)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("a prepare task failed")
    tasks_s = time.perf_counter() - started
    started = time.perf_counter()  # in this process: the merge's own time, without an interpreter's start
    merge(str(out))
    merge_s = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    return tasks_s, merge_s, sum(report["tokens"].values())


def scaling(files: list[Path], tok_uri: str, tmp: Path, counts: list[int], text_bytes: int, args) -> None:  # type: ignore[no-untyped-def]
    cpus = os.cpu_count() or 1
    print(f"\n{'':<9}{'tasks s':>9}{'merge s':>9}{'tokens/s':>12}{'MB/s':>8}{'eff':>7}{'eff/cpus':>10}")
    rates: dict[int, float] = {}
    task_mbps: dict[int, float] = {}
    merge_mbps = 0.0
    for n in counts:
        tasks_s, merge_s, tokens = run_tasks(files, tok_uri, tmp / f"tasks-{n}", n)
        shutil.rmtree(tmp / f"tasks-{n}")
        rates[n] = tokens / (tasks_s + merge_s)
        task_mbps[n] = text_bytes / tasks_s / 1e6
        merge_mbps = max(merge_mbps, text_bytes / merge_s / 1e6)
        base = rates[counts[0]] / counts[0]  # per task, from the smallest count measured (1 by default)
        eff, eff_cpus = rates[n] / (base * n), rates[n] / (base * min(n, cpus))
        print(f"{f'tasks {n}':<9}{tasks_s:>9.2f}{merge_s:>9.2f}{rates[n]:>12,.0f}"
              f"{text_bytes / (tasks_s + merge_s) / 1e6:>8.2f}{eff:>7.2f}{eff_cpus:>10.2f}")  # fmt: skip
    # Projection: a pod's tasks rate is this machine's 1-task input rate per core times the pod's cores (the
    # tokenizer scales with cores, the Python part of a task does not, so this flatters pods with many cores a
    # little); the merge is one process copying tokens at the measured rate per input byte.
    per_core = task_mbps[counts[0]] / cpus  # every measured count uses all cores
    corpus_mb = 100e3
    print(f"\nprojection for a 100 GB corpus: pods of {args.pod_cpus} cores at {per_core:.2f} MB/s per core "
          f"(measured, {counts[0]} task(s)), merge at {merge_mbps:.1f} MB/s of input:")  # fmt: skip
    for pods in (int(p) for p in args.pods.split(",") if p.strip()):
        tasks_h = corpus_mb / (per_core * args.pod_cpus * pods) / 3600
        merge_h = corpus_mb / merge_mbps / 3600
        print(f"  {pods:>4} pods: tasks {tasks_h:.2f} h + merge {merge_h:.2f} h = {tasks_h + merge_h:.2f} h")


if __name__ == "__main__":
    raise SystemExit(main())
