"""The bundled multilingual demo corpus: a small, deterministic, self-written set of documents.

What it is for: the demo and the tests need a corpus that ships with the project (nothing can be downloaded)
and that is varied enough for tokenizer round-trip audits to mean something. It covers English, Swedish,
German, French, Greek, Russian, Simplified Chinese, Japanese, source code (Python, a Makefile with tabs,
JavaScript) and emoji (ZWJ sequences, skin tones, flags, keycaps). The classic trap it exposes is a
lower-casing, accent-stripping tokenizer that turns Swedish "Åsa i Örebro" into "asa i orebro".

On purpose it also contains about 2 % exact duplicate documents (same text, different id), a handful of very
short documents (fewer than 20 characters) and two documents with unusual whitespace (double spaces,
trailing spaces, a line of only spaces, tabs, a no-break space, a trailing newline), so that deduplication,
minimum-length filters and byte-exact round trips have work to do. All text is Unicode NFC and uses "\\n"
line breaks only.

Documents are dicts ``{"id": str, "lang": str, "text": str}``; ``lang`` is one of ``LANGUAGES``. The text is
built from hand-written per-language word lists and sentence templates by one shared sentence builder, with a
seeded ``random.Random`` per language, so the output depends on nothing but the seed (not on ``hash()``,
set ordering, time or locale).

The committed files live in ``pretrain_trainer/bundled_corpus/<lang>.jsonl``. After changing this module,
regenerate them with::

    python -m pretrain_trainer.corpus            # rewrites the bundled files
    python -m pretrain_trainer.corpus OUT_DIR    # or writes a copy elsewhere

and commit the result; a unit test checks that regenerating gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LANGUAGES",
    "bundled_corpus_dir",
    "bundled_corpus_files",
    "generate_documents",
    "load_bundled_documents",
    "write_corpus",
]

#: Language codes (and kinds) in generation order; each becomes one ``<lang>.jsonl`` file.
LANGUAGES: tuple[str, ...] = ("en", "sv", "de", "fr", "el", "ru", "zh", "ja", "code", "emoji")

#: Each language's generated documents stop growing once their text reaches this many UTF-8 bytes.
TARGET_BYTES_PER_LANGUAGE = 30_000

#: Share of all documents that are added again as exact duplicates (with a new id).
DUPLICATE_SHARE = 0.02


def _words(text: str) -> tuple[str, ...]:
    """Split a ``" | "``-separated word list into a tuple of stripped entries."""
    return tuple(part.strip() for part in text.split("|") if part.strip())


@dataclass(frozen=True)
class Language:
    """The data tables the shared sentence builder needs for one natural language.

    Slots in ``clauses`` and ``templates``: ``{S}`` subject, ``{S2}`` a different subject, ``{V}`` verb,
    ``{O}`` object, ``{P}`` place, ``{T}`` time, ``{N}`` a formatted integer, ``{X}`` a decimal number,
    ``{PCT}`` a percentage, ``{D}`` a date, ``{Y}`` a year, ``{Q}`` a quoted phrase.
    """

    code: str
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    places: tuple[str, ...]
    times: tuple[str, ...]
    #: Clauses without final punctuation; the first is the plain order used after a connector.
    clauses: tuple[str, ...]
    #: Connectors placed between two clauses, with their punctuation and spaces.
    joins: tuple[str, ...]
    #: Complete sentences (with punctuation) that bring in numbers, dates, quotes and parentheses.
    templates: tuple[str, ...]
    fixed: tuple[str, ...]
    #: Very short stand-alone documents (fewer than 20 characters).
    short: tuple[str, ...]
    months: tuple[str, ...]
    date_formats: tuple[str, ...]
    quote: tuple[str, str]
    quotes: tuple[str, ...]
    thousands: str
    decimal: str
    percent: str = "{n}%"
    ends: tuple[str, ...] = (".", ".", ".", ".", "!")
    sentence_sep: str = " "
    bullet: str = "- "


ENGLISH = Language(
    code="en",
    subjects=_words(
        "Anna | the teacher | my neighbour | Dr. Patel | the old fisherman | a young engineer | Mr. O'Brien"
        " | our team | Grandma | the new intern | Zoë | the baker on the corner"
    ),
    verbs=_words(
        "bought | repaired | painted | read | borrowed | sold | found | described | photographed | carried"
        " | ordered | forgot"
    ),
    objects=_words(
        "a red bicycle | an old map of the city | three loaves of bread | the quarterly report"
        " | a second-hand piano | the broken window | a box of apples | two tickets to the concert"
        " | a long letter | the kitchen table | an umbrella | a jar of honey | a café au lait"
    ),
    places=_words(
        "in London | at the market | near the harbour | in the garden | on the train to Leeds"
        " | at the library | behind the station | in a small café | by the river | at the office"
        " | in Edinburgh | in New York"
    ),
    times=_words(
        "yesterday | on Monday | this morning | last summer | in 2019 | before lunch | after the storm"
        " | at half past seven | two weeks ago | during the holidays"
    ),
    clauses=("{S} {V} {O} {P}", "{T} {S} {V} {O} {P}", "{S} {V} {O} {P} {T}", "{T}, {S} {V} {O}"),
    joins=(", and ", ", but ", "; later, ", " because ", ", so ", " while "),
    templates=(
        "On {D}, {N} people gathered {P}.",
        "{S} said: {Q}.",
        "Prices rose by {PCT} in a year (figures from {Y}).",
        "The library, built in {Y}, holds {N} books.",
        "The average temperature was {X} °C — warmer than expected.",
        "The next meeting is on {D}.",
        "Did you know that {S} {V} {O} {P}?",
        "{S} and {S2} counted {N} boxes (not {X}, as the label said).",
    ),
    fixed=(
        "How are you?",
        "Better late than never.",
        "Where is the station, please?",
        "It's a lovely day, isn't it?",
        "I'd like a cup of tea and a scone.",
        "Don't count your chickens before they hatch.",
        "The café on the corner closes at 5 p.m.",
        "Meet me at 7:30 — not a minute later!",
        "The naïve résumé was rejected; the coöperative one wasn't.",
        "We'll see… maybe tomorrow.",
    ),
    short=("OK", "Thanks!"),
    months=_words(
        "January | February | March | April | May | June | July | August | September | October | November | December"
    ),
    date_formats=("{month} {d}, {y}", "{y}-{mm}-{dd}"),
    quote=("“", "”"),
    quotes=_words(
        "We'll be there by noon | It's raining again | Don't worry about it | I'll be right back | What a good idea"
    ),
    thousands=",",
    decimal=".",
)

SWEDISH = Language(
    code="sv",
    subjects=_words(
        "Åsa | Åke | Örjan | Östen | Älva | min äldre bror | läraren | grannen från Ängelholm | Björn | Märta"
        " | Göran | den nya kollegan | Ölands bästa bagare"
    ),
    verbs=_words(
        "köpte | lagade | målade | läste | lånade | sålde | hittade | glömde | beställde | fotograferade"
        " | bar | öppnade | ärvde"
    ),
    objects=_words(
        "en röd cykel | en gammal karta över Örebro | tre limpor bröd | årsrapporten | ett begagnat piano"
        " | det trasiga fönstret | en låda äpplen | två biljetter till konserten | ett långt brev"
        " | köksbordet | ett paraply | en burk honung | en skål ärtsoppa | ett örngott | en ödla av trä"
    ),
    places=_words(
        "i Örebro | i Ängelholm | på Ålidhem | i Umeå | vid Öresund | i Åre | på torget i Växjö | i Malmö"
        " | i Göteborg | vid ån | på Öland | i Älmhult | i Åmål | på kontoret"
    ),
    times=_words(
        "i går | i morse | förra sommaren | i fjol | på lördagen | efter stormen | före lunch"
        " | klockan halv åtta | för två veckor sedan | i våras | under påsken"
    ),
    # Swedish main clauses are verb-second: a leading time or place moves the subject after the verb.
    clauses=("{S} {V} {O} {P}", "{T} {V} {S} {O} {P}", "{S} {V} {O} {T}", "{P} {V} {S} {O} {T}"),
    joins=(", och ", ", men ", " medan ", ", så ", " eftersom "),
    templates=(
        "Den {D} samlades {N} personer {P}.",
        "{S} sa: {Q}.",
        "Priserna steg med {PCT} på ett år (enligt siffror från {Y}).",
        "Biblioteket, som byggdes {Y}, har {N} böcker.",
        "Medeltemperaturen var {X} grader – varmare än väntat.",
        "Nästa möte hålls den {D}.",
        "Varför {V} {S} {O}?",
        "{S} och {S2} räknade {N} lådor (inte {X}, som det stod på etiketten).",
    ),
    fixed=(
        "Hur mår du?",
        "Det är ingen ko på isen.",
        "Ät, sov och var glad!",
        "Öppet köp gäller i trettio dagar.",
        "Ängarna runt Åre blommar i juni.",
        "Åsa åkte skidor i Åre hela förmiddagen.",
        "Var ligger närmaste busshållplats?",
        "Älgen stod mitt på vägen utanför Örnsköldsvik.",
        "Borta bra men hemma bäst.",
        "Vi fikar klockan tre, som vanligt.",
    ),
    short=("Hej då!", "Tack så mycket!"),
    months=_words(
        "januari | februari | mars | april | maj | juni | juli | augusti | september | oktober | november | december"
    ),
    date_formats=("{d} {month} {y}", "{y}-{mm}-{dd}"),
    quote=("”", "”"),
    quotes=_words("Det är inte så farligt | Vi ses på fredag | Ta det lugnt | Jag kommer strax | Vilken bra idé"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
)

GERMAN = Language(
    code="de",
    subjects=_words(
        "Jürgen | Frau Müller | der Bäcker | die Lehrerin | mein Nachbar | Herr Schäfer | Björn aus Köln"
        " | die Ärztin | Günther | unsere Großmutter | der Förster | Jörg"
    ),
    verbs=_words(
        "kaufte | reparierte | malte | las | verkaufte | fand | vergaß | bestellte | fotografierte | trug"
        " | öffnete | suchte"
    ),
    objects=_words(
        "ein rotes Fahrrad | eine alte Karte von München | drei Brötchen | den Quartalsbericht"
        " | ein gebrauchtes Klavier | das kaputte Fenster | eine Kiste Äpfel | zwei Karten für das Konzert"
        " | einen langen Brief | den Küchentisch | einen Regenschirm | ein Glas Honig"
        " | eine große Tüte Süßigkeiten | ein Stück Käse"
    ),
    places=_words(
        "in München | in Köln | auf dem Markt | am Hafen | im Garten | im Zug nach Düsseldorf"
        " | in der Bibliothek | hinter dem Bahnhof | in einem kleinen Café | an der Hauptstraße | in Zürich"
        " | in Überlingen | in Lübeck | in Nürnberg | an der Spree"
    ),
    times=_words(
        "gestern | am Montag | heute Morgen | letzten Sommer | im Jahr 2019 | vor dem Mittagessen"
        " | nach dem Gewitter | um halb acht | vor zwei Wochen | während der Mittagspause"
    ),
    # German main clauses are verb-second; only coordinating connectors keep that order after them.
    clauses=("{S} {V} {O} {P}", "{T} {V} {S} {O} {P}", "{S} {V} {T} {O} {P}", "{P} {V} {S} {T} {O}"),
    joins=(", und ", ", aber ", ", denn ", ", doch ", " – und "),
    templates=(
        "Am {D} kamen {N} Menschen {P} zusammen.",
        "{S} sagte: {Q}.",
        "Die Preise stiegen innerhalb eines Jahres um {PCT} (Stand: {Y}).",
        "Die Bibliothek, erbaut im Jahr {Y}, besitzt {N} Bücher.",
        "Die Durchschnittstemperatur lag bei {X} °C – wärmer als erwartet.",
        "Das nächste Treffen findet am {D} statt.",
        "Warum {V} {S} {O}?",
        "{S} und {S2} zählten {N} Kisten (nicht {X}, wie auf dem Etikett stand).",
    ),
    fixed=(
        "Wie geht es Ihnen?",
        "Übung macht den Meister.",
        "Wo ist der Bahnhof, bitte?",
        "Das Wetter ist heute schön, oder?",
        "Ich hätte gern ein Stück Käsekuchen.",
        "Aller Anfang ist schwer.",
        "Der Fußballplatz liegt direkt an der Straße.",
        "Viele Grüße aus Österreich!",
        "Morgen früh fährt der Zug um 6:45 Uhr ab.",
        "Schöne Grüße an die ganze Familie!",
    ),
    short=("Grüß Gott!", "Tschüss!"),
    months=_words(
        "Januar | Februar | März | April | Mai | Juni | Juli | August | September | Oktober | November | Dezember"
    ),
    date_formats=("{d}. {month} {y}", "{dd}.{mm}.{y}"),
    quote=("„", "“"),
    quotes=_words("Das ist mir Wurst | Bis morgen | Keine Sorge | Ich komme gleich zurück | Was für eine gute Idee"),
    thousands=".",
    decimal=",",
    percent="{n} %",
)

FRENCH = Language(
    code="fr",
    subjects=_words(
        "Élodie | le boulanger | ma voisine | M. Lefèvre | le vieux pêcheur | une jeune ingénieure"
        " | Françoise | notre équipe | le maître d'hôtel | Hélène | Jérôme | la directrice"
    ),
    verbs=_words(
        "a acheté | a réparé | a peint | a lu | a emprunté | a vendu | a trouvé | a décrit | a photographié"
        " | a porté | a commandé | a oublié | a reçu"
    ),
    objects=_words(
        "un vélo rouge | une vieille carte de Paris | trois baguettes | le rapport trimestriel"
        " | un piano d'occasion | la fenêtre cassée | une boîte de pommes | deux billets pour le concert"
        " | une longue lettre | la table de la cuisine | un parapluie | un pot de miel | un cœur en chocolat"
        " | des œufs frais | un gâteau à la crème"
    ),
    places=_words(
        "à Paris | au marché | près du port | dans le jardin | dans le train pour Besançon"
        " | à la bibliothèque | derrière la gare | dans un petit café | au bord de la Seine | à Genève"
        " | à Orléans | à Nîmes | en Provence | à Québec"
    ),
    times=_words(
        "hier | lundi | ce matin | l'été dernier | en 2019 | avant le déjeuner | après l'orage"
        " | à sept heures et demie | il y a deux semaines | pendant les vacances | à Noël"
    ),
    clauses=("{S} {V} {O} {P}", "{T}, {S} {V} {O} {P}", "{S} {V} {O} {P} {T}", "{P}, {S} {V} {O} {T}"),
    joins=(", et ", ", mais ", ", car ", ", donc ", " ; ensuite, "),
    templates=(
        "Le {D}, {N} personnes se sont réunies {P}.",
        "{S} a dit : {Q}.",
        "Les prix ont augmenté de {PCT} en un an (chiffres de {Y}).",
        "La bibliothèque, construite en {Y}, compte {N} livres.",
        "La température moyenne était de {X} °C — plus chaud que prévu.",
        "La prochaine réunion aura lieu le {D}.",
        "Pourquoi {S} {V} {O} ?",
        "{S} et {S2} ont compté {N} caisses (et non {X}, comme l'indiquait l'étiquette).",
    ),
    fixed=(
        "Ça va ? Oui, très bien, merci.",
        "Où est la gare, s'il vous plaît ?",
        "Qui vivra verra.",
        "Petit à petit, l'oiseau fait son nid.",
        "Il était une fois un roi très sage…",
        "Je prends un café crème et un croissant.",
        "Quelle belle journée !",
        "À bientôt, j'espère !",
        "L'hôpital se trouve à côté de l'église.",
        "Noël approche : les rues sont déjà décorées.",
    ),
    short=("Ça va ?", "À demain."),
    months=_words(
        "janvier | février | mars | avril | mai | juin | juillet | août | septembre | octobre | novembre | décembre"
    ),
    date_formats=("{d} {month} {y}", "{dd}/{mm}/{y}"),
    quote=("« ", " »"),
    quotes=_words("C'est la vie | On verra bien | Ne t'inquiète pas | J'arrive tout de suite | Quelle bonne idée"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
    ends=(".", ".", ".", ".", " !"),
)

GREEK = Language(
    code="el",
    subjects=_words(
        "η Ελένη | ο Γιώργος | ο δάσκαλος | η γειτόνισσά μου | ο παππούς | η Μαρία | ο ψαράς | η γιατρός"
        " | ο Νίκος | η ομάδα μας | ο φούρναρης | η Σοφία"
    ),
    verbs=_words(
        "αγόρασε | επισκεύασε | ζωγράφισε | διάβασε | δανείστηκε | πούλησε | βρήκε | περιέγραψε"
        " | φωτογράφισε | κουβάλησε | παρήγγειλε | ξέχασε"
    ),
    objects=_words(
        "ένα κόκκινο ποδήλατο | έναν παλιό χάρτη της πόλης | τρία καρβέλια ψωμί | την τριμηνιαία έκθεση"
        " | ένα μεταχειρισμένο πιάνο | το σπασμένο παράθυρο | ένα κουτί μήλα | δύο εισιτήρια για τη συναυλία"
        " | ένα μακρύ γράμμα | το ξύλινο τραπέζι της κουζίνας | μια ομπρέλα | ένα βάζο μέλι"
    ),
    places=_words(
        "στην Αθήνα | στη Θεσσαλονίκη | στη λαϊκή αγορά | κοντά στο λιμάνι | στον κήπο"
        " | στο τρένο για την Πάτρα | στη βιβλιοθήκη | πίσω από τον σταθμό | σε ένα μικρό καφενείο"
        " | δίπλα στη θάλασσα | στο Ηράκλειο | στην Κέρκυρα"
    ),
    times=_words(
        "χθες | τη Δευτέρα | σήμερα το πρωί | το περασμένο καλοκαίρι | το 2019 | πριν από το μεσημεριανό"
        " | μετά την καταιγίδα | στις επτάμισι | πριν από δύο εβδομάδες | το Πάσχα"
    ),
    clauses=("{S} {V} {O} {P}", "{T} {S} {V} {O} {P}", "{S} {V} {O} {P} {T}", "{P} {S} {V} {O} {T}"),
    joins=(", και ", ", αλλά ", " ενώ ", ", οπότε ", " επειδή "),
    # The Greek question mark is written ";" (U+003B): U+037E is not NFC and normalises to it.
    templates=(
        "Στις {D} συγκεντρώθηκαν {N} άνθρωποι {P}.",
        "{S} είπε: {Q}.",
        "Οι τιμές αυξήθηκαν κατά {PCT} μέσα σε έναν χρόνο (στοιχεία του {Y}).",
        "Η βιβλιοθήκη, που χτίστηκε το {Y}, έχει {N} βιβλία.",
        "Η μέση θερμοκρασία ήταν {X} βαθμοί — πιο ζεστά από ό,τι περιμέναμε.",
        "Η επόμενη συνάντηση θα γίνει στις {D}.",
        "Γιατί {S} {V} {O};",
        "{S} και {S2} μέτρησαν {N} κιβώτια (όχι {X}, όπως έγραφε η ετικέτα).",
    ),
    fixed=(
        "Τι κάνεις;",
        "Καλημέρα σε όλους!",
        "Πού είναι ο σταθμός;",
        "Σιγά σιγά γίνεται η αγουρίδα μέλι.",
        "Ευχαριστώ πολύ για τη βοήθεια.",
        "Μαθαίνω ελληνικά εδώ και δύο χρόνια.",
        "Θα τα πούμε αύριο το απόγευμα.",
        "Πόσο κοστίζει αυτό;",
        "Η θάλασσα ήταν ήρεμη όλη την ημέρα.",
        "Ένα χελιδόνι δεν φέρνει την άνοιξη.",
    ),
    short=("Ευχαριστώ!", "Καλό βράδυ."),
    months=_words(
        "Ιανουαρίου | Φεβρουαρίου | Μαρτίου | Απριλίου | Μαΐου | Ιουνίου | Ιουλίου | Αυγούστου"
        " | Σεπτεμβρίου | Οκτωβρίου | Νοεμβρίου | Δεκεμβρίου"
    ),
    date_formats=("{d} {month} {y}", "{d}/{m}/{y}"),
    quote=("«", "»"),
    quotes=_words("Όλα θα πάνε καλά | Τα λέμε αύριο | Μην ανησυχείς | Έρχομαι αμέσως | Καλή ιδέα"),
    thousands=".",
    decimal=",",
)

RUSSIAN = Language(
    code="ru",
    subjects=_words(
        "Ирина | Алексей | учитель | моя соседка | старый рыбак | молодой инженер | Пётр Ильич"
        " | наша команда | бабушка | Фёдор | Наталья Сергеевна | Андрей"
    ),
    # Present tense (habitual) so that the verb does not have to agree with the subject's gender.
    verbs=_words(
        "покупает | чинит | рисует | читает | продаёт | находит | описывает | фотографирует | несёт"
        " | заказывает | забывает | берёт"
    ),
    objects=_words(
        "красный велосипед | старую карту города | три буханки хлеба | квартальный отчёт"
        " | подержанное пианино | разбитое окно | ящик яблок | два билета на концерт | длинное письмо"
        " | кухонный стол | зонтик | банку мёда | жёлтый чайник"
    ),
    places=_words(
        "в Москве | на рынке | в порту | в саду | в поезде до Казани | в библиотеке | за вокзалом"
        " | в маленьком кафе | на берегу реки | в Санкт-Петербурге | в Новосибирске | на даче"
        " | в Нижнем Новгороде"
    ),
    times=_words(
        "каждый день | по понедельникам | утром | летом | иногда | в выходные | обычно | по вечерам"
        " | каждую пятницу | зимой | раз в неделю"
    ),
    clauses=("{S} {T} {V} {O} {P}", "{T} {S} {V} {O} {P}", "{S} {V} {O} {P}", "{P} {S} {T} {V} {O}"),
    joins=(", а ", ", но ", ", и ", ", потому что ", ", поэтому "),
    templates=(
        "{D} {P} собралось {N} человек.",
        "{S} говорит: {Q}.",
        "За год цены выросли на {PCT} (данные на {D}).",
        "В библиотеке, построенной в {Y} году, хранится {N} книг.",
        "Средняя температура составила {X} градуса — теплее, чем ожидалось.",
        "Следующее собрание состоится {D}.",
        "Почему {S} {V} {O}?",
        "{S} и {S2} насчитали {N} ящиков (а не {X}, как было написано на этикетке).",
    ),
    fixed=(
        "Как дела?",
        "Всё хорошо, спасибо!",
        "Где находится вокзал?",
        "Тише едешь — дальше будешь.",
        "Без труда не выловишь и рыбку из пруда.",
        "Я изучаю русский язык уже два года.",
        "Ёлка стоит в углу гостиной.",
        "Давайте встретимся завтра в семь.",
        "Сколько это стоит?",
        "Извините, вы не подскажете, который час?",
    ),
    short=("Привет!", "Да, конечно."),
    months=_words(
        "января | февраля | марта | апреля | мая | июня | июля | августа | сентября | октября | ноября | декабря"
    ),
    date_formats=("{d} {month} {y} года", "{dd}.{mm}.{y}"),
    quote=("«", "»"),
    quotes=_words("Всё будет хорошо | До встречи | Не волнуйся | Я скоро приду | Это отличная идея"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
)

CHINESE = Language(
    code="zh",
    subjects=_words(
        "小明 | 王老师 | 我的邻居 | 李医生 | 那位老渔夫 | 一位年轻的工程师 | 张阿姨 | 我们团队 | 奶奶"
        " | 陈先生 | 新来的实习生 | 刘女士"
    ),
    verbs=_words("买了 | 修好了 | 画了 | 读了 | 借了 | 卖了 | 找到了 | 拍了 | 搬走了 | 订了 | 带回了 | 送来了"),
    objects=_words(
        "一辆红色的自行车 | 一张旧地图 | 三个面包 | 季度报告 | 一架二手钢琴 | 一扇旧窗户 | 一箱苹果"
        " | 两张音乐会的票 | 一封长信 | 厨房的桌子 | 一把雨伞 | 一罐蜂蜜 | 一台新电脑"
    ),
    places=_words(
        "北京 | 上海的菜市场 | 港口附近 | 花园里 | 去杭州的火车上 | 图书馆 | 车站后面 | 一家小咖啡馆"
        " | 河边 | 办公室 | 广州 | 成都 | 超市"
    ),
    times=_words("昨天 | 上周一 | 今天早上 | 去年夏天 | 2019年 | 午饭前 | 暴风雨过后 | 七点半 | 两个星期前 | 春节期间"),
    clauses=("{S}在{P}{V}{O}", "{T}，{S}在{P}{V}{O}", "{S}{T}在{P}{V}{O}"),
    joins=("，但是", "，而且", "，所以", "；后来", "，同时"),
    templates=(
        "{D}，{P}共有{N}人参加了活动。",
        "{S}说：{Q}",
        "据{S}介绍，今年的销量增长了{PCT}（与{Y}年相比）。",
        "这座建于{Y}年的图书馆共有{N}本书。",
        "下一次会议定于{D}举行。",
        "那天的平均气温是{X}摄氏度，比预想的暖和。",
        "{S}和{S2}数了{N}个箱子（不是标签上写的{X}个）。",
    ),
    fixed=(
        "今天天气真好！",
        "请问，火车站怎么走？",
        "谢谢你的帮助。",
        "我正在学习中文。",
        "周末你打算做什么？",
        "我最近在读《红楼梦》。",
        "一分耕耘，一分收获。",
        "欲速则不达。",
        "这家店的饺子非常好吃。",
        "请稍等一下。",
    ),
    short=("谢谢。", "好的，没问题。"),
    months=(),
    date_formats=("{y}年{m}月{d}日",),
    quote=("“", "”"),
    quotes=_words("没关系。 | 明天见！ | 路上小心。 | 我马上就到。 | 这是个好主意。"),
    thousands=",",
    decimal=".",
    ends=("。", "。", "。", "。", "！"),
    sentence_sep="",
)

JAPANESE = Language(
    code="ja",
    subjects=_words(
        "田中さん | 佐藤先生 | 隣の人 | 年配の漁師 | 若いエンジニア | 山田さん | 私たちのチーム | 祖母"
        " | 鈴木さん | 新しいインターン | アンナさん | 店長"
    ),
    verbs=_words(
        "買いました | 直しました | 描きました | 読みました | 借りました | 売りました | 見つけました"
        " | 説明しました | 撮りました | 運びました | 注文しました | 忘れました"
    ),
    objects=_words(
        "赤い自転車 | 古い地図 | 三冊の本 | 四半期の報告書 | 中古のピアノ | 壊れた窓 | りんごの箱"
        " | コンサートのチケット | 長い手紙 | 台所のテーブル | 傘 | はちみつの瓶 | 新しいノートパソコン"
    ),
    places=_words(
        "東京 | 市場 | 港の近く | 庭 | 大阪行きの電車の中 | 図書館 | 駅の裏 | 小さなカフェ | 川のそば"
        " | オフィス | 京都 | 札幌 | コンビニ"
    ),
    times=_words(
        "昨日 | 月曜日に | 今朝 | 去年の夏 | 2019年に | 昼ごはんの前に | 嵐のあとで | 七時半に | 二週間前に | お正月に"
    ),
    clauses=("{S}は{P}で{O}を{V}", "{T}、{S}は{P}で{O}を{V}", "{S}は{T}{P}で{O}を{V}"),
    joins=("が、", "。そして、", "。それから、", "。しかし、"),
    templates=(
        "{D}、{P}で{N}人が集まりました。",
        "{S}は{Q}と言いました。",
        "{S}によると、売り上げは{PCT}増えました（{Y}年と比べて）。",
        "{Y}年に建てられたこの図書館には、{N}冊の本があります。",
        "次の会議は{D}です。",
        "その日の平均気温は{X}度で、思ったより暖かかったです。",
        "{S}と{S2}は箱を{N}個数えました（ラベルには{X}個と書いてありました）。",
    ),
    fixed=(
        "今日はいい天気ですね。",
        "すみません、駅はどこですか？",
        "ありがとうございます！",
        "お疲れさまでした。",
        "少々お待ちください。",
        "日本語を勉強しています。",
        "コーヒーとケーキをお願いします。",
        "電車が十分遅れています。",
        "週末は何をしますか？",
        "ゆっくり休んでください。",
    ),
    short=("ありがとう。", "はい、わかりました。"),
    months=(),
    date_formats=("{y}年{m}月{d}日",),
    quote=("「", "」"),
    quotes=_words("また明日 | 大丈夫です | 気をつけてね | いただきます | もう少し待ってください"),
    thousands=",",
    decimal=".",
    ends=("。", "。", "。", "。", "！"),
    sentence_sep="",
    bullet="・",
)

NATURAL_LANGUAGES: tuple[Language, ...] = (
    ENGLISH,
    SWEDISH,
    GERMAN,
    FRENCH,
    GREEK,
    RUSSIAN,
    CHINESE,
    JAPANESE,
)

# --- the shared sentence builder -------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")


def _format_int(lang: Language, n: int) -> str:
    """Format ``n`` with the language's thousands separator."""
    return f"{n:,}".replace(",", lang.thousands)


