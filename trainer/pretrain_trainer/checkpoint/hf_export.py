"""Writing a model's weights in Hugging Face `save_pretrained` format, with its tokenizer files beside them, so
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` read the output directly."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

import torch

from pretrain_trainer.checkpoint.transfer import upload_dir
from pretrain_trainer.storage import StorageNotFound, StorageOptions, open_store, split_uri

log = logging.getLogger("pretrain_trainer.checkpoint")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers; FSDP2 keeps the class."""
    inner = model
    while True:
        nxt = getattr(inner, "module", None) or getattr(inner, "_orig_mod", None)
        if not isinstance(nxt, torch.nn.Module):
            return inner
        inner = nxt


def write_hf(
    model: torch.nn.Module,
    full_state: dict[str, Any],
    tokenizer_uri: str | None,
    out: str,
    options: StorageOptions | None,
    staging_dir: str | None,
) -> str:
    """Write `full_state` (the gathered, unsharded state dict of `model`) and the tokenizer to `out`; returns the
    output store's URI. Runs on one rank only."""
    started = time.monotonic()
    inner = unwrap(model)
    if not hasattr(inner, "save_pretrained"):
        raise TypeError(f"export_hf needs a transformers PreTrainedModel, got {type(inner).__name__}")
    out_store = open_store(out, options)
    with tempfile.TemporaryDirectory(prefix="hf-export-", dir=staging_dir) as tmp:
        inner.save_pretrained(tmp, state_dict=full_state)
        if tokenizer_uri:
            copy_tokenizer(tokenizer_uri, options, tmp)
        entries = upload_dir(out_store, tmp)
    log.info(
        "exported %s: %s in %.1fs", out_store.uri, ", ".join(entry.key for entry in entries), time.monotonic() - started
    )
    return out_store.uri


def copy_tokenizer(tokenizer_uri: str, options: StorageOptions | None, dest: str) -> None:
    """Copy the tokenizer files into `dest`: every top-level file of a directory, or a tokenizer.json and
    the known tokenizer files beside it."""
    if tokenizer_uri.endswith(".json"):
        root, name = split_uri(tokenizer_uri)
        store = open_store(root, options)
        names = [name, *(n for n in TOKENIZER_FILES if n != name and store.exists(n))]
    else:
        store = open_store(tokenizer_uri, options)
        names = [info.key for info in store.list("") if "/" not in info.key]
        if not names:
            raise StorageNotFound(store.uri, "no tokenizer files here; pass the directory holding tokenizer.json")
    for name in names:
        with open(os.path.join(dest, name), "wb") as handle:
            handle.write(store.read(name))


__all__ = ["TOKENIZER_FILES", "copy_tokenizer", "unwrap", "write_hf"]
