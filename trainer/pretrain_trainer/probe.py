"""A downstream probe of an encoder (or decoder): how well a linear classifier on its frozen features solves a task
the project ships. "Shortcomings show up when you test on fine-tuning tasks": the pretraining loss alone does not
say whether the features are any good.

Task `language`: the language (or script: en, sv, de, fr, ru, el, zh, ja, code, emoji) of a line of the bundled
corpus. Lines are split into train and test by their document, so no document is on both sides. Features are the
model's last hidden states, mean-pooled over the line's tokens; the classifier is multinomial logistic regression
(L2, full-batch L-BFGS), so the result depends on the features, not on probe tuning. The accuracy comes with a
Wilson 95 % interval over the test lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.config import PROBE_TASKS as TASKS
from pretrain_trainer.model import max_positions
from pretrain_trainer.storage import StorageOptions

MAX_TOKENS = 64


@dataclass(frozen=True)
class ProbeResult:
    task: str
    accuracy: float
    low: float
    high: float
    test_examples: int
    train_examples: int
    classes: int

    def format(self) -> str:
        return (
            f"{self.task}: accuracy {self.accuracy:.3f} (95% CI {self.low:.3f}-{self.high:.3f}) on "
            f"{self.test_examples} test lines; {self.train_examples} training lines, {self.classes} classes, "
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


@torch.no_grad()
def features(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    batch: int = 32,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean-pooled last hidden states of each text's first MAX_TOKENS tokens (fewer where the model has fewer
    positions), [len(texts), hidden], on the CPU (the model runs on `device`, under `autocast` when given)."""
    device = device or torch.device("cpu")
    ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    longest = min(MAX_TOKENS, max_positions(model) or MAX_TOKENS)  # type: ignore[arg-type]
    out = []
    pad = 0
    for start in range(0, len(texts), batch):
        encoded = [e.ids[:longest] or [pad] for e in tokenizer.encode_batch(texts[start : start + batch])]
        width = max(len(ids) for ids in encoded)
        ids = torch.tensor([e + [pad] * (width - len(e)) for e in encoded], device=device)
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded], device=device)
        with ctx:
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
        out.append(((hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)).cpu())
    return torch.cat(out)


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


def probe_model(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    task: str = "language",
    max_train: int | None = None,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
) -> ProbeResult:
    """Fit the probe of `task` on `model`'s frozen features (at most `max_train` training examples, evenly spread)
    and score it on the whole test set. Leaves `model` in eval mode."""
    if task not in TASKS:
        raise ValueError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    train, test = language_examples()
    labels = sorted({lang for _, lang in train + test})
    train = spread(train, max_train)
    model.eval()
    x_train = features(model, tokenizer, [t for t, _ in train], device=device, autocast=autocast)
    x_test = features(model, tokenizer, [t for t, _ in test], device=device, autocast=autocast)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    y_train = torch.tensor([labels.index(lang) for _, lang in train])
    y_test = torch.tensor([labels.index(lang) for _, lang in test])
    head = fit_linear((x_train - mean) / std, y_train, len(labels))
    with torch.no_grad():
        correct = int((head((x_test - mean) / std).argmax(-1) == y_test).sum())
    low, high = wilson_interval(correct, len(test))
    return ProbeResult(task, correct / len(test), low, high, len(test), len(train), len(labels))


def probe_folder(uri: str, options: StorageOptions | None = None, task: str = "language") -> ProbeResult:
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
    return probe_model(model, tokenizer, task)