def _slot_value(name: str, lang: Language, rng: random.Random, filled: dict[str, str]) -> str:
    """Draw the value of one template slot; ``filled`` holds this sentence's earlier values."""
    if name == "S2":
        return rng.choice([s for s in lang.subjects if s != filled.get("S")])
    simple = {"S": lang.subjects, "V": lang.verbs, "O": lang.objects, "P": lang.places, "T": lang.times}
    if name in simple:
        return rng.choice(simple[name])
    if name == "N":
        return _format_int(lang, rng.randint(2, rng.choice((99, 9_999, 250_000))))
    if name == "X":
        return f"{rng.randint(0, 40)}{lang.decimal}{rng.randint(1, 9)}"
    if name == "PCT":
        return lang.percent.format(n=rng.randint(2, 60))
    if name == "Y":
        return str(rng.randint(1850, 2024))
    if name == "Q":
        return lang.quote[0] + rng.choice(lang.quotes) + lang.quote[1]
    if name == "D":
        year, month, day = rng.randint(1995, 2025), rng.randint(1, 12), rng.randint(1, 28)
        month_name = lang.months[month - 1] if lang.months else str(month)
        return rng.choice(lang.date_formats).format(
            y=year, m=month, d=day, mm=f"{month:02d}", dd=f"{day:02d}", month=month_name
        )
    raise KeyError(f"unknown template slot {{{name}}}")


