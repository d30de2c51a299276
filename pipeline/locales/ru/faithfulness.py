"""Russian for the faithfulness measures (issue 16): the Faithfulness page (dashboard/views/faithfulness.py), its
lines on the Meme page, the Overview's table of unparseable answers and pipeline/faithfulness.py's names."""
MESSAGES: dict[str, object] = {
    "Faithfulness": "Достоверность объяснений",
    "Does what a model looks at, or says, follow the meme's caption? Where CLIP's heat map lies against the OCR "
    "boxes, and whether the VLM's explanation quotes the caption or argues against its own answer.":
        "Следует ли то, куда смотрит модель и что она говорит, подписи мема? Где лежит тепловая карта CLIP "
        "относительно рамок OCR и цитирует ли объяснение VLM подпись или спорит со своим же ответом.",
    "No faithfulness measures in this cache yet. The faithfulness stage measures the stored heatmaps and VLM "
    "answers (no model runs):":
        "В кэше пока нет мер достоверности. Этап достоверности измеряет сохранённые тепловые карты и ответы VLM "
        "(без запуска моделей):",
    "true label toxic": "истинная метка: токсичный",
    "true label non-toxic": "истинная метка: нейтральный",
    "answer right": "ответ верный",
    "answer wrong": "ответ неверный",
    "Does CLIP look at the caption?": "Смотрит ли CLIP на подпись?",
    "No CAM method is measured yet.": "Ни один метод CAM ещё не измерен.",
    "CAM method": "Метод CAM",
    "Correctness of the CLIP set": "Верность ответов набора CLIP",
    "No meme with a true label and an OCR caption has this heat map.":
        "Ни у одного мема с истинной меткой и подписью OCR нет этой тепловой карты.",
    "CAM mass on the caption (median)": "масса CAM на подписи (медиана)",
    "caption's share of the area (median)": "доля площади под подписью (медиана)",
    "mass / area (median)": "масса / площадь (медиана)",
    "mass > area": "масса > площади",
    "sign test p": "p знакового критерия",
    "Per meme: the share of the heat map's mass inside the OCR boxes, against the share of the picture the boxes "
    "cover (over the part the model saw). mass / area above 1: the map favours the caption. «mass > area»: share "
    "of memes [Wilson 95% interval] · memes; sign test: exact two-sided binomial test of that share against 1/2. "
    "A heat map shows where the score is sensitive, not what the model reads.":
        "Для каждого мема: доля массы тепловой карты внутри рамок OCR против доли картинки, которую рамки "
        "занимают (в той части, что видела модель). Масса / площадь больше 1: карта выделяет подпись. "
        "«Масса > площади»: доля мемов [95% интервал Уилсона] · мемов; знаковый критерий: точный двусторонний "
        "биномиальный критерий этой доли против 1/2. Тепловая карта показывает, где оценка чувствительна, а не "
        "что модель читает.",
    "log2(CAM mass on the caption / its share of the area)": "log2(масса CAM на подписи / её доля площади)",
    "Does the VLM's explanation follow the caption?": "Следует ли объяснение VLM подписи?",
    "No VLM prediction set is measured yet.": "Ни один набор предсказаний VLM ещё не измерен.",
    "VLM prediction set": "Набор предсказаний VLM",
    "This set was asked on a derived view of the meme (see the Modality page).":
        "Этот набор спрашивали на производном виде мема (см. страницу «Модальность»).",
    "answers": "ответов",
    "measured": "измерено",
    "quotes the caption": "цитирует подпись",
    "possible contradiction": "возможное противоречие",
    "Quotes the caption: at least {words} of the caption's words (or half of them) appear in the explanation, "
    "Cyrillic-normalised, of the answers on memes with an OCR caption. Possible contradiction: the explanation "
    "states the other class than its own class line somewhere, by a stated rule (pipeline/faithfulness.py), of "
    "the answers that state a class. Share [Wilson 95% interval] · answers. Neither is proof: a rule reads "
    "words, not meaning.":
        "Цитирует подпись: в объяснении есть не меньше {words} слов подписи (или половина из них), после "
        "нормализации кириллицы; доля ответов на мемах с подписью OCR. Возможное противоречие: объяснение "
        "где-то называет другой класс, чем его же строка класса, по явному правилу (pipeline/faithfulness.py); "
        "доля ответов, назвавших класс. Доля [95% интервал Уилсона] · ответов. Ни то ни другое не доказательство: "
        "правило читает слова, а не смысл.",
    "Possible contradictions": "Возможные противоречия",
    "the wording: {cue}": "формулировка: {cue}",
    "Faithfulness (stated rules: the Faithfulness page)":
        "Достоверность (явные правила: страница «Достоверность объяснений»)",
    "quotes the caption: {yes}": "цитирует подпись: {yes}",
    "no": "нет",
    "possible contradiction with its class line: {cue}": "возможное противоречие со строкой класса: {cue}",
    "no class stated: {kind}": "класс не назван: {kind}",
    "CAM mass on the caption {mass} · its share of the area {area}":
        "масса CAM на подписи {mass} · её доля площади {area}",
    "not measured yet": "ещё не измерено",
    "Why answers stated no class": "Почему ответ не назвал класс",
    "Each unparseable answer (memes with a true label) by the first rule that holds: empty or cut off (nothing, "
    "or it stops mid-sentence), template echo (the prompt's placeholders or wording given back), refusal, hedge "
    "(no decision, or both class words), other. The rules are in pipeline/faithfulness.py; «not measured yet»: "
    "the faithfulness stage has not read these answers.":
        "Каждый неразобранный ответ (мемы с истинной меткой) — по первому выполненному правилу: пустой или "
        "оборван (ничего нет или обрыв на полуслове), эхо шаблона (возвращены заполнители или слова промпта), "
        "отказ, уклонение (нет решения или оба слова классов), другое. Правила — в pipeline/faithfulness.py; "
        "«ещё не измерено»: этап достоверности ещё не прочитал эти ответы.",
    "refusal": "отказ",
    "hedge": "уклонение",
    "template echo": "эхо шаблона",
    "empty or cut off": "пустой или оборван",
    "other": "другое",
}
