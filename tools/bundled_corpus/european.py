"""Word tables of the bundled corpus's European languages: English, Swedish, German, French, Greek, Russian."""

from tools.bundled_corpus.language import Language, word_list

ENGLISH = Language(
    code="en",
    subjects=word_list(
        "Anna | the teacher | my neighbour | Dr. Patel | the old fisherman | a young engineer | Mr. O'Brien"
        " | our team | Grandma | the new intern | Zoë | the baker on the corner"
    ),
    verbs=word_list(
        "bought | repaired | painted | read | borrowed | sold | found | described | photographed | carried"
        " | ordered | forgot"
    ),
    objects=word_list(
        "a red bicycle | an old map of the city | three loaves of bread | the quarterly report"
        " | a second-hand piano | the broken window | a box of apples | two tickets to the concert"
        " | a long letter | the kitchen table | an umbrella | a jar of honey | a café au lait"
    ),
    places=word_list(
        "in London | at the market | near the harbour | in the garden | on the train to Leeds"
        " | at the library | behind the station | in a small café | by the river | at the office"
        " | in Edinburgh | in New York"
    ),
    times=word_list(
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
    months=word_list(
        "January | February | March | April | May | June | July | August | September | October | November | December"
    ),
    date_formats=("{month} {d}, {y}", "{y}-{mm}-{dd}"),
    quote=("“", "”"),
    quotes=word_list(
        "We'll be there by noon | It's raining again | Don't worry about it | I'll be right back | What a good idea"
    ),
    thousands=",",
    decimal=".",
)

SWEDISH = Language(
    code="sv",
    subjects=word_list(
        "Åsa | Åke | Örjan | Östen | Älva | min äldre bror | läraren | grannen från Ängelholm | Björn | Märta"
        " | Göran | den nya kollegan | Ölands bästa bagare"
    ),
    verbs=word_list(
        "köpte | lagade | målade | läste | lånade | sålde | hittade | glömde | beställde | fotograferade"
        " | bar | öppnade | ärvde"
    ),
    objects=word_list(
        "en röd cykel | en gammal karta över Örebro | tre limpor bröd | årsrapporten | ett begagnat piano"
        " | det trasiga fönstret | en låda äpplen | två biljetter till konserten | ett långt brev"
        " | köksbordet | ett paraply | en burk honung | en skål ärtsoppa | ett örngott | en ödla av trä"
    ),
    places=word_list(
        "i Örebro | i Ängelholm | på Ålidhem | i Umeå | vid Öresund | i Åre | på torget i Växjö | i Malmö"
        " | i Göteborg | vid ån | på Öland | i Älmhult | i Åmål | på kontoret"
    ),
    times=word_list(
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
    months=word_list(
        "januari | februari | mars | april | maj | juni | juli | augusti | september | oktober | november | december"
    ),
    date_formats=("{d} {month} {y}", "{y}-{mm}-{dd}"),
    quote=("”", "”"),
    quotes=word_list("Det är inte så farligt | Vi ses på fredag | Ta det lugnt | Jag kommer strax | Vilken bra idé"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
)

GERMAN = Language(
    code="de",
    subjects=word_list(
        "Jürgen | Frau Müller | der Bäcker | die Lehrerin | mein Nachbar | Herr Schäfer | Björn aus Köln"
        " | die Ärztin | Günther | unsere Großmutter | der Förster | Jörg"
    ),
    verbs=word_list(
        "kaufte | reparierte | malte | las | verkaufte | fand | vergaß | bestellte | fotografierte | trug"
        " | öffnete | suchte"
    ),
    objects=word_list(
        "ein rotes Fahrrad | eine alte Karte von München | drei Brötchen | den Quartalsbericht"
        " | ein gebrauchtes Klavier | das kaputte Fenster | eine Kiste Äpfel | zwei Karten für das Konzert"
        " | einen langen Brief | den Küchentisch | einen Regenschirm | ein Glas Honig"
        " | eine große Tüte Süßigkeiten | ein Stück Käse"
    ),
    places=word_list(
        "in München | in Köln | auf dem Markt | am Hafen | im Garten | im Zug nach Düsseldorf"
        " | in der Bibliothek | hinter dem Bahnhof | in einem kleinen Café | an der Hauptstraße | in Zürich"
        " | in Überlingen | in Lübeck | in Nürnberg | an der Spree"
    ),
    times=word_list(
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
    months=word_list(
        "Januar | Februar | März | April | Mai | Juni | Juli | August | September | Oktober | November | Dezember"
    ),
    date_formats=("{d}. {month} {y}", "{dd}.{mm}.{y}"),
    quote=("„", "“"),
    quotes=word_list("Das ist mir Wurst | Bis morgen | Keine Sorge | Ich komme gleich zurück | Was für eine gute Idee"),
    thousands=".",
    decimal=",",
    percent="{n} %",
)

FRENCH = Language(
    code="fr",
    subjects=word_list(
        "Élodie | le boulanger | ma voisine | M. Lefèvre | le vieux pêcheur | une jeune ingénieure"
        " | Françoise | notre équipe | le maître d'hôtel | Hélène | Jérôme | la directrice"
    ),
    verbs=word_list(
        "a acheté | a réparé | a peint | a lu | a emprunté | a vendu | a trouvé | a décrit | a photographié"
        " | a porté | a commandé | a oublié | a reçu"
    ),
    objects=word_list(
        "un vélo rouge | une vieille carte de Paris | trois baguettes | le rapport trimestriel"
        " | un piano d'occasion | la fenêtre cassée | une boîte de pommes | deux billets pour le concert"
        " | une longue lettre | la table de la cuisine | un parapluie | un pot de miel | un cœur en chocolat"
        " | des œufs frais | un gâteau à la crème"
    ),
    places=word_list(
        "à Paris | au marché | près du port | dans le jardin | dans le train pour Besançon"
        " | à la bibliothèque | derrière la gare | dans un petit café | au bord de la Seine | à Genève"
        " | à Orléans | à Nîmes | en Provence | à Québec"
    ),
    times=word_list(
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
    months=word_list(
        "janvier | février | mars | avril | mai | juin | juillet | août | septembre | octobre | novembre | décembre"
    ),
    date_formats=("{d} {month} {y}", "{dd}/{mm}/{y}"),
    quote=("« ", " »"),
    quotes=word_list("C'est la vie | On verra bien | Ne t'inquiète pas | J'arrive tout de suite | Quelle bonne idée"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
    ends=(".", ".", ".", ".", " !"),
)

GREEK = Language(
    code="el",
    subjects=word_list(
        "η Ελένη | ο Γιώργος | ο δάσκαλος | η γειτόνισσά μου | ο παππούς | η Μαρία | ο ψαράς | η γιατρός"
        " | ο Νίκος | η ομάδα μας | ο φούρναρης | η Σοφία"
    ),
    verbs=word_list(
        "αγόρασε | επισκεύασε | ζωγράφισε | διάβασε | δανείστηκε | πούλησε | βρήκε | περιέγραψε"
        " | φωτογράφισε | κουβάλησε | παρήγγειλε | ξέχασε"
    ),
    objects=word_list(
        "ένα κόκκινο ποδήλατο | έναν παλιό χάρτη της πόλης | τρία καρβέλια ψωμί | την τριμηνιαία έκθεση"
        " | ένα μεταχειρισμένο πιάνο | το σπασμένο παράθυρο | ένα κουτί μήλα | δύο εισιτήρια για τη συναυλία"
        " | ένα μακρύ γράμμα | το ξύλινο τραπέζι της κουζίνας | μια ομπρέλα | ένα βάζο μέλι"
    ),
    places=word_list(
        "στην Αθήνα | στη Θεσσαλονίκη | στη λαϊκή αγορά | κοντά στο λιμάνι | στον κήπο"
        " | στο τρένο για την Πάτρα | στη βιβλιοθήκη | πίσω από τον σταθμό | σε ένα μικρό καφενείο"
        " | δίπλα στη θάλασσα | στο Ηράκλειο | στην Κέρκυρα"
    ),
    times=word_list(
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
    months=word_list(
        "Ιανουαρίου | Φεβρουαρίου | Μαρτίου | Απριλίου | Μαΐου | Ιουνίου | Ιουλίου | Αυγούστου"
        " | Σεπτεμβρίου | Οκτωβρίου | Νοεμβρίου | Δεκεμβρίου"
    ),
    date_formats=("{d} {month} {y}", "{d}/{m}/{y}"),
    quote=("«", "»"),
    quotes=word_list("Όλα θα πάνε καλά | Τα λέμε αύριο | Μην ανησυχείς | Έρχομαι αμέσως | Καλή ιδέα"),
    thousands=".",
    decimal=",",
)

RUSSIAN = Language(
    code="ru",
    subjects=word_list(
        "Ирина | Алексей | учитель | моя соседка | старый рыбак | молодой инженер | Пётр Ильич"
        " | наша команда | бабушка | Фёдор | Наталья Сергеевна | Андрей"
    ),
    # Present tense (habitual) so that the verb does not have to agree with the subject's gender.
    verbs=word_list(
        "покупает | чинит | рисует | читает | продаёт | находит | описывает | фотографирует | несёт"
        " | заказывает | забывает | берёт"
    ),
    objects=word_list(
        "красный велосипед | старую карту города | три буханки хлеба | квартальный отчёт"
        " | подержанное пианино | разбитое окно | ящик яблок | два билета на концерт | длинное письмо"
        " | кухонный стол | зонтик | банку мёда | жёлтый чайник"
    ),
    places=word_list(
        "в Москве | на рынке | в порту | в саду | в поезде до Казани | в библиотеке | за вокзалом"
        " | в маленьком кафе | на берегу реки | в Санкт-Петербурге | в Новосибирске | на даче"
        " | в Нижнем Новгороде"
    ),
    times=word_list(
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
    months=word_list(
        "января | февраля | марта | апреля | мая | июня | июля | августа | сентября | октября | ноября | декабря"
    ),
    date_formats=("{d} {month} {y} года", "{dd}.{mm}.{y}"),
    quote=("«", "»"),
    quotes=word_list("Всё будет хорошо | До встречи | Не волнуйся | Я скоро приду | Это отличная идея"),
    thousands=" ",
    decimal=",",
    percent="{n} %",
)
