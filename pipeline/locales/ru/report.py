"""Russian for the one-file HTML report (pipeline/export.py, pipeline/templates/report.html.j2).

Entries holding markup (<b>, <code>, <label>) are shown by the template's `_m`: the markup is ours
and must stay as it is; the {fields} are escaped. Plural entries are (one, few, many)."""
MESSAGES: dict[str, object] = {
    # ---------------------------------------------------------------- export.py
    "smoke run with random-weight models — these numbers are not results":
        "пробный прогон на моделях со случайными весами — эти числа не являются результатами",
    "{model} was trained on English text only: Russian prompts (ru-*) are outside its training data, so "
    "its ru-* scores understate what image-text matching can do; compare en-*, or use a multilingual model "
    "such as google/siglip2-base-patch16-224":
        "Модель {model} обучена только на английских текстах: русские промпты (ru-*) лежат вне её обучающих данных, "
        "поэтому её оценки на ru-* занижают возможности сопоставления изображения и текста; сравнивайте с "
        "en-* или возьмите многоязычную модель, например google/siglip2-base-patch16-224",
    "accuracy": "доля верных ответов",
    "precision": "точность",
    "recall": "полнота",
    "f1": "F1",
    "auroc": "AUROC",
    "unparseable rate": "доля неразобранных ответов",
    "toxic": "токсичный",
    "non_toxic": "нетоксичный",
    "unparseable": "не разобран",
    "unparseable answers": "неразобранных ответов",
    "ok": "успешно",
    "failed": "с ошибками",
    "interrupted": "прерван",
    "running": "выполняется",
    "abandoned": "оборван",
    "ROC: {name}": "ROC: {name}",
    "False positives: non_toxic memes judged toxic, highest p(toxic) first":
        "Ложноположительные: нетоксичные мемы, признанные токсичными, сначала с наибольшей p(токсичный)",
    "False negatives: toxic memes judged non_toxic, lowest p(toxic) first":
        "Ложноотрицательные: токсичные мемы, признанные нетоксичными, сначала с наименьшей p(токсичный)",
    "Unparseable answers: no class stated": "Неразобранные ответы: класс не назван",
    "false positive rate": "доля ложноположительных",
    "true positive rate (recall)": "доля истинноположительных (полнота)",

    # ---------------------------------------------------------------- template: macros and cards
    "undefined": "не определено",
    "no interval": "интервала нет",
    "… {n} more characters not shown": (
        "… ещё {n} символ не показан", "… ещё {n} символа не показаны", "… ещё {n} символов не показаны"),
    "toxic meme: click to show or hide": "токсичный мем: щёлкните, чтобы показать или скрыть",
    "show this toxic image": "показать это токсичное изображение",
    "toxic: click to show": "токсичный: щёлкните, чтобы показать",
    "meme {path}": "мем {path}",
    "heatmap {label}": "тепловая карта {label}",
    "(smoke)": "(пробный прогон)",
    "true label:": "истинная метка:",
    "no answer": "нет ответа",
    "p(toxic) {p}": "p(токсичный) {p}",
    "low label-token mass {mass}: the model was not really choosing between the two label words, so this "
    "p(toxic) says little.":
        "низкая масса токенов меток {mass}: модель по сути не выбирала между двумя словами-метками, так что "
        "эта p(токсичный) мало о чём говорит.",
    "explanation (model text):": "объяснение (текст модели):",
    "raw answer (model text):": "исходный ответ (текст модели):",
    "OCR text ({engine}):": "текст OCR ({engine}):",
    "(no text found)": "(текст не найден)",

    # ---------------------------------------------------------------- header and navigation
    "VLMemes report — {name}": "Отчёт VLMemes — {name}",
    "VLMemes report": "Отчёт VLMemes",
    "Cache <b>{name}</b> · generated {when} · a static copy of the dashboard's analysis.":
        "Кэш <b>{name}</b> · создан {when} · статическая копия анализа из дашборда.",
    "Prediction sets filtered by <code>--models {filter}</code>.":
        "Наборы предсказаний отобраны по <code>--models {filter}</code>.",
    "Images left out (<code>--no-images</code>).": "Изображения не включены (<code>--no-images</code>).",
    "<b>Content warning:</b> this report is about toxic memes. It quotes their text (OCR) and the models' "
    "explanations, which can contain obscene and offensive language":
        "<b>Предупреждение о содержании:</b> этот отчёт посвящён токсичным мемам. В нём приводятся их текст "
        "(OCR) и объяснения моделей, где может встречаться нецензурная и оскорбительная лексика",
    ", and shows the memes themselves. Images of memes labelled toxic are blurred: click an image to show or "
    "hide it, or <label for=\"reveal-all\"><u>tick here to show all of them</u></label>":
        ", а также показаны сами мемы. Изображения мемов с меткой «токсичный» размыты: щёлкните по изображению, "
        "чтобы показать или скрыть его, или <label for=\"reveal-all\"><u>отметьте здесь, чтобы показать "
        "все</u></label>",
    "Dataset": "Набор данных",
    "Prediction sets and metrics": "Наборы предсказаний и метрики",
    "Agreement between prediction sets": "Согласие между наборами предсказаний",
    "Error galleries": "Галереи ошибок",
    "Disagreement galleries": "Галереи расхождений",
    "How to read this report": "Как читать этот отчёт",

    # ---------------------------------------------------------------- dataset
    "memes in the cache": "мемов в кэше",
    "retired (no longer found by the latest scan)": "выбывшие (не найдены последним сканированием)",
    "without a label (label conflict)": "без метки (конфликт меток)",
    "used for metrics and galleries": "учтены в метриках и галереях",
    "… labelled toxic": "… с меткой «токсичный»",
    "… labelled non_toxic": "… с меткой «нетоксичный»",
    "animated (models see the first frame)": "анимированные (модели видят первый кадр)",
    "formats": "форматы",
    "Every metric, agreement test and gallery below uses only the {n} memes that are still in the folder "
    "and have a label: {retired} retired meme(s) and {unlabelled} meme(s) without a label (the same picture "
    "under both label folders) are left out.":
        "Все метрики, тесты согласия и галереи ниже используют только мемы, которые по-прежнему лежат в папке "
        "и имеют метку (их {n}); исключены выбывшие мемы ({retired}) и мемы без метки ({unlabelled}: одна и та "
        "же картинка лежит в папках обеих меток).",
    "OCR engines": "Движки OCR",
    "engine": "движок",
    "memes": "мемы",
    "with no text": "без текста",
    "mean confidence": "средняя уверенность",
    "CAM heatmaps": "Тепловые карты CAM",
    "method (model)": "метод (модель)",
    "random weights: smoke": "случайные веса: пробный прогон",
    "Runs": "Запуски",
    "run": "запуск",
    "started (UTC)": "начат (UTC)",
    "finished": "завершён",
    "status": "статус",
    "device": "устройство",
    "code": "код",
    "models": "модели",
    "smoke": "пробный",
    "yes": "да",
    "No runs recorded.": "Запусков не записано.",
    "Failures": "Сбои",
    "stage": "этап",
    "error": "ошибка",
    "count": "число",
    "latest {n} failure messages": "последние сообщения о сбоях ({n})",
    "file": "файл",
    "message": "сообщение",
    "No failures recorded.": "Сбоев не записано.",

    # ---------------------------------------------------------------- prediction sets
    "No CLIP or VLM predictions in the cache match the filter.":
        "В кэше нет предсказаний CLIP или VLM, подходящих под фильтр.",
    "No CLIP or VLM predictions in the cache.": "В кэше нет предсказаний CLIP или VLM.",
    "A prediction set is one model with one prompt version. Values with their 95% interval; n is the number "
    "of memes the value rests on.":
        "Набор предсказаний — одна модель с одной версией промпта. Значения даны с 95% доверительным "
        "интервалом; n — число мемов, на которых основано значение.",
    "prediction set": "набор предсказаний",
    "95% interval": "95% интервал",
    "F1 (toxic)": "F1 (токсичные)",
    "{stage}, variant {variant}": "{stage}, вариант {variant}",
    "{n} memes with a label have an answer from this set": (
        "{n} мем с меткой имеет ответ этого набора",
        "{n} мема с меткой имеют ответ этого набора",
        "{n} мемов с меткой имеют ответ этого набора"),
    "; {n} have none (failed or not computed) and are not counted": (
        "; у {n} мема ответа нет (сбой или не вычислен), он не учитывается",
        "; у {n} мемов ответа нет (сбой или не вычислены), они не учитываются",
        "; у {n} мемов ответа нет (сбой или не вычислены), они не учитываются"),
    "{k} of {n} scores have a low label-token mass (< {limit}): there the model gave little probability to "
    "both label words together, so p(toxic) says little.": (
        "У {k} из {n} оценки низкая масса токенов меток (< {limit}): там модель отдала обоим словам-меткам "
        "вместе малую вероятность, так что p(токсичный) мало о чём говорит.",
        "У {k} из {n} оценок низкая масса токенов меток (< {limit}): там модель отдала обоим словам-меткам "
        "вместе малую вероятность, так что p(токсичный) мало о чём говорит.",
        "У {k} из {n} оценок низкая масса токенов меток (< {limit}): там модель отдала обоим словам-меткам "
        "вместе малую вероятность, так что p(токсичный) мало о чём говорит."),
    "metric": "метрика",
    "value": "значение",
    "method": "метод",
    "no scores": "оценок нет",
    "confusion matrix": "матрица ошибок",
    "judged toxic": "признан токсичным",
    "judged non_toxic": "признан нетоксичным",
    "labelled toxic": "метка «токсичный»",
    "labelled non_toxic": "метка «нетоксичный»",
    "No ROC curve: this set has no scores.": "ROC-кривой нет: у этого набора нет оценок токсичности.",
    "No ROC curve: only one class among the scored memes.":
        "ROC-кривой нет: среди мемов с оценкой только один класс.",

    # ---------------------------------------------------------------- agreement
    "Fewer than two prediction sets: nothing to compare.": "Наборов предсказаний меньше двух: сравнивать нечего.",
    "Showing the first {shown} of {n} pairs, in the order the sets are listed above (use <code>--models</code> "
    "to choose which sets to compare): ":
        "Показаны первые {shown} из {n} пар в порядке, в котором наборы перечислены выше (выбрать наборы для "
        "сравнения можно через <code>--models</code>): ",
    "All {n} pairs: ": "Все пары ({n}): ",
    "{a} vs {b}": "{a} против {b}",
    "A = {a} vs B = {b}": "A = {a} против B = {b}",
    "{n} memes answered by both": (
        "{n} мем с ответами обоих наборов", "{n} мема с ответами обоих наборов",
        "{n} мемов с ответами обоих наборов"),
    "B right": "B прав",
    "B wrong": "B ошибся",
    "A right": "A прав",
    "A wrong": "A ошибся",
    "split by true label": "по истинной метке",
    "label": "метка",
    "both right": "оба правы",
    "only A": "только A",
    "only B": "только B",
    "both wrong": "оба ошиблись",
    "p, Holm-adjusted": "p с поправкой Холма",
    "Cohen's kappa (A vs B answers)": "каппа Коэна (ответы A и B)",
    "accuracy A − B": "доля верных ответов A − B",
    "{method}; exact McNemar p": "{method}; p: точный тест Мак-Немара",
    "({n} memes scored by both)": (
        "({n} мем с оценками обоих наборов)", "({n} мема с оценками обоих наборов)",
        "({n} мемов с оценками обоих наборов)"),
    "Adjusted p-values: {adjustment}.": "Скорректированные p-значения: {adjustment}.",

    # ---------------------------------------------------------------- galleries
    "Per prediction set, its most confident mistakes first (at most {n} per gallery). Explanations and OCR "
    "text are model output, shown as plain text.":
        "Для каждого набора предсказаний — сначала самые уверенные ошибки (не больше {n} в галерее). "
        "Объяснения и текст OCR — это вывод моделей, он показан как обычный текст.",
    "Heatmaps: CAM of the CLIP vision tower ({methods}).":
        "Тепловые карты: CAM визуального энкодера CLIP ({methods}).",
    "{shown} of {total} shown": "показано {shown} из {total}",
    "none": "нет",
    "Per compared pair, memes where the two sets give different answers, largest difference in p(toxic) "
    "first (at most {n} per pair).":
        "Для каждой сравниваемой пары — мемы, на которых наборы отвечают по-разному, сначала с наибольшей "
        "разницей p(токсичный) (не больше {n} на пару).",
    "{n} memes": ("{n} мем", "{n} мема", "{n} мемов"),
    "The two sets give the same answer on every meme.": "Оба набора дают одинаковый ответ на каждый мем.",
    "No pairs to compare.": "Нет пар для сравнения.",

    # ---------------------------------------------------------------- how to read
    "\"toxic\" is the positive class. An unparseable VLM answer (no class stated) counts as wrong for "
    "accuracy and as a missed toxic meme for recall and F1; it is never a predicted positive.":
        "Положительный класс — «токсичный». Неразобранный ответ VLM (класс не назван) считается неверным для "
        "доли верных ответов и пропущенным токсичным мемом для полноты и F1; положительным предсказанием он "
        "не считается никогда.",
    "95% intervals: the method is named next to each value (docs/metrics.md explains each and shows its "
    "simulated coverage at about 50 memes). An interval that cannot be estimated from these memes is said so "
    "in words instead of being shown as a zero-width interval.":
        "95% доверительные интервалы: метод указан рядом с каждым значением (docs/metrics.md описывает каждый "
        "и приводит его покрытие в симуляции примерно на 50 мемах). Если интервал по этим мемам оценить "
        "нельзя, это сказано словами, а не показано интервалом нулевой ширины.",
    "McNemar's exact test compares two sets on the memes where exactly one of them is right; its reading "
    "under each table says what the p-value does and does not show. The differences in accuracy (Newcombe's "
    "paired interval) and in AUROC (paired DeLong) are A − B on the memes both sets answered. Where several "
    "pairs are shown, each p-value is also given Holm-adjusted over the pairs shown, which keeps the chance "
    "of any false \"significant\" difference at 5%.":
        "Точный тест Мак-Немара сравнивает два набора на мемах, где прав ровно один из них; пояснение под "
        "каждой таблицей говорит, что p-значение показывает и чего не показывает. Разницы долей верных "
        "ответов (парный интервал Ньюкомба) и AUROC (парный метод ДеЛонга) — это A − B на мемах, на которые "
        "ответили оба набора. Если показано несколько пар, каждое p-значение дано ещё и с поправкой Холма "
        "по показанным парам: так вероятность хотя бы одной ложной «значимой» разницы остаётся на уровне 5%.",
    "Only memes still in the folder and with a label count ({retired} retired and {unlabelled} unlabelled "
    "memes are left out).":
        "Учитываются только мемы, которые по-прежнему лежат в папке и имеют метку (исключены выбывшие — "
        "{retired} и без метки — {unlabelled}).",
    "Model and OCR text is cut after {n} characters (OCR after 800) and is never interpreted as HTML or "
    "Markdown.":
        "Текст моделей и OCR обрезается после {n} символов (OCR — после 800) и никогда не интерпретируется "
        "как HTML или Markdown.",
    "Models given as local folders are named by the folder's last component; no local paths are included.":
        "Модели, заданные локальными папками, названы по последней части пути; локальные пути в отчёт не "
        "попадают.",
}
MESSAGES.update({
    # ---------------------------------------------------------------- messages of `vlmemes export`
    "--models {models} matches no prediction set; the cache has: {known}":
        "--models {models} не подходит ни к одному набору предсказаний; в кэше есть: {known}",
    "--out {out} is a directory; give a file name such as {example}":
        "--out {out} — это папка; укажите имя файла, например {example}",
    "the directory {folder!r} for --out does not exist": "папки {folder!r} для --out не существует",
    ", images re-encoded to <= {side} px (JPEG quality {quality}) to fit":
        ", изображения пережаты до <= {side} пикс. (качество JPEG {quality}), чтобы уложиться в размер",
    " — over the {budget:.0f} MB budget even at the smallest images":
        " — больше бюджета {budget:.0f} МБ даже при самых маленьких изображениях",
    "wrote {out} ({size:.2f} MB): {sets} prediction sets, {pairs} of {n_pairs} pairs, {images} images{how}{note}":
        "записан {out} ({size:.2f} МБ): наборов предсказаний — {sets}, пар — {pairs} из {n_pairs}, "
        "изображений — {images}{how}{note}",
})
MESSAGES["Every metric of every prediction set with its 95% interval"] = \
    "Все метрики всех наборов предсказаний с 95% доверительными интервалами"
