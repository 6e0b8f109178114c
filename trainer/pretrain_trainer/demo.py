"""The main job on a laptop: a real end-to-end pretraining run on the bundled corpus, against an embedded S3
endpoint, in a few minutes on two CPU cores.

    pretrainjob demo [--workdir runs/demo]

1. starts an S3 endpoint on loopback (moto's server) and a bucket in it;
2. trains a byte-level BPE tokenizer on the bundled multilingual corpus and stores it in the bucket;
3. audits it (and, for contrast, a lower-casing, accent-stripping WordPiece: the BERT-uncased trap);
4. prepares deduplicated train/validation shards into the bucket;
5. streams the training shards back as two ranks would, checks that they saw disjoint samples, and resumes
   the stream with three ranks from where the two stopped;
6. pretrains a small GPT-style model with two local worker processes (the same environment and trainer as
   pods), checkpointing to the bucket, and prints a summary and a loss plot.
"""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path

import yaml

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.contract import API_VERSION, PRETRAIN_LOG_LEVEL
from pretrain_trainer.data.loader import StreamingLoader
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.readers import read_documents
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.launch import run_local
from pretrain_trainer.report import SUMMARY_FILE, format_summary, plot_loss
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.storage.local_s3 import ensure_bucket, start_local_s3
from pretrain_trainer.tokenizer.audit import audit_tokenizer, format_report
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer

BUCKET = "s3://pretrain-demo"
SEQUENCE_LENGTH = 128
GLOBAL_BATCH = 12  # divisible by 2 and by 3 ranks


DEMO_MODEL = {"n_layer": 4, "n_embd": 128, "n_head": 4, "n_positions": SEQUENCE_LENGTH}


def demo_job(tokenizer: str, data: str, endpoint: str) -> dict[str, object]:
    """The PretrainJob the demo runs: a 0.9M-parameter GPT-2-style model, two workers, checkpoints in S3."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PretrainJob",
        "metadata": {"name": "demo-gpt"},
        "spec": {
            "workers": {"replicas": 1, "procsPerWorker": 2},
            "tokenizer": {"uri": tokenizer},
            "data": {"train": f"{data}/train", "validation": f"{data}/validation", "sequenceLength": SEQUENCE_LENGTH},
            "model": {"architecture": "gpt2", "config": DEMO_MODEL},
            "objective": {"type": "clm"},
            "optimizer": {"name": "adamw", "lr": 3e-3, "warmupSteps": 10, "schedule": "cosine"},
            "training": {
                "maxSteps": 200,
                "globalBatchSamples": 16,
                "microBatchSize": 4,
                "logEverySteps": 20,
                "evalEverySteps": 50,
                "evalBatches": 4,
            },
            "checkpoint": {"uri": f"{BUCKET}/runs/demo-gpt", "everySteps": 50, "keep": 2, "exportHF": True},
            "storage": {"endpoint": endpoint, "region": "us-east-1"},
            "metrics": {"port": 0},
        },
    }


def _step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}")


def _stream(shards: ShardSet, world_size: int, start: int, steps: int) -> list[set[int]]:
    """Read `steps` global batches as `world_size` ranks; returns each rank's sample windows (as hashes)."""
    seen = []
    for rank in range(world_size):
        with StreamingLoader(
            shards,
            sequence_length=SEQUENCE_LENGTH,
            causal=True,
            global_batch_size=GLOBAL_BATCH,
            rank=rank,
            world_size=world_size,
            seed=1234,
            samples_consumed=start,
        ) as loader:
            seen.append({hash(row.tobytes()) for batch in islice(loader, steps) for row in batch})
    return seen