def _fill(template: str, lang: Language, rng: random.Random) -> str:
    """Replace every ``{SLOT}`` in ``template``, left to right; a slot repeated keeps its value."""
    filled: dict[str, str] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in filled:
            filled[name] = _slot_value(name, lang, rng, filled)
        return filled[name]

    return _SLOT.sub(replace, template)


def _capitalize(sentence: str) -> str:
    """Upper-case the first character only (the rest, names included, is already cased)."""
    return sentence[:1].upper() + sentence[1:]


def build_sentence(lang: Language, rng: random.Random) -> str:
    """One sentence: a fixed phrase, a number/date/quote template, one clause or two joined clauses."""
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(lang.fixed)
    if roll < 0.30:
        return _capitalize(_fill(rng.choice(lang.templates), lang, rng))
    if roll < 0.50:
        first = _fill(rng.choice(lang.clauses), lang, rng)
        second = _fill(lang.clauses[0], lang, rng)
        return _capitalize(first + rng.choice(lang.joins) + second + lang.ends[0])
    return _capitalize(_fill(rng.choice(lang.clauses), lang, rng) + rng.choice(lang.ends))


def _paragraph(lang: Language, rng: random.Random) -> str:
    """2–7 sentences; now and then a short bulleted list (one clause a line) instead."""
    if rng.random() < 0.1:
        items = [_fill(rng.choice(lang.clauses), lang, rng) for _ in range(rng.randint(2, 4))]
        return "\n".join(lang.bullet + _capitalize(item) for item in items)
    return lang.sentence_sep.join(build_sentence(lang, rng) for _ in range(rng.randint(2, 7)))


