"""Which language identifier to ship: accuracy, speed and wheel size of the candidates on the bundled corpus.

    python -m venv /tmp/langid-venv && /tmp/langid-venv/bin/pip install -r benchmarks/requirements.txt
    PYTHONPATH=trainer /tmp/langid-venv/bin/python benchmarks/langid_candidates.py

Candidates are those whose model ships inside their package (nothing downloaded at run time): py3langid
(langid.py's model, numpy only), langdetect (Google's language-detection profiles, pure Python) and lingua
(Rust, high-accuracy models). gcld3 is left out: it has no wheel for current Pythons and needs protobuf's
compiler to build. The sample is the bundled corpus's natural-language documents (en sv de fr el ru zh ja) plus
its emoji documents (Swedish or English text with emoji) plus mixed documents made by joining two documents of
different languages, where a candidate is right if its top answer is either language.
Figures only; nothing asserts on them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pretrain_trainer.bundled_corpus import load_bundled_documents

NATURAL = ("en", "sv", "de", "fr", "el", "ru", "zh", "ja")


def _sample() -> list[tuple[str, str, set[str]]]:
    """(group, text, acceptable answers)."""
    docs = load_bundled_documents()
    sample = [("natural", d["text"], {d["lang"]}) for d in docs if d["lang"] in NATURAL]
    sample += [("emoji", d["text"], {"sv", "en"}) for d in docs if d["lang"] == "emoji"]
    rng = random.Random(0)
    natural = [d for d in docs if d["lang"] in NATURAL and len(d["text"]) > 80]
    for _ in range(60):
        a, b = rng.sample(natural, 2)
        if a["lang"] != b["lang"]:
            sample.append(("mixed", a["text"] + "\n\n" + b["text"], {a["lang"], b["lang"]}))
    return sample


def _py3langid() -> Callable[[str], str]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return lambda text: ident.classify(text)[0]


def _langdetect() -> Callable[[str], str]:
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0

    def classify(text: str) -> str:
        try:
            return detect(text).split("-")[0]
        except LangDetectException:
            return "und"

    return classify


def _lingua() -> Callable[[str], str]:
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().build()

    def classify(text: str) -> str:
        lang = detector.detect_language_of(text)
        return lang.iso_code_639_1.name.lower() if lang else "und"

    return classify


def main() -> None:
    sample = _sample()
    groups = {g: sum(1 for s in sample if s[0] == g) for g in ("natural", "emoji", "mixed")}
    print(f"{len(sample)} documents {groups} ({sum(len(t) for _, t, _ in sample) / 1e3:.0f} k characters)")
    print(f"{'candidate':<12}{'load s':>8}{'docs/s':>10}{'natural':>9}{'emoji':>8}{'mixed':>8}{'short<20':>10}")
    for name, make in (("py3langid", _py3langid), ("langdetect", _langdetect), ("lingua", _lingua)):
        started = time.perf_counter()
        classify = make()
        classify("warm up")
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        answers = [classify(text) for _, text, _ in sample]
        seconds = time.perf_counter() - started
        results: dict[str, list[bool]] = {"natural": [], "emoji": [], "mixed": [], "short": []}
        for (group, text, want), got in zip(sample, answers, strict=True):
            results[group].append(got in want)
            if len(text) < 20:
                results["short"].append(got in want)
        share = {k: sum(v) / len(v) if v else float("nan") for k, v in results.items()}
        print(
            f"{name:<12}{loaded:>8.2f}{len(sample) / seconds:>10.0f}{share['natural']:>9.1%}{share['emoji']:>8.1%}"
            f"{share['mixed']:>8.1%}{share['short']:>10.1%}"
        )


if __name__ == "__main__":
    main()
