"""The spec's objective and evaluation sections (`spec.objective`, `spec.evaluation`): what the model learns
(causal or masked LM, ELECTRA, T5 span corruption, BART denoising, distillation, NSP/SOP) and how it is probed.
Part of the one typed schema in `config`; each objective module in `objectives/` reads its section here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pretrain_trainer.spec_schema import spec_field

MASKING_STRATEGIES = ("token", "whole-word", "span")


@dataclass(frozen=True)
class MlmSpec:
    """The masked-LM settings: their one home (defaults, bounds, docs); the trainer's `MaskingConfig` is built
    from them and checked by the same rules."""

    probability: float = spec_field(
        0.15,
        doc="Share of tokens selected for prediction.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    )
    masking: str = spec_field(
        "token",
        doc="token: independent tokens; whole-word: all sub-tokens of a word "
        "together; span: SpanBERT-style geometric spans.",
        enum=MASKING_STRATEGIES,
    )
    mask_fraction: float = spec_field(
        0.8, doc="Share of selected tokens replaced by the mask token.", minimum=0.0, maximum=1.0
    )
    random_fraction: float = spec_field(
        0.1,
        doc="Share of selected tokens replaced by a random token (the rest stay unchanged).",
        minimum=0.0,
        maximum=1.0,
    )
    mean_span_length: float = spec_field(3.0, doc="Mean span length for masking: span.", minimum=1.0)
    max_span_length: int = spec_field(10, doc="Longest span for masking: span.", minimum=1)

    def cross_field_problems(self, name: Callable[[str], str]) -> list[str]:
        """The bounds across fields (each field's own are declared with it); `name` spells a field in messages."""
        out = []
        total = self.mask_fraction + self.random_fraction
        if total > 1.0 + 1e-9:
            out.append(f"{name('mask_fraction')} + {name('random_fraction')} = {total:g} exceeds 1")
        if self.mean_span_length > self.max_span_length:
            out.append(
                f"{name('mean_span_length')} = {self.mean_span_length:g} exceeds "
                f"{name('max_span_length')} = {self.max_span_length}"
            )
        return out


@dataclass(frozen=True)
class ElectraSpec:
    """ELECTRA (Clark et al., 2020): a small masked-LM generator and a replaced-token-detection discriminator
    trained jointly; the discriminator is `model`, the generator is derived from it."""

    generator_size: float = spec_field(
        0.25,
        doc="Generator width as a share of the discriminator's: hidden size, intermediate size and attention "
        "heads scale by it, depth is kept (the paper's best: 1/4 to 1/2).",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    )
    generator_config: dict[str, Any] = spec_field(
        factory=dict,
        doc="Explicit ElectraConfig overrides of the generator (win over generatorSize); vocabulary, positions "
        "and embedding size always come from the discriminator, whose embeddings it shares.",
    )
    discriminator_weight: float = spec_field(
        50.0, doc="λ in loss = generator MLM loss + λ · discriminator loss.", minimum=0.0, exclusive_minimum=True
    )


@dataclass(frozen=True)
class SpanCorruptionSpec:
    """T5's span corruption (Raffel et al., 2020): noise spans replaced by sentinels in the encoder input, the
    decoder predicts the sentinels and the dropped spans. The loader reads a longer raw window, so that the encoder
    input is exactly data.sequenceLength tokens (T5's compute_input_and_target_lengths)."""

    noise_density: float = spec_field(
        0.15,
        doc="Share of the raw window's tokens that are noise (dropped from the input, predicted by the decoder).",
        minimum=0.0,
        maximum=0.5,
        exclusive_minimum=True,
    )
    mean_noise_span_length: float = spec_field(
        3.0, doc="Mean length of a noise span in tokens (number of spans = noise tokens / this).", minimum=1.0
    )


@dataclass(frozen=True)
class DenoisingSpec:
    """BART's denoising (Lewis et al., 2020): the encoder reads a corrupted window, the decoder reconstructs the
    original window."""

    mask_ratio: float = spec_field(
        0.3,
        doc="Text infilling: share of the window's tokens covered by masked spans (0 disables infilling).",
        minimum=0.0,
        maximum=0.9,
    )
    poisson_lambda: float = spec_field(
        3.0,
        doc="Mean of the Poisson distribution of span lengths; each span becomes one mask token and a span of "
        "length 0 inserts one.",
        minimum=0.0,
        exclusive_minimum=True,
    )
    permute_sentences: bool = spec_field(
        True, doc="Shuffle the sentences of each document in the window (document boundaries stay in place)."
    )
    delete_ratio: float = spec_field(
        0.0, doc="Token deletion: share of the window's tokens deleted outright (0 disables).", minimum=0.0, maximum=0.5
    )


@dataclass(frozen=True)
class DistillationSpec:
    """Knowledge distillation (DistilBERT's triple loss; defaults from its recipe) of a frozen teacher into the
    trained model, on top of objective.type clm or mlm."""

    teacher: str = spec_field(
        "",
        doc="Hugging Face folder of the teacher (local path or s3://; safetensors), with the job's tokenizer; "
        "empty: no distillation.",
    )
    temperature: float = spec_field(
        2.0, doc="Softmax temperature T of the KD loss.", minimum=0.0, exclusive_minimum=True
    )
    alpha_kd: float = spec_field(5.0, doc="Weight of KL(teacher ‖ student) at temperature T, times T².", minimum=0.0)
    alpha_task: float = spec_field(2.0, doc="Weight of the objective's own MLM or CLM loss.", minimum=0.0)
    alpha_cos: float = spec_field(
        1.0, doc="Weight of the cosine loss between last hidden states (0 unless the widths match).", minimum=0.0
    )
    student_init: str = spec_field(
        "config",
        doc="config: the student is model.architecture/model.config from scratch; teacher: the teacher's "
        "architecture with the layers of layerMap (DistilBERT).",
        enum=("config", "teacher"),
    )
    layer_map: list[int] = spec_field(
        factory=list,
        doc="studentInit: teacher: the teacher layer each student layer starts from; default every other layer "
        "(0, 2, 4, ...).",
    )


SENTENCE_TASKS = ("none", "nsp", "sop")
SENTENCE_ARCHITECTURES = {"nsp": ("bert",), "sop": ("bert", "albert")}
"""Which architectures' *ForPreTraining class carries each sentence task's head."""


@dataclass(frozen=True)
class SentenceSpec:
    """A sentence-level second loss beside masked LM (BERT's NSP, ALBERT's SOP), built from the document
    boundaries of the packed stream. Off by default: RoBERTa found NSP rarely helps."""

    task: str = spec_field(
        "none",
        doc="none; nsp: next-sentence prediction (BERT; architecture bert): is segment B the continuation of A or "
        "from another document of the sample; sop: sentence-order prediction (ALBERT; architecture albert or bert): "
        "are two consecutive segments of one document in order or swapped. Needs type: mlm; the model is then the "
        "architecture's *ForPreTraining (exported so that BertForPreTraining / AlbertForPreTraining load it).",
        enum=SENTENCE_TASKS,
    )
    weight: float = spec_field(
        1.0,
        doc="Weight of the sentence loss: loss = MLM loss + weight · sentence loss (each a mean over the global "
        "batch).",
        minimum=0.0,
        exclusive_minimum=True,
    )


@dataclass(frozen=True)
class ObjectiveSpec:
    type: str = spec_field(
        "clm",
        doc="clm: next-token prediction (decoders); mlm: masked LM (encoders); electra: replaced-token "
        "detection with a masked-LM generator (architecture electra); span-corruption: T5's sentinel spans and "
        "denoising: BART's text infilling and sentence permutation (encoder–decoders: t5, bart).",
        enum=("clm", "mlm", "electra", "span-corruption", "denoising"),
    )
    mlm: MlmSpec = spec_field(factory=MlmSpec, doc="Masking settings for type: mlm, and the generator's for electra.")
    electra: ElectraSpec = spec_field(factory=ElectraSpec, doc="Generator and loss weight for type: electra.")
    span_corruption: SpanCorruptionSpec = spec_field(
        factory=SpanCorruptionSpec, doc="Noise density and span length for type: span-corruption."
    )
    denoising: DenoisingSpec = spec_field(
        factory=DenoisingSpec, doc="Infilling, sentence permutation and deletion for type: denoising."
    )
    distillation: DistillationSpec = spec_field(
        factory=DistillationSpec, doc="Distil a frozen teacher into the model (type: clm or mlm)."
    )
    sentence: SentenceSpec = spec_field(
        factory=SentenceSpec, doc="BERT's NSP or ALBERT's SOP as a second loss for type: mlm (off by default)."
    )


PROBE_TASKS = ("language", "token-language")
"""The probe tasks the project ships (`probe.py`): the language of a bundled-corpus line, from its mean-pooled
features; the language of a token's line, from that token's own features."""


def _default_probe_tasks() -> list[str]:
    return ["language"]


@dataclass(frozen=True)
class ProbesSpec:
    """Downstream probes during training: `pretrainjob eval probe` on the current model, by rank 0."""

    every_steps: int = spec_field(
        0,
        doc="Steps between probe runs (0: none; with a value, also one at the end). Rank 0 fits a linear probe on "
        "the current model's frozen features (the other ranks wait at the next step) and exports its accuracy "
        "with a 95 % interval to /metrics (pretrain_probe_accuracy), train.jsonl, summary.json and the job's "
        "status (probeAccuracy).",
        minimum=0,
    )
    tasks: list[str] = spec_field(
        factory=_default_probe_tasks,
        doc="Probe tasks: language (the language of a line of the bundled corpus, from mean-pooled features), "
        "token-language (the language of a token's line, from that token's features alone).",
    )
    max_examples: int = spec_field(
        1000,
        doc="At most this many training examples per task and run (a fixed, evenly spread sample), which bounds a "
        "run's time; the test set is always whole, so runs compare.",
        minimum=10,
    )


@dataclass(frozen=True)
class EvaluationSpec:
    probes: ProbesSpec = spec_field(factory=ProbesSpec, doc="Downstream probes of the model during training.")