def _prose_document(lang: Language, rng: random.Random) -> str:
    return "\n\n".join(_paragraph(lang, rng) for _ in range(rng.randint(1, 5)))


# --- emoji -----------------------------------------------------------------------------------------------

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


def _emoji_document(rng: random.Random) -> str:
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


# --- source code -----------------------------------------------------------------------------------------
# Code templates use <<slot>> placeholders so that the code's own braces, $ and % need no escaping.

_CODE_SLOT = re.compile(r"<<(\w+)>>")

_CODE_NOUNS = (
    ("user", "users"), ("order", "orders"), ("invoice", "invoices"), ("sensor", "sensors"),
    ("token", "tokens"), ("shard", "shards"), ("record", "records"), ("batch", "batches"),
    ("document", "documents"), ("ticket", "tickets"), ("station", "stations"), ("reading", "readings"),
)  # fmt: skip
_CODE_VERBS = _words("load | parse | count | merge | filter | normalize | render | validate | collect | sort")
_CODE_FIELDS = _words("score | weight | price | latency | temperature | priority")
_CODE_URLS = _words("https://api.example.com/v1 | http://localhost:8080 | https://internal.example.org/api")
_CODE_NAMES = _words("Åsa | Jürgen | Élodie | world | Zoë")

# (imports the snippet needs, snippet)
_PYTHON_SNIPPETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("import json",),
        r'''def <<verb>>_<<nouns>>(path: str, limit: int = <<n>>) -> list[dict]:
    """<<Verb>> up to ``limit`` <<nouns>> from a JSON Lines file."""
    results = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # skip blank lines
            item = json.loads(line)
            if item.get("<<field>>") is None:
                raise ValueError(f"line {line_number}: missing '<<field>>'")
            results.append(item)
            if len(results) >= limit:
                break
    return results''',
    ),
    (
        ("from dataclasses import dataclass",),
        r'''@dataclass(frozen=True)
class <<Noun>>:
    """One <<noun>> as stored in the ``<<nouns>>`` table."""

    id: int
    name: str
    <<field>>: float = <<x>>
    tags: tuple[str, ...] = ()

    def label(self) -> str:
        # Keep labels short: the dashboard truncates at <<small2>>0 characters.
        return f"{self.name} ({self.<<field>>:.2f})"[:<<small2>>0]''',
    ),
    (
        ("from collections.abc import Iterable",),
        r'''def count_<<nouns>>(rows: Iterable[dict]) -> dict[str, int]:
    """Count rows per ``<<field>>`` value, most frequent first."""
    counts: dict[str, int] = {}
    for row in rows:
        key = str(row.get("<<field>>", "unknown")).strip().lower()
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))''',
    ),
    (
        ("import time",),
        r'''class <<Noun>>Client:
    """Talks to the <<noun>> service at ``<<url>>``."""

    def __init__(self, base_url: str = "<<url>>", retries: int = <<small>>) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries

    def fetch(self, <<noun>>_id: int) -> dict:
        last_error = None
        for attempt in range(self.retries):
            try:
                return self._get(f"/<<nouns>>/{<<noun>>_id}")
            except ConnectionError as error:  # retry transient failures only
                last_error = error
                time.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"gave up after {self.retries} attempts") from last_error''',
    ),
    (
        (),
        r'''GREETINGS = {
    "en": "Hello, world!",
    "sv": "Hej, världen! Hälsningar från Örebro.",
    "de": "Hallo, Welt! Grüße aus Köln.",
    "el": "Γεια σου, κόσμε!",
    "ja": "こんにちは、世界！",
}


def greet(lang: str, name: str = "<<name>>") -> str:
    """Return a greeting in ``lang``, falling back to English."""
    template = GREETINGS.get(lang, GREETINGS["en"])
    return f"{template} ({name})"''',
    ),
    (
        ("import re",),
        r"""_WORD = re.compile(r"\w+")


def <<verb>>_words(text: str, min_len: int = <<small>>) -> list[str]:
    # \w matches letters in every script, so "Åsa" and "Ёлка" count as words too.
    words = [w.casefold() for w in _WORD.findall(text) if len(w) >= min_len]
    print("found", len(words), "words", sep="\t")  # tab-separated for cut(1)
    return words""",
    ),
    (
        (),
        r'''def test_<<verb>>_<<nouns>>_keeps_every_item():
    items = [<<ints>>]
    assert sorted(items) == sorted(<<verb>>_<<nouns>>(items))
    assert len(items) == <<count>>, "no <<noun>> may be lost"''',
    ),
)