# ---------------------------------------------------------------- the Modality section (issue 16); the page's own
# texts it shows as they are (headings, notes, view and driver names, readings) are in modality.py
MESSAGES.update({
    "Modality: caption or picture?": "Модальность: подпись или картинка?",
    "No prediction set matching the filter has answers on the derived views.":
        "Ни у одного набора предсказаний, подходящего под фильтр, нет ответов на производных видах.",
    "answered on the full meme": "с ответом на целый мем",
    "… on all three views": "… на всех трёх видах",
    "… without OCR text (no derived view)": "… без текста OCR (нет производных видов)",
    "… not computed yet (or failed)": "… ещё не вычислено (или не удалось)",
    "Memes with a label that are still in the folder. The derived views are made from the OCR text of {engine}; "
    "a meme whose OCR text has no letter or digit has no caption to remove or to show alone. Every number below "
    "uses only the memes answered on all three views.":
        "Мемы с меткой, которые ещё лежат в папке. Производные виды построены по тексту OCR движка {engine}; у мема, "
        "в тексте OCR которого нет ни буквы, ни цифры, нет подписи, которую можно убрать или показать отдельно. "
        "Все числа ниже — только по мемам с ответами на всех трёх видах.",
    "all memes": "все мемы",
    "counted as": "в доле",
    "toxic on A": "токсичен на A",
    "toxic on B": "токсичен на B",
    "toxic on A only": "токсичен только на A",
    "toxic on B only": "токсичен только на B",
})
# ---------------------------------------------------------------- failure kinds and the Faithfulness section (issue 16);
# the texts it shares with the Faithfulness page and the Overview are in faithfulness.py
MESSAGES.update({
    "No measured CAM method matches the filter.": "Ни один измеренный метод CAM не подходит под фильтр.",
    "No measured VLM prediction set matches the filter.":
        "Ни один измеренный набор предсказаний VLM не подходит под фильтр.",
    "Right or wrong: the answers of {clip}, the first CLIP prediction set of this model.":
        "Верно или неверно — по ответам {clip}, первого набора предсказаний CLIP этой модели.",
    "This model has no CLIP prediction set: no rows by right or wrong answers.":
        "У этой модели нет набора предсказаний CLIP: строк по верным и неверным ответам нет.",
    "Possible contradictions: at most {n} per set, memes with a true label, in the cache's order.":
        "Возможные противоречия: не больше {n} на набор, мемы с истинной меткой, в порядке кэша.",
})
# ---------------------------------------------------------------- the Slices section (issue 17); the texts it
# shares with the Slices page (slice and value names, headings, the small-slice warning) are in analyses.py
MESSAGES.update({
    "No slice has answers of the prediction sets on memes with a true label.":
        "Ни в одном срезе нет ответов наборов предсказаний на мемы с истинной меткой.",
    "Read by the OCR engine {engine}, the one that read the most memes.":
        "Текст прочитан движком OCR {engine} — тем, что прочитал больше всего мемов.",
    "Clusters of the image embeddings of {model} (its stored map).":
        "Кластеры эмбеддингов изображений модели {model} (её сохранённая карта).",
    "The {shown} largest template clusters are listed; {n} more clusters are not.": (
        "Показаны самые крупные кластеры шаблонов ({shown}); ещё {n} кластер не показан.",
        "Показаны самые крупные кластеры шаблонов ({shown}); ещё {n} кластера не показаны.",
        "Показаны самые крупные кластеры шаблонов ({shown}); ещё {n} кластеров не показаны."),
    "Memes: memes with a true label in the slice that the set answered; an unparseable answer counts as wrong. "
    "Intervals: Wilson for accuracy and recall, for F1 the Wilson interval of tp/(tp+fp+fn) mapped to F1. The "
    "slices are not corrected for multiple comparisons: with many slices, one will look different by chance.":
        "Мемы — мемы с истинной меткой в срезе, на которые набор ответил; неразобранный ответ считается ошибкой. "
        "Интервалы: Уилсона для доли верных ответов и полноты, для F1 — интервал Уилсона для tp/(tp+fp+fn), "
        "пересчитанный в F1. Поправки на множественные сравнения нет: среди многих срезов какой-то случайно "
        "будет выглядеть иначе.",
})
