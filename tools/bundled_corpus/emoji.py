"""Emoji documents: English or Swedish prose with ZWJ sequences, skin tones, flags and keycaps."""

from __future__ import annotations

import random

from tools.bundled_corpus.european import ENGLISH, SWEDISH
from tools.bundled_corpus.language import build_sentence

_ZWJ = "\u200d"  # ZERO WIDTH JOINER
_VS16 = "\ufe0f"  # VARIATION SELECTOR-16: emoji presentation


def _zwj(*parts: str) -> str:
    return _ZWJ.join(parts)


def _flag(country: str) -> str:
    """A flag from a two-letter country code, as a pair of regional indicator symbols."""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in country)


def _keycap(key: str) -> str:
    return key + _VS16 + "\u20e3"  # COMBINING ENCLOSING KEYCAP


def _skin(emoji: str, tone: int) -> str:
    """``emoji`` with Fitzpatrick skin-tone modifier ``tone`` (1 light … 5 dark)."""
    return emoji + chr(0x1F3FB + tone - 1)


TECHNOLOGIST = _zwj("👩", "💻")
FAMILY = _zwj("👨", "👩", "👧", "👦")
RAINBOW_FLAG = _zwj("🏳" + _VS16, "🌈")
COOK = _zwj("👨", "🍳")
THUMBS_UP = _skin("👍", 3)
HEART = "❤" + _VS16

EMOJI: tuple[str, ...] = (
    "😀", "😂", "🎉", "☕", "🚲", "🍎", "📚", "🔥", "✅", "🙂", "🐟", "🌧" + _VS16, "☀" + _VS16, HEART,
    THUMBS_UP, _skin("👋", 5), _skin("🙌", 2), _skin("💪", 4),
    TECHNOLOGIST, COOK, _zwj("👩", "🔬"), FAMILY, RAINBOW_FLAG, _zwj(HEART, "🔥"), _zwj(_skin("🧑", 4), "🚀"),
    _flag("SE"), _flag("FI"), _flag("NO"), _flag("DK"), _flag("DE"), _flag("FR"), _flag("GR"), _flag("JP"),
    _keycap("1"), _keycap("2"), _keycap("3"), _keycap("#"), _keycap("*"), "🔟",
)  # fmt: skip

EMOJI_FIXED: dict[str, tuple[str, ...]] = {
    "en": (
        f"Coding all night {TECHNOLOGIST}☕",
        f"Great job, team {THUMBS_UP}🎉",
        f"Press {_keycap('1')} to continue or {_keycap('#')} for help.",
        f"Family picnic today {FAMILY}🧺",
        f"Hello from Stockholm {_flag('SE')}!",
        f"Happy Pride {RAINBOW_FLAG}",
    ),
    "sv": (
        f"Kodar hela natten {TECHNOLOGIST}",
        f"Heja Sverige {_flag('SE')}{_flag('SE')}!",
        f"Tryck {_keycap('1')} för svenska, {_keycap('2')} för engelska.",
        f"Tack för i dag {HEART}",
        "Fika? ☕🍰 Ja tack!",
        f"Åsa {COOK} lagar ärtsoppa i kväll.",
    ),
}


def _emoji_run(rng: random.Random) -> str:
    return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))


def emoji_document(rng: random.Random) -> str:
    """English or Swedish prose with emoji after, or just before the end of, some sentences."""
    lang = rng.choice((ENGLISH, SWEDISH))
    paragraphs = []
    for _ in range(rng.randint(1, 4)):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            roll = rng.random()
            if roll < 0.2:
                sentences.append(rng.choice(EMOJI_FIXED[lang.code]))
                continue
            sentence = build_sentence(lang, rng)
            if roll < 0.5:
                sentence = f"{sentence} {_emoji_run(rng)}"
            elif roll < 0.7 and sentence[-1] in ".!?":
                sentence = f"{sentence[:-1]} {_emoji_run(rng)}{sentence[-1]}"
            sentences.append(sentence)
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


#: Very short emoji documents (fewer than 20 characters).
SHORT_EMOJI = (THUMBS_UP, _flag("SE") + HEART)
