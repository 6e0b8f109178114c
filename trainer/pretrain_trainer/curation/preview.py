"""`pretrainjob data preview JOB.yaml --samples N`: the first N training samples exactly as the trainer builds them.

"Check out the masks": the samples come from the job's own loader (`batches.job_loader`, the training order from
global position 0) and the objective's own batch code (`Objective.batch`, with the per-sample masking
seeds of training), decoded through the job's tokenizer. Causal LM shows each window with its document
boundaries (EOS); masked LM shows every chosen position with its label beside it:

    [MASK→word]   replaced by the mask token; the model must predict "word"
    {other→word}  replaced by a random token "other"
    (=word)       kept as it is, but still a prediction target

Encoder–decoder objectives show the encoder's input (T5's sentinels <extra_id_N>, BART's <mask>, as the tokenizer
spells them; padding left out) and, below it, the decoder's target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain_trainer.batches import is_causal, job_loader
from pretrain_trainer.config import Job
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.objectives import IGNORE_INDEX, Seq2Seq, build_objective, objective_class
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.token_roles import TokenRoles, require_mask
from pretrain_trainer.tokenizer.load import LoadedTokenizer, load_tokenizer

BOUNDARY = "\n   ──── document boundary (EOS) ────\n"


@dataclass(frozen=True)
class PreviewSample:
    position: int
    """Global position in the training order (0 is the first sample of step 1)."""
    input_ids: list[int]
    labels: list[int]

    def as_dict(self) -> dict[str, object]:
        return {"position": self.position, "input_ids": self.input_ids, "labels": self.labels}


def preview_samples(job: Job, samples: int) -> tuple[list[PreviewSample], LoadedTokenizer, TokenRoles | None]:
    """The first `samples` samples of the job's training order, as model inputs and labels."""
    if samples < 1:
        raise ValueError(f"--samples: must be positive, got {samples}")
    spec = job.spec
    options = StorageOptions.from_spec(spec.storage)
    tok = load_tokenizer(spec.tokenizer.uri, options)
    roles = None if is_causal(spec) else TokenRoles.from_tokenizer(tok.tokenizer, eos_id=tok.eos_id)
    objective = build_objective(spec, roles)
    shards = ShardSet.open(spec.data.train, options, tok.fingerprint)
    out: list[PreviewSample] = []
    with job_loader(spec, shards) as loader:
        while len(out) < samples:
            position = loader.samples_consumed
            window = torch.from_numpy(next(loader))
            batch = objective.batch(window, position)
            for row in range(window.shape[0]):
                inputs, labels = batch["input_ids"][row], batch["labels"][row]
                if isinstance(objective, Seq2Seq):  # padding is not part of the sample
                    inputs = inputs[batch["attention_mask"][row].bool()]
                    labels = labels[labels != IGNORE_INDEX]
                out.append(PreviewSample(position + row, inputs.tolist(), labels.tolist()))
    return out[:samples], tok, roles


def _decode(tok: LoadedTokenizer, ids: list[int]) -> str:
    return tok.tokenizer.decode(ids, skip_special_tokens=False)


def render_causal(sample: PreviewSample, tok: LoadedTokenizer) -> str:
    """The window's text, split at EOS into its documents (a window usually straddles two or more)."""
    ids = sample.input_ids
    pieces, start = [], 0
    for i, token in enumerate(ids):
        if token == tok.eos_id:
            pieces.append(_decode(tok, ids[start:i]))
            start = i + 1
    pieces.append(_decode(tok, ids[start:]))
    return BOUNDARY.join(pieces)


def render_masked(sample: PreviewSample, tok: LoadedTokenizer, roles: TokenRoles) -> str:
    """Unchosen runs decoded as text; every chosen position marked with its label beside it."""
    mask_id = require_mask(roles)
    parts: list[str] = []
    run: list[int] = []
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label == IGNORE_INDEX:
            run.append(token)
            continue
        if run:
            parts.append(_decode(tok, run))
            run = []
        want = _decode(tok, [label]).strip()
        if token == mask_id:
            parts.append(f"[MASK→{want}]")
        elif token != label:
            parts.append(f"{{{_decode(tok, [token]).strip()}→{want}}}")
        else:
            parts.append(f"(={want})")
    if run:
        parts.append(_decode(tok, run))
    text = " ".join(p.strip() for p in parts if p.strip())
    return text.replace(tok.eos_token, BOUNDARY) if tok.eos_token else text


def render_seq2seq(sample: PreviewSample, tok: LoadedTokenizer) -> str:
    """The encoder's input and the decoder's target, each decoded with its special tokens shown."""
    return f"input:  {_decode(tok, sample.input_ids)}\ntarget: {_decode(tok, sample.labels)}"


def format_preview(job: Job, samples: list[PreviewSample], tok: LoadedTokenizer, roles: TokenRoles | None) -> str:
    spec = job.spec
    if issubclass(objective_class(spec.objective.type), Seq2Seq):
        return _format_seq2seq(job, samples, tok)
    lines = [
        f"{job.name}: {spec.objective.type} on {spec.data.train}, sequence length {spec.data.sequence_length}, "
        f"data seed {spec.data.seed}, training seed {spec.training.seed}"
    ]
    if roles is not None:
        lines.append("legend: [MASK→label] masked · {random→label} random token · (=label) kept as is")
    for s in samples:
        targets = sum(label != IGNORE_INDEX for label in s.labels)
        lines.append(f"\n── sample {s.position} ({len(s.input_ids)} tokens, {targets} prediction targets) ──")
        lines.append(render_masked(s, tok, roles) if roles is not None else render_causal(s, tok))
    return "\n".join(lines)


def _format_seq2seq(job: Job, samples: list[PreviewSample], tok: LoadedTokenizer) -> str:
    spec = job.spec
    lines = [
        f"{job.name}: {spec.objective.type} on {spec.data.train}, sequence length {spec.data.sequence_length} "
        f"(raw windows of {objective_class(spec.objective.type).raw_length(spec)} tokens), data seed "
        f"{spec.data.seed}, training seed {spec.training.seed}"
    ]
    for s in samples:
        lines.append(f"\n── sample {s.position} ({len(s.input_ids)} input tokens, {len(s.labels)} target tokens) ──")
        lines.append(render_seq2seq(s, tok))
    return "\n".join(lines)
