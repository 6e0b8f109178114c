"""The main job on a laptop: the whole data path on the bundled corpus, against an embedded S3 endpoint.

    pretrainjob demo [--workdir runs/demo]

1. starts an S3 endpoint on loopback (moto's server) and a bucket in it;
2. trains a byte-level BPE tokenizer on the bundled multilingual corpus and stores it in the bucket;
3. audits it (and, for contrast, a lower-casing, accent-stripping WordPiece: the BERT-uncased trap);
4. prepares deduplicated train/validation shards into the bucket;
5. streams the training shards back as two ranks would, checks that they saw disjoint samples, and resumes
   the stream with three ranks from where the two stopped.
"""

from __future__ import annotations

import json
import time
from itertools import islice
from pathlib import Path

from pretrain_trainer.corpus import bundled_corpus_files
from pretrain_trainer.data.loader import StreamingLoader
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.readers import read_documents
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.storage.local_s3 import ensure_bucket, start_local_s3
from pretrain_trainer.tokenizer.audit import audit_tokenizer, format_report
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerSpec, save_tokenizer, train_tokenizer

BUCKET = "s3://pretrain-demo"
SEQUENCE_LENGTH = 128
GLOBAL_BATCH = 12  # divisible by 2 and by 3 ranks


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
        spec = TokenizerSpec(model="bpe", vocab_size=4096, objective="clm")
        tok = train_tokenizer((d.text for d in read_documents(files)), spec)
        tok_uri = save_tokenizer(tok, spec, f"{BUCKET}/tokenizers/bundled-bpe-4k", options)
        print(f"{tok.get_vocab_size()} tokens -> {tok_uri}")

        _step(3, "audit it: round trip, unknown tokens, fertility per language")
        report = audit_tokenizer(tok, read_documents(files))
        print(format_report(report, threshold=1.0, ignore_whitespace=False))
        summary["bpe_roundtrip"] = report.total.roundtrip
        trap_spec = TokenizerSpec(
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
    (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nsummary written to {workdir / 'summary.json'}")
    return 0 if disjoint and report.total.roundtrip == 1.0 else 1
