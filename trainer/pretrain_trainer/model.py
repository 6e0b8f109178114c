"""Build the model: a `transformers` architecture from a config (scratch), or a Hugging Face checkpoint to continue
pretraining (DAPT/TAPT), optionally with its vocabulary extended to the job's tokenizer.

Vocabulary extension: the job's tokenizer must keep every token of the checkpoint's tokenizer at the same id and
append new ones (`pretrainjob tokenizer extend` makes such a tokenizer). The embedding matrix grows to the new
size; old rows are kept bit for bit and each new row starts as the mean of the embeddings of the pieces the
checkpoint's tokenizer split that token into, which trains faster than random rows.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, PreTrainedModel

from pretrain_trainer.config import ModelSpec
from pretrain_trainer.storage import StorageOptions, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    num_params: int
    num_layers: int
    hidden_size: int
    vocab_size: int
    extended_from: int | None = None
    """The checkpoint's vocabulary size, when the vocabulary was extended."""


def download_folder(uri: str, options: StorageOptions | None, into: Path) -> Path:
    """Copy every object under `uri` into a local folder (Hugging Face loaders need files)."""
    store = open_store(uri, options)
    objects = store.list("")
    if not any(o.key == "config.json" for o in objects):
        raise FileNotFoundError(
            f"{store.uri}: no config.json; model.from must point at a Hugging Face save_pretrained folder"
        )
    for obj in objects:
        target = into / obj.key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read(obj.key))
    return into


def _config_kwargs(model: PreTrainedModel) -> dict[str, int]:
    cfg = model.config
    return {
        "num_layers": getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 0),
        "hidden_size": getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 0),
    }


def scratch_config(spec: ModelSpec, tokenizer: Tokenizer, special: dict[str, int | None]) -> Any:
    """The transformers config of a new model: the spec's overrides, the tokenizer's size and special ids."""
    overrides = dict(spec.config)
    overrides["vocab_size"] = tokenizer.get_vocab_size(with_added_tokens=True)
    for role in ("pad", "bos", "eos", "decoder_start"):
        if special.get(role) is not None:
            overrides.setdefault(f"{role}_token_id", special[role])
    if special.get("decoder_start") is not None and special.get("eos") is not None:
        overrides.setdefault("forced_eos_token_id", special["eos"])  # BART's generate ends on the job's EOS
    return AutoConfig.for_model(spec.architecture, **overrides)


def _new_rows(base: Tokenizer, job: Tokenizer, old_size: int, embeddings: torch.Tensor) -> dict[int, torch.Tensor]:
    """Initial embedding of every token the job's tokenizer adds: the mean of its pieces under the base tokenizer."""
    rows = {}
    fallback = embeddings[:old_size].mean(dim=0)
    # An added token's own text: decoding it can garble it (byte-level BPE reads "ö" in it as one byte).
    added = {i: t.content for i, t in job.get_added_tokens_decoder().items()}
    for token_id in range(old_size, job.get_vocab_size(with_added_tokens=True)):
        text = added.get(token_id) or job.decode([token_id], skip_special_tokens=False)
        pieces = [i for i in base.encode(text, add_special_tokens=False).ids if i < old_size]
        rows[token_id] = embeddings[pieces].mean(dim=0) if pieces else fallback
    return rows


def _check_superset(base: Tokenizer, job: Tokenizer, uri: str) -> None:
    base_vocab = base.get_vocab(with_added_tokens=True)
    job_vocab = job.get_vocab(with_added_tokens=True)
    moved = [t for t, i in base_vocab.items() if job_vocab.get(t) != i]
    if moved:
        raise ValueError(
            f"spec.tokenizer.uri: {len(moved)} tokens of the checkpoint's tokenizer ({uri}) are missing or have "
            f"other ids in the job's tokenizer (e.g. {moved[:3]}); an extended vocabulary must keep every old id. "
            "Make it with `pretrainjob tokenizer extend`."
        )


def load_folder(
    folder: Path, auto_class: type, spec: ModelSpec, tokenizer: Tokenizer
) -> tuple[PreTrainedModel, int | None]:
    """A model from a local Hugging Face folder, its vocabulary checked against (and if asked, extended to) the
    job's tokenizer; returns it and the vocabulary size it was extended from (None: not extended)."""
    # Weights from safetensors only (a pickled .bin could run code) and never the folder's own model code.
    try:
        model = auto_class.from_pretrained(
            folder, attn_implementation="sdpa", use_safetensors=True, trust_remote_code=False
        )
    except OSError as err:
        raise ValueError(
            f"spec.model.from: {spec.from_}: {err}; only safetensors weights are loaded (save_pretrained writes "
            "them by default)"
        ) from None
    base_file = folder / "tokenizer.json"
    base = Tokenizer.from_file(str(base_file)) if base_file.exists() else None
    old_size = model.get_input_embeddings().weight.shape[0]
    new_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if base is not None:  # also without extension: a same-size tokenizer with other ids would scramble the model
        _check_superset(base, tokenizer, spec.from_)
    if new_size <= old_size:
        return model, None
    if not spec.extend_vocab:
        raise ValueError(
            f"spec.model.extendVocab: the job's tokenizer has {new_size} tokens but the checkpoint's embeddings "
            f"have {old_size}; set extendVocab: true to grow them, or use the checkpoint's own tokenizer"
        )
    if base is None:
        raise ValueError(
            f"spec.model.from: {spec.from_} has no tokenizer.json, so the vocabulary cannot be "
            "checked and extended; save the checkpoint with its tokenizer"
        )
    with torch.no_grad():
        rows = _new_rows(base, tokenizer, old_size, model.get_input_embeddings().weight)
        model.resize_token_embeddings(new_size, mean_resizing=False)
        weight = model.get_input_embeddings().weight
        for token_id, row in rows.items():
            weight[token_id] = row
    log.info("extended vocabulary from %d to %d tokens", old_size, new_size)
    return model, old_size


def build_model(
    spec: ModelSpec,
    auto_class: type,
    tokenizer: Tokenizer,
    special: dict[str, int | None],
    options: StorageOptions | None = None,
) -> tuple[PreTrainedModel, ModelInfo]:
    """The model for this job on the CPU, in fp32, with SDPA attention; the trainer moves and wraps it.

    `auto_class` is the objective's transformers class (AutoModelForCausalLM, AutoModelForMaskedLM, ...)."""
    extended_from = None
    if spec.init == "scratch":
        model = auto_class.from_config(scratch_config(spec, tokenizer, special), attn_implementation="sdpa")
    else:
        with tempfile.TemporaryDirectory(prefix="pretrained-") as tmp:
            folder = download_folder(spec.from_, options, Path(tmp))
            model, extended_from = load_folder(folder, auto_class, spec, tokenizer)
    return model, model_info(model, model, extended_from)


def model_info(model: torch.nn.Module, main: PreTrainedModel, extended_from: int | None = None) -> ModelInfo:
    """Sizes of `model` (every parameter once) with the depth, width and vocabulary of its `main` network."""
    return ModelInfo(
        num_params=sum(p.numel() for p in model.parameters()),
        vocab_size=main.get_input_embeddings().weight.shape[0],
        extended_from=extended_from,
        **_config_kwargs(main),
    )


def max_positions(model: PreTrainedModel) -> int | None:
    """Usable positions of the model (RoBERTa reserves two for its padding offset), or None if unbounded."""
    cfg = model.config
    positions = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if positions and cfg.model_type in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2
    return positions
