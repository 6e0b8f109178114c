"""A downstream probe of an encoder (or decoder): how well a classifier on its features solves a task the project
ships. "Shortcomings show up when you test on fine-tuning tasks": the pretraining loss alone does not say whether
the features are any good.

Tasks, both from the bundled corpus (no downloads); lines are split into train and test by their document, so no
document is on both sides:
- `language` (line level): the language (or script: en, sv, de, fr, ru, el, zh, ja, code, emoji) of a line. The
  features are the last hidden states mean-pooled over the line's tokens.
- `token-language` (token level): the language of the line a token is in, from that token's own last hidden state,
  so it asks how much of its context a token's vector carries (a shared subword, digit or punctuation mark is only
  placed by its neighbours). Training uses every non-special token of the training lines; the test uses one token
  per test line, at a position fixed by the line's hash, so test examples stay independent for the interval.

Frozen (the default), the classifier is multinomial logistic regression on standardised features (L2, full-batch
L-BFGS), so the result depends on the features, not on probe tuning. Fine-tuned (`FineTuning`, `eval probe
--fine-tune`), a copy of the model and that linear probe as its head are then trained together for a few epochs
(AdamW; LP-FT); the model passed in is not changed. Either way the accuracy comes with a Wilson 95 % interval over
the test examples.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.model import max_positions
from pretrain_trainer.spec_objectives import PROBE_TASKS as TASKS
from pretrain_trainer.storage import StorageOptions

MAX_TOKENS = 64
Encoded = list[tuple[list[int], list[int]]]
"""Each text's token ids and special-token mask (`encode`)."""
TOKEN_TASKS = ("token-language",)


@dataclass(frozen=True)
class ProbeResult:
    task: str
    accuracy: float
    low: float
    high: float
    test_examples: int
    train_examples: int
    classes: int
    fine_tune_epochs: int = 0
    """0: a linear probe on frozen features; else the epochs the encoder was fine-tuned with the head."""

    def format(self) -> str:
        epochs = self.fine_tune_epochs
        how = f" (fine-tuned, {epochs} epoch{'s' if epochs > 1 else ''})" if epochs else ""
        unit = "tokens" if self.task in TOKEN_TASKS else "lines"
        return (
            f"{self.task}{how}: accuracy {self.accuracy:.3f} (95% CI {self.low:.3f}-{self.high:.3f}) on "
            f"{self.test_examples} test {unit}; {self.train_examples} training {unit}, {self.classes} classes, "
            f"chance {1 / self.classes:.3f}"
        )


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound at 0 and 1, unlike the normal approximation)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def language_examples(min_chars: int = 20) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) lists of (line, language); a document's lines all go to one side (by a hash of its id), and
    a line repeated elsewhere (boilerplate) is kept once, so no line is on both sides."""
    train, test = [], []
    seen: set[str] = set()
    for doc in load_bundled_documents():
        side = test if hashlib.sha256(str(doc["id"]).encode()).digest()[0] % 4 == 0 else train
        for line in (raw.strip() for raw in doc["text"].splitlines()):
            if len(line) >= min_chars and line not in seen:
                seen.add(line)
                side.append((line, doc["lang"]))
    return train, test


def spread(items: list, most: int | None) -> list:
    """At most `most` of `items`, evenly spread over the list (a fixed sample: the same every time)."""
    if most is None or len(items) <= most:
        return items
    return [items[i * len(items) // most] for i in range(most)]


@dataclass(frozen=True)
class Item:
    """One probe example: a line (its index), the token position read (None: the mean over the line) and a label."""

    line: int
    position: int | None
    label: int


def encode(tokenizer: Tokenizer, texts: list[str], longest: int) -> Encoded:
    """(ids, special-token mask) of each text, cut to `longest` tokens (at least one token)."""
    out = []
    for e in tokenizer.encode_batch(texts):
        ids, special = e.ids[:longest], e.special_tokens_mask[:longest]
        out.append((ids, special) if ids else ([0], [1]))
    return out


def probe_items(
    task: str, lines: list[tuple[str, str]], encoded: Encoded, labels: list[str], train: bool
) -> list[Item]:
    """The examples of `task` over `lines` (see the module doc)."""
    if task == "language":
        return [Item(i, None, labels.index(label)) for i, (_, label) in enumerate(lines)]
    out = []
    for i, ((text, label), (_, special)) in enumerate(zip(lines, encoded, strict=True)):
        positions = [p for p, s in enumerate(special) if not s]
        if not positions:
            continue
        if not train:
            positions = [positions[hashlib.sha256(text.encode()).digest()[0] % len(positions)]]
        out += [Item(i, p, labels.index(label)) for p in positions]
    return out


def batch_features(
    model: torch.nn.Module,
    encoded: Encoded,
    items: list[Item],
    device: torch.device,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """The feature of each item, [len(items), hidden] in fp32 on `device`: one forward pass over their lines
    (differentiable: the caller chooses no_grad)."""
    lines = list(dict.fromkeys(item.line for item in items))
    width = max(len(encoded[i][0]) for i in lines)
    ids = torch.tensor([encoded[i][0] + [0] * (width - len(encoded[i][0])) for i in lines], device=device)
    mask = torch.tensor([[1] * len(encoded[i][0]) + [0] * (width - len(encoded[i][0])) for i in lines], device=device)
    ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with ctx:
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
    row = {line: k for k, line in enumerate(lines)}
    out = []
    for item in items:
        h, m = hidden[row[item.line]], mask[row[item.line]].unsqueeze(-1)
        out.append((h * m).sum(0) / m.sum() if item.position is None else h[item.position])
    return torch.stack(out)


def by_lines(items: list[Item], lines_per_batch: int) -> list[list[Item]]:
    """`items` in batches holding the items of up to `lines_per_batch` consecutive lines."""
    batches: list[list[Item]] = []
    for item in items:
        if not batches or (item.line != batches[-1][-1].line and len({i.line for i in batches[-1]}) >= lines_per_batch):
            batches.append([])
        batches[-1].append(item)
    return batches


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS). Seeded without touching the
    caller's random state (a probe during training must not change the dropout masks that follow)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


@dataclass(frozen=True)
class FineTuning:
    """How `fine_tune` trains: epochs over the training examples, batches of lines, AdamW's learning rate."""

    epochs: int = 3
    lines_per_batch: int = 16
    lr: float = 1e-4