_PYTHON_MAIN = r"""def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="<<Verb>> <<nouns>> from a file.")
    parser.add_argument("path")
    parser.add_argument("--limit", type=int, default=<<n>>)
    args = parser.parse_args(argv)
    print(f"{args.path}: limit={args.limit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())"""

# Make recipes must be indented with a real tab character.
_MAKEFILES = (
    """PYTHON ?= python3
SRC := src
BUILD := build/<<noun>>

.PHONY: all test clean

all: $(BUILD)/<<nouns>>.json

$(BUILD)/<<nouns>>.json: $(SRC)/<<verb>>.py data/<<nouns>>.csv
\tmkdir -p $(BUILD)
\t$(PYTHON) $(SRC)/<<verb>>.py --limit <<n>> data/<<nouns>>.csv > $@

test:
\t$(PYTHON) -m pytest -q tests/

clean:
\trm -rf $(BUILD)""",
    """# Build the <<noun>> report; run `make help` for the targets.
CC = gcc
CFLAGS = -O2 -Wall -Wextra
OBJECTS = main.o <<verb>>.o <<nouns>>.o

<<nouns>>: $(OBJECTS)
\t$(CC) $(CFLAGS) -o $@ $^

%.o: %.c <<nouns>>.h
\t$(CC) $(CFLAGS) -c $< -o $@

help:
\t@echo "targets: <<nouns>> clean help"

clean:
\trm -f $(OBJECTS) <<nouns>>""",
)

