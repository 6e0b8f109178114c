"""Checks that run before the model is built and before the first step, so that a job that cannot train fails in
seconds with a message naming the data set or field and the fix, instead of after hours or deep inside torch.

    model_config_problems(spec.model)          # misspelt model.config keys, with a did-you-mean (needs transformers)
    teacher_vocabulary_problems(spec, options)  # a distillation teacher of another vocabulary (where reachable)
    check_data(train, validation, ...)          # sets too short for one sample, a validation set too small to use
    check_token_ids(window, vocab_size, where)   # ids the embedding does not have (every batch, before its forward)
"""

from __future__ import annotations

import difflib
import inspect
import logging
from functools import cache

import numpy as np

from pretrain_trainer.config import ModelSpec, PretrainJobSpec, Problem
from pretrain_trainer.data.loader import sample_count
from pretrain_trainer.data.shards import ShardError, ShardSet
from pretrain_trainer.storage import StorageError, StorageOptions, open_store

log = logging.getLogger(__name__)


@cache
def config_keys(architecture: str) -> tuple[type, frozenset[str]]:
    """The transformers config class of `architecture` and every key it declares: its constructor's parameters, the
    attributes a default instance holds (the shared PretrainedConfig ones included) and its aliases (`hidden_size`
    for GPT-2's `n_embd`)."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[architecture]
    params = {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    attributes = {k for k in cls().to_dict() if not k.startswith("_")}
    return cls, frozenset(params | attributes | set(getattr(cls, "attribute_map", {})))


def model_config_problems(spec: ModelSpec, path: str = "spec.model.config") -> list[Problem]:
    """Keys of `model.config` that the architecture's config class does not use: transformers keeps an unknown key
    as an inert attribute, so a misspelt `n_layers` would silently train the default 12-layer model. A key the class
    does not declare but consumes (a legacy spelling such as Llama's `rope_theta`) is accepted."""
    if not spec.config:
        return []
    cls, known = config_keys(spec.architecture)
    try:
        built = cls(**spec.config)
    except (TypeError, ValueError) as err:
        return [Problem(path, f"transformers' {cls.__name__} rejects these settings: {err}")]
    out = []
    for key in spec.config:
        if key in known or key not in vars(built):
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"see transformers' {cls.__name__} for its settings"
        out.append(Problem(f"{path}.{key}", f"not a setting of {spec.architecture} ({cls.__name__}); {hint}"))
    return out


def teacher_vocabulary_problems(spec: PretrainJobSpec, options: StorageOptions | None) -> list[Problem]:
    """A distillation teacher whose tokenizer.json is not the job's tokenizer (or that has none), checked where both
    can be read now (local folders, or a store that answers); an unreachable one is left to the trainer's start,
    which checks it again. Reading a model folder without config.json is the trainer's error too."""
    from tokenizers import Tokenizer

    from pretrain_trainer.objectives.distillation import TEACHER_FIELD, vocabulary_mismatch
    from pretrain_trainer.tokenizer.load import read_tokenizer

    teacher = spec.objective.distillation.teacher
    if not teacher:
        return []
    try:
        job, _ = read_tokenizer(spec.tokenizer.uri, options)
        store = open_store(teacher, options)
        keys = {o.key for o in store.list("")}
        if "config.json" not in keys:
            return []
        theirs = Tokenizer.from_str(store.read("tokenizer.json").decode()) if "tokenizer.json" in keys else None
    except (StorageError, OSError, ValueError) as err:
        log.debug("teacher vocabulary not checked: %s", err)
        return []
    problem = vocabulary_mismatch(theirs, job, teacher, spec.tokenizer.uri)
    return [Problem(TEACHER_FIELD, problem)] if problem else []


def check_data(
    train: ShardSet,
    validation: ShardSet | None,
    *,
    sequence_length: int,
    causal: bool,
    global_batch_samples: int,
    eval_batches: int,
    vocab_size: int,
) -> None:
    """Refuse shard sets that cannot be trained or validated on, and sets whose token ids the model cannot embed.

    Raises ShardError naming the set, the field that points at it, and what to change."""
    window = sequence_length + 1 if causal else sequence_length
    for shards, field in ((train, "data.train"), (validation, "data.validation")):
        if shards is None:
            continue
        if shards.index.tokenizer.vocab_size > vocab_size:
            raise ShardError(
                f"spec.{field}: {shards.store.uri} was prepared for a vocabulary of "
                f"{shards.index.tokenizer.vocab_size} tokens, but the model embeds {vocab_size}; re-run "
                "`pretrainjob prepare` with the job's tokenizer"
            )
        if sample_count(shards.num_tokens, sequence_length, causal) < 1:
            raise ShardError(
                f"spec.{field}: {shards.store.uri} holds {shards.num_tokens} tokens, fewer than one sample of "
                f"{window} (data.sequenceLength {sequence_length}{' + 1' if causal else ''}); add data or lower "
                "data.sequenceLength"
            )
    if validation is None:
        return
    samples = sample_count(validation.num_tokens, sequence_length, causal)
    if samples < global_batch_samples:
        raise ShardError(
            f"spec.data.validation: {validation.store.uri} holds {samples} samples of {sequence_length} tokens, "
            f"fewer than one global batch ({global_batch_samples} samples), so there is nothing to validate on; "
            "prepare a larger validation split (prepare --validation-fraction), lower the global batch, or remove "
            "data.validation"
        )
    if samples < eval_batches * global_batch_samples:
        log.warning(
            "spec.data.validation: %s holds %d global batches; validation runs over those, not training.evalBatches=%d",
            validation.store.uri,
            samples // global_batch_samples,
            eval_batches,
        )


def check_token_ids(window: np.ndarray, vocab_size: int, where: str) -> None:
    """Raise ShardError if a token id of `window` is outside the model's embedding (an index with the wrong dtype,
    or shards of another tokenizer), before the forward pass would fail with an IndexError far from the cause."""
    if window.size and (int(window.max()) >= vocab_size or int(window.min()) < 0):
        bad = int(window.max()) if int(window.max()) >= vocab_size else int(window.min())
        raise ShardError(
            f"{where}: token id {bad} is outside the model's vocabulary of {vocab_size} ids; the shards' dtype or "
            "contents do not match the job's tokenizer. Re-run `pretrainjob prepare` with the job's tokenizer"
        )


__all__ = ["check_data", "check_token_ids", "config_keys", "model_config_problems", "teacher_vocabulary_problems"]