def fine_tune(
    model: torch.nn.Module,
    encoded: Encoded,
    items: list[Item],
    head: torch.nn.Linear,
    device: torch.device,
    how: FineTuning,
) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """Copies of `model` and `head` trained together on `items` (cross entropy; batches of lines in a seeded order;
    the caller's model, head and random state untouched). Returns both in eval mode.

    The head starts as the linear probe of the frozen features ("LP-FT", Kumar et al., 2022): a random head's
    first gradients would distort the features before it has learnt anything."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        tuned = copy.deepcopy(model).float().train().requires_grad_(True)
        head = copy.deepcopy(head).to(device).requires_grad_(True)
        optimizer = torch.optim.AdamW([*tuned.parameters(), *head.parameters()], lr=how.lr)
        batches = by_lines(items, how.lines_per_batch)
        for _ in range(how.epochs):
            for k in torch.randperm(len(batches)).tolist():
                x = batch_features(tuned, encoded, batches[k], device)
                y = torch.tensor([item.label for item in batches[k]], device=device)
                loss = torch.nn.functional.cross_entropy(head(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return tuned.eval(), head.eval()


def probe_model(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    task: str = "language",
    max_train: int | None = None,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
    fine_tuning: FineTuning | None = None,
) -> ProbeResult:
    """Fit the probe of `task` on `model`'s frozen features, or fine-tune a copy of `model` with it when
    `fine_tuning` is given (at most `max_train` training examples, evenly spread), and score it on the whole test
    set. Leaves `model` in eval mode, its weights unchanged."""
    if task not in TASKS:
        raise ValueError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    device = device or torch.device("cpu")
    train_lines, test_lines = language_examples()
    labels = sorted({lang for _, lang in train_lines + test_lines})
    longest = min(MAX_TOKENS, max_positions(model) or MAX_TOKENS)  # type: ignore[arg-type]
    train_enc = encode(tokenizer, [t for t, _ in train_lines], longest)
    test_enc = encode(tokenizer, [t for t, _ in test_lines], longest)
    train = spread(probe_items(task, train_lines, train_enc, labels, train=True), max_train)
    test = probe_items(task, test_lines, test_enc, labels, train=False)

    @torch.no_grad()
    def features(net: torch.nn.Module, encoded: Encoded, items: list[Item], cast: torch.dtype | None) -> torch.Tensor:
        """Frozen features of `items`, [len(items), hidden], on the CPU."""
        return torch.cat([batch_features(net, encoded, b, device, cast).cpu() for b in by_lines(items, 32)])

    y_test = torch.tensor([item.label for item in test])
    model.eval()
    x_train = features(model, train_enc, train, autocast)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    head = fit_linear((x_train - mean) / std, torch.tensor([item.label for item in train]), len(labels))
    with torch.no_grad():  # the same head on raw features: standardising folded into its weights
        head.bias -= head.weight @ (mean / std)
        head.weight /= std
    if fine_tuning is not None:
        model, head = fine_tune(model, train_enc, train, head, device, fine_tuning)
        autocast = None
    with torch.no_grad():
        predicted = head.to(device)(features(model, test_enc, test, autocast).to(device)).argmax(-1).cpu()
    correct = int((predicted == y_test).sum())
    low, high = wilson_interval(correct, len(test))
    epochs = fine_tuning.epochs if fine_tuning else 0
    return ProbeResult(task, correct / len(test), low, high, len(test), len(train), len(labels), epochs)


def probe_folder(
    uri: str,
    options: StorageOptions | None = None,
    task: str = "language",
    fine_tuning: FineTuning | None = None,
    max_train: int | None = None,
) -> ProbeResult:
    """Probe the Hugging Face folder at `uri` (local or s3://; safetensors weights and tokenizer.json)."""
    from transformers import AutoModel

    from pretrain_trainer.model import download_folder

    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        folder = download_folder(uri, options, Path(tmp))
        if not (folder / "tokenizer.json").exists():
            raise FileNotFoundError(f"{uri}: no tokenizer.json; probe a folder exported with its tokenizer")
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        model = AutoModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()  # T5, BART: the encoder's features
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return probe_model(model.to(device), tokenizer, task, max_train, device, fine_tuning=fine_tuning)