_JAVASCRIPT_SNIPPETS = (
    """const <<nouns>> = [<<ints>>];

function <<verb>><<Noun>>List(items, limit = <<n>>) {
  // Returns at most `limit` items, newest first.
  return items
    .filter((item) => item.<<field>> !== undefined)
    .sort((a, b) => b.createdAt - a.createdAt)
    .slice(0, limit);
}""",
    """export async function fetch<<Noun>>(id) {
  const response = await fetch(`<<url>>/<<nouns>>/${id}`);
  if (!response.ok) {
    throw new Error(`HTTP ${response.status} for <<noun>> ${id}`);
  }
  return response.json();
}""",
    """const labels = { sv: "Sök", de: "Suchen", fr: "Rechercher", el: "Αναζήτηση", ja: "検索" };
const button = document.querySelector("#search");
button.textContent = labels[navigator.language.slice(0, 2)] ?? "Search";
button.title = '<<Verb>> <<nouns>> (<<count>> max)';""",
)


def _code_slots(rng: random.Random) -> Callable[[str], str]:
    """Draw one set of names and numbers for a code document; returns the function that fills a template."""
    noun, nouns = rng.choice(_CODE_NOUNS)
    verb = rng.choice(_CODE_VERBS)
    count = rng.randint(3, 8)
    values = {
        "noun": noun,
        "nouns": nouns,
        "Noun": noun.capitalize(),
        "verb": verb,
        "Verb": verb.capitalize(),
        "field": rng.choice(_CODE_FIELDS),
        "url": rng.choice(_CODE_URLS),
        "name": rng.choice(_CODE_NAMES),
        "n": str(rng.randint(10, 500)),
        "small": str(rng.randint(2, 5)),
        "small2": str(rng.randint(2, 9)),
        "x": f"{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "count": str(count),
        "ints": ", ".join(str(rng.randint(0, 99)) for _ in range(count)),
    }
    return lambda template: _CODE_SLOT.sub(lambda match: values[match.group(1)], template)