def run_demo(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in bundled_corpus_files()]
    summary: dict[str, object] = {}
    with start_local_s3() as endpoint:
        options = StorageOptions(
            endpoint_url=endpoint, region="us-east-1", access_key_id="demo", secret_access_key="demo-secret"
        )
        ensure_bucket(BUCKET, options)
        _step(1, f"embedded S3 endpoint {endpoint}, bucket {BUCKET}")

        _step(2, f"train a byte-level BPE tokenizer on the bundled corpus ({len(files)} files)")
        spec = TokenizerTrainingSpec(model="bpe", vocab_size=4096, objective="clm")
        tok = train_tokenizer((d.text for d in read_documents(files)), spec)
        tok_uri = save_tokenizer(tok, spec, f"{BUCKET}/tokenizers/bundled-bpe-4k", options)
        print(f"{tok.get_vocab_size()} tokens -> {tok_uri}")

        _step(3, "audit it: round trip, unknown tokens, fertility per language")
        report = audit_tokenizer(tok, read_documents(files))
        print(format_report(report, threshold=1.0, ignore_whitespace=False))
        summary["bpe_roundtrip"] = report.total.roundtrip
        trap_spec = TokenizerTrainingSpec(
            model="wordpiece", vocab_size=4096, objective="mlm", lowercase=True, strip_accents=True
        )
        trap = audit_tokenizer(
            train_tokenizer((d.text for d in read_documents(files)), trap_spec), read_documents(files), max_mismatches=1
        )
        print("\nfor contrast, an uncased WordPiece that strips accents (the BERT-uncased trap):")
        print("! " + format_report(trap, threshold=0.99, ignore_whitespace=True).split("\n! ", 1)[-1])
        summary["uncased_wordpiece_roundtrip_ignoring_whitespace"] = trap.total.content_roundtrip

        _step(4, "prepare deduplicated train/validation shards in the bucket")
        data_uri = f"{BUCKET}/datasets/bundled"
        prep = prepare(
            PrepareConfig(
                inputs=tuple(files),
                output=data_uri,
                tokenizer=tok_uri,
                dedup=True,
                min_tokens=4,
                validation_fraction=0.05,
                shard_tokens=32768,
            ),
            options,
        )
        print(prep.format())
        summary["prepare"] = prep.as_dict()

        _step(5, "stream the train shards back: 2 ranks, then resume with 3 ranks")
        expected = load_tokenizer(tok_uri, options).fingerprint
        shards = ShardSet.open(f"{data_uri}/train", options, expected_fingerprint=expected)
        steps = 10
        started = time.perf_counter()
        two = _stream(shards, world_size=2, start=0, steps=steps)
        three = _stream(shards, world_size=3, start=steps * GLOBAL_BATCH, steps=steps)
        seconds = time.perf_counter() - started
        ranks = two + three
        total = sum(len(s) for s in ranks)
        disjoint = len(set().union(*ranks)) == total == 2 * steps * GLOBAL_BATCH
        tokens = total * (SEQUENCE_LENGTH + 1)
        print(
            f"{total} samples of {SEQUENCE_LENGTH + 1} tokens read in {seconds:.2f} s "
            f"({tokens / seconds:,.0f} tokens/s, {shards.bytes_read / 1e6:.2f} MB from S3, every page verified)"
        )
        print(f"every sample seen exactly once across the 2-rank run and the 3-rank resume: {disjoint}")
        summary["stream"] = {
            "samples": total,
            "seconds": round(seconds, 3),
            "disjoint": disjoint,
            "tokens_per_second": round(tokens / seconds, 1),
        }

        _step(6, "pretrain a small GPT-style model: 2 local workers, checkpoints in the bucket")
        job_file = workdir / "demo-gpt.yaml"
        job_file.write_text(yaml.safe_dump(demo_job(tok_uri, data_uri, endpoint), sort_keys=False))
        run_dir = workdir / "demo-gpt"
        credentials = {
            "AWS_ACCESS_KEY_ID": options.access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": options.secret_access_key or "",
            PRETRAIN_LOG_LEVEL: "WARNING",
        }
        code = run_local(str(job_file), None, run_dir, extra_env=credentials)
        if code != 0:
            print(f"training failed with exit code {code}; see {run_dir}/rank-*.log")
            return code
        train = json.loads((run_dir / SUMMARY_FILE).read_text())
        print(format_summary(train))
        print(f"loss plot: {plot_loss(run_dir)}; job manifest: {job_file}")
        keys = ("steps", "final_loss", "validation_loss", "tokens_per_second", "last_checkpoint", "hf_export")
        summary["train"] = {k: train[k] for k in keys} | {"first_loss": train["losses"][0]}
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nsummary written to {workdir / 'summary.json'}")
    learned = train["final_loss"] < train["losses"][0] - 1.0
    return 0 if disjoint and report.total.roundtrip == 1.0 and learned else 1
