"""Common function words per language, for the "does this read like prose in its language" signal.

Gopher's filter asks for at least two of eight English function words; these lists extend that idea to the
languages the language identifier reports most often. Chinese and Japanese are written without spaces, so their
"words" are single characters (particles and the most frequent function characters). A language without a list
is not judged on this signal.
"""

from __future__ import annotations

_LISTS = {
    "en": "the be to of and that have with a in is it for on was as at by this not are from or",
    "sv": "och att det som en på är av för med till den har de inte om ett men var jag så från vid",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an",
    "fr": "le la les de des et à un une est pour que qui dans en du pas sur au avec ce il elle par",
    "es": "el la de que y a en un una es por los las con para del se no al lo como",
    "it": "il la di che e a in un una è per non sono del della con si le gli al",
    "nl": "de het een en van in is dat op te zijn voor met niet die er aan ook",
    "pt": "o a de que e do da em um uma para com não os as no na se por",
    "da": "og i at det en til er som på de med for af ikke den har et var",
    "nb": "og i det som en på er til av for med at de ikke den har et var",
    "no": "og i det som en på er til av for med at de ikke den har et var",
    "fi": "ja on ei se että oli hän mutta kun niin myös tai ovat kuin sen",
    "pl": "i w na z że się do nie to jest o jak ale po co tak",
    "ru": "и в не на что с по это как а он она к из у за от так но",
    "uk": "і в не на що з по це як а він вона до з у за від так але",
    "el": "και το η ο να του της την σε με για από που τα στο στη οι ένα μια είναι",
    "tr": "ve bir bu da de için ile ne çok daha gibi olan",
    "zh": "的 了 在 是 我 有 和 人 这 一 不 他 们 上 个 到 说 也 就 你",
    "ja": "の に は を た が で て と し れ さ ある いる も な か",
}

STOP_WORDS: dict[str, frozenset[str]] = {lang: frozenset(words.split()) for lang, words in _LISTS.items()}