def _code_document(rng: random.Random) -> str:
    """A Python module (most often), a Makefile with tab-indented recipes, or JavaScript."""
    fill = _code_slots(rng)
    roll = rng.random()
    if roll < 0.15:
        return fill(rng.choice(_MAKEFILES))
    if roll < 0.35:
        snippets = rng.sample(_JAVASCRIPT_SNIPPETS, rng.randint(1, 2))
        return "\n\n".join(fill(snippet) for snippet in snippets)
    chosen = rng.sample(_PYTHON_SNIPPETS, rng.randint(1, 3))
    with_main = rng.random() < 0.4
    needed = {line for imports, _ in chosen for line in imports}
    if with_main:
        needed.add("import argparse")
    imports = sorted(needed, key=lambda line: (line.startswith("from "), line))  # "import x" before "from x"
    header = '"""<<Verb>> and report <<nouns>> (generated demo code)."""'
    if imports:
        header += "\n\n" + "\n".join(imports)
    parts = [header, *(snippet for _, snippet in chosen)]
    if with_main:
        parts.append(_PYTHON_MAIN)
    return fill("\n\n\n".join(parts))  # PEP 8: two blank lines between top-level definitions


# --- documents with unusual whitespace, for byte-exact round trips ----------------------------------------

WHITESPACE_DOCUMENTS: tuple[tuple[str, str], ...] = (
    (
        "en",
        "Notes  from the meeting  (two spaces on purpose).   \n"
        "Item one: budget.\t\tItem two: staffing.\n"
        "    \n"
        "    An indented line after a line of only spaces.\n"
        "Trailing spaces follow this line   \n"
        "\n\n"
        "Three line breaks above,\u00a0a no-break space here, and a final newline.\n",
    ),
    (
        "sv",
        "Åsa skrev:  ”Vi ses i Örebro.”  \n"
        " \n"
        "Örjan svarade\tmed en tabb,\tvia Ängelholm och Ålidhem.\n"
        "\n"
        "  Två inledande mellanslag, och två avslutande.  ",
    ),
)

