"""Tiny models, tokenizers and shard sets in a loopback S3 bucket, and PretrainJob manifests that use them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.contract import API_VERSION
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.storage.local_s3 import ensure_bucket
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

TINY_GPT = {
    "n_layer": 2,
    "n_embd": 64,
    "n_head": 4,
    "n_positions": 64,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}
TINY_BERT = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}

TINY_T5 = {
    "d_model": 32,
    "d_ff": 64,
    "d_kv": 8,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "dropout_rate": 0.0,
}
TINY_BART = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
    "dropout": 0.0,
}
TINY_MODELS = {
    "clm": ("gpt2", TINY_GPT),
    "mlm": ("bert", TINY_BERT),
    "span-corruption": ("t5", TINY_T5),
    "denoising": ("bart", TINY_BART),
}
"""objective.type → the tiny model `write_job` trains with it (any other type: BERT's)."""


@dataclass(frozen=True)
class Dataset:
    tokenizer: str
    train: str
    validation: str


def make_dataset(bucket: str, name: str, spec: TokenizerTrainingSpec, options: StorageOptions) -> Dataset:
    """Train `spec` on the bundled corpus and prepare its shards under s3://bucket/name/."""
    ensure_bucket(bucket, options)
    tok_uri = save_tokenizer(trained(spec), spec, f"{bucket}/{name}/tokenizer", options)
    prepare(
        PrepareConfig(
            inputs=tuple(str(p) for p in bundled_corpus_files()),
            output=f"{bucket}/{name}/data",
            tokenizer=tok_uri,
            dedup=True,
            validation_fraction=0.1,
            shard_tokens=20_000,
        ),
        options,
    )
    return Dataset(tok_uri, f"{bucket}/{name}/data/train", f"{bucket}/{name}/data/validation")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_job(path: Path, name: str, dataset: Dataset, endpoint: str, kind: str = "clm", **spec: Any) -> Path:
    """A PretrainJob manifest for a tiny model on `dataset`; keyword arguments deep-merge into the spec."""
    base = {
        "tokenizer": {"uri": dataset.tokenizer},
        "data": {"train": dataset.train, "validation": dataset.validation, "sequenceLength": 32, "seed": 5},
        "model": dict(zip(("architecture", "config"), TINY_MODELS.get(kind, TINY_MODELS["mlm"]), strict=True)),
        "objective": {"type": kind},
        "optimizer": {"lr": 1e-2, "warmupSteps": 2, "weightDecay": 0.01},
        "training": {
            "maxSteps": 30,
            "globalBatchSamples": 8,
            "microBatchSize": 2,
            "logEverySteps": 10,
            "evalBatches": 2,
        },
        "storage": {"endpoint": endpoint, "region": "us-east-1"},
        "metrics": {"port": 0},
    }
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "PretrainJob",
        "metadata": {"name": name},
        "spec": deep_merge(base, spec),
    }
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path