_SHORT_CODE = ("print('OK')",)
_SHORT_EMOJI = (THUMBS_UP, _flag("SE") + HEART)


# --- generation and files ----------------------------------------------------------------------------------


def _grow(make: Callable[[random.Random], str], rng: random.Random) -> list[str]:
    """Make documents until their text reaches ``TARGET_BYTES_PER_LANGUAGE`` UTF-8 bytes."""
    texts: list[str] = []
    size = 0
    while size < TARGET_BYTES_PER_LANGUAGE:
        texts.append(make(rng))
        size += len(texts[-1].encode("utf-8"))
    return texts


def _insert_randomly(texts: list[str], extra: tuple[str, ...], rng: random.Random) -> None:
    for text in extra:
        texts.insert(rng.randint(0, len(texts)), text)


def generate_documents(seed: int = 0) -> list[dict[str, str]]:
    """Generate the whole corpus: documents grouped by language in ``LANGUAGES`` order.

    The result depends only on ``seed``; seed 0 is what the bundled files hold. Ids are ``<lang>-NNNN``,
    numbered in order within each language. Raises AssertionError if any text is not NFC or contains "\\r".
    """
    natural = {lang.code: lang for lang in NATURAL_LANGUAGES}
    by_lang: dict[str, list[str]] = {}
    for index, code in enumerate(LANGUAGES):
        rng = random.Random(seed * 1_000 + index)
        if code in natural:
            lang = natural[code]
            texts = _grow(lambda r, lang=lang: _prose_document(lang, r), rng)
            extra = lang.short + tuple(text for owner, text in WHITESPACE_DOCUMENTS if owner == code)
        elif code == "code":
            texts, extra = _grow(_code_document, rng), _SHORT_CODE
        else:
            texts, extra = _grow(_emoji_document, rng), _SHORT_EMOJI
        _insert_randomly(texts, extra, rng)
        by_lang[code] = texts

    # Exact duplicates: copies of randomly chosen long documents (each chosen once), in the same language.
    rng = random.Random(seed * 1_000 + 999)
    total = sum(len(texts) for texts in by_lang.values())
    candidates = [(code, text) for code in LANGUAGES for text in by_lang[code] if len(text) >= 200]
    for code, text in rng.sample(candidates, max(3, round(DUPLICATE_SHARE * total))):
        _insert_randomly(by_lang[code], (text,), rng)

    documents = []
    for code in LANGUAGES:
        for number, text in enumerate(by_lang[code]):
            assert unicodedata.is_normalized("NFC", text), f"{code} document {number} is not NFC"
            assert "\r" not in text, f"{code} document {number} contains a carriage return"
            documents.append({"id": f"{code}-{number:04d}", "lang": code, "text": text})
    return documents


def bundled_corpus_dir() -> Path:
    """The package folder holding the committed corpus files, ``pretrain_trainer/bundled_corpus/``."""
    return Path(__file__).resolve().parent / "bundled_corpus"


def bundled_corpus_files() -> list[Path]:
    """The committed ``<lang>.jsonl`` files, sorted by name."""
    return sorted(bundled_corpus_dir().glob("*.jsonl"))


def load_bundled_documents() -> list[dict[str, str]]:
    """Read the committed corpus: every document of every file, files in name order, lines in file order."""
    documents = []
    for path in bundled_corpus_files():
        with path.open(encoding="utf-8", newline="\n") as handle:
            documents.extend(json.loads(line) for line in handle if line.strip())
    return documents


def write_corpus(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write one ``<lang>.jsonl`` per language into ``out_dir`` (created if missing); returns the paths.

    Each line is ``json.dumps(doc, ensure_ascii=False)`` with keys id, lang, text, documents in generation
    order, ``\\n`` line endings on every platform. Other files in ``out_dir`` are left alone.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = generate_documents(seed)
    paths = []
    for code in LANGUAGES:
        path = out_dir / f"{code}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in documents:
                if doc["lang"] == code:
                    record = {"id": doc["id"], "lang": doc["lang"], "text": doc["text"]}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain_trainer.corpus", description="Regenerate the bundled demo corpus."
    )
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=None, help="where to write (default: the bundled folder)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the bundled files use 0)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else bundled_corpus_dir()
    for path in write_corpus(out_dir, seed=args.seed):
        print(f"{path}\t{path.stat().st_size:>8,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
