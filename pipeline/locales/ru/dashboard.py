"""Russian for the dashboard (dashboard/*.py, dashboard/views/*.py): page titles, widgets, table
headers, chart titles, notices. Words the HTML report shares with the pages (table headers such as
'accuracy', 'run', run statuses) are in report.py and not repeated here: a key in two modules must
have the same value. Plural entries: English `many` form -> (one, few, many)."""
MESSAGES: dict[str, object] = {
    # ---------------------------------------------------------------- app, sidebar, navigation
    "Overview": "Обзор",
    "Errors": "Ошибки",
    "Disagreement": "Расхождения",
    "Heatmaps": "Тепловые карты",
    "Meme": "Мем",
    "Content warning: blur toxic images": "Предупреждение о содержимом: размывать токсичные картинки",
    "Toxic memes (and memes with conflicting labels) stay blurred until you click 'Show image'.":
        "Токсичные мемы (и мемы с противоречивыми метками) остаются размытыми, пока вы не нажмёте "
        "«Показать картинку».",
    "Include retired memes": "Учитывать выбывшие мемы",
    "Memes whose file the latest scan no longer found. Off: they are left out everywhere.":
        "Мемы, файл которых последнее сканирование уже не нашло. Выключено: они не учитываются нигде.",
    "Cache": "Кэш",
    "{size} MiB · modified {time}": "{size} МиБ · изменён {time}",
    "Pass a cache written by `python -m pipeline precompute` with --db FILE (or VLMEMES_DB).":
        "Укажите кэш, записанный `python -m pipeline precompute`, через --db ФАЙЛ (или VLMEMES_DB).",
    "Retry now": "Повторить сейчас",
    "Comparing…": "Сравнение…",
    "Comparing every pair of prediction sets…": "Сравнение всех пар наборов предсказаний…",
    # db.py: the cache cannot be read
    "{path} is a directory, not a cache file; pass --db FILE": "{path} — это папка, а не файл кэша; укажите --db ФАЙЛ",
    "There is no cache at {path} yet.": "По пути {path} кэша пока нет.",
    "{path} is not a readable VLMemes cache ({error}).": "{path} не читается как кэш VLMemes ({error}).",
    "The cache is being written by a precompute; retrying…": "Кэш сейчас записывает предвычисление; повторяем попытку…",

    # ---------------------------------------------------------------- shared widgets (components.py)
    "non-toxic": "нетоксичный",
    "no label": "без метки",
    "no label (conflict)": "без метки (конфликт)",
    "any": "не важно",
    "random-weight smoke run — not results": "прогон на случайных весах — это не результаты",
    "**{smoke}**: at least one model shown here had random weights (or the cache is synthetic). Use these "
    "numbers to check the pipeline, never as findings.":
        "**{smoke}**: хотя бы у одной модели на этой странице были случайные веса (или кэш синтетический). "
        "Эти числа годятся для проверки конвейера, но не как научные выводы.",
    "‹ Prev": "‹ Назад",
    "Page": "Страница",
    "Next ›": "Вперёд ›",
    "{first}–{last} of {total} · page {page} of {pages}": "{first}–{last} из {total} · страница {page} из {pages}",
    "nothing to show": "показать нечего",
    "Per page": "На странице",
    "There is no cache at this path yet:": "По этому пути кэша пока нет:",
    "Fill it (scans `memes_project/memes`, then runs OCR, CLIP, the VLM and CAM) with:":
        "Заполните его (сканирует `memes_project/memes`, затем запускает OCR, CLIP, VLM и CAM) командой:",
    "Or point the dashboard at another cache: `streamlit run dashboard/app.py -- --db FILE` (or set VLMEMES_DB).":
        "Или укажите панели другой кэш: `streamlit run dashboard/app.py -- --db ФАЙЛ` (или задайте VLMEMES_DB).",
    "This file has no `{table}` table: it is not a VLMemes cache, or an older one.":
        "В этом файле нет таблицы `{table}`: это не кэш VLMemes или кэш старой версии.",
    "No memes in this cache yet. They are filled by:": "В этом кэше пока нет мемов. Их добавляет команда:",
    "No predictions in this cache yet. They are filled by:":
        "В этом кэше пока нет предсказаний. Их вычисляет команда:",
    "No heatmaps in this cache yet. They are filled by:": "В этом кэше пока нет тепловых карт. Их строит команда:",
    "No runs in this cache yet. They are filled by:": "В этом кэше пока нет запусков. Их записывает команда:",
    "Nothing of this kind ({what}) in this cache yet. It is filled by:":
        "В этом кэше пока нет таких данных ({what}). Их заполняет команда:",
    "The predictions in this cache belong to no registered prediction set (`variants`). Recompute with:":
        "Предсказания в этом кэше не относятся ни к одному зарегистрированному набору предсказаний "
        "(`variants`). Пересчитайте их командой:",
    "The heatmaps in this cache belong to no registered method (`variants`). Recompute with:":
        "Тепловые карты в этом кэше не относятся ни к одному зарегистрированному методу (`variants`). "
        "Пересчитайте их командой:",
    "The {rows} in this cache belong to no registered {kind} (`variants`). Recompute with:":
        "Строки ({rows}) в этом кэше не относятся ни к одному зарегистрированному варианту ({kind}, "
        "`variants`). Пересчитайте их командой:",
    "{stage} {model} · prompt {prompt}": "{stage} {model} · промпт {prompt}",
    "Models given as local folders are shown by the folder's name. Whole ids:":
        "Модели, заданные локальной папкой, показаны по имени папки. Полные идентификаторы:",
    "no image stored": "картинка не сохранена",
    "content warning: blurred": "предупреждение о содержимом: размыто",
    "Show image": "Показать картинку",
    "This meme is labelled toxic (or has conflicting labels). Turn the content warning off in the sidebar "
    "to show all images.":
        "Этот мем размечен как токсичный (или у него противоречивые метки). Чтобы показывать все картинки, "
        "выключите предупреждение о содержимом на боковой панели.",
    "Open meme": "Открыть мем",
    "true **{label}**": "истинная метка **{label}**",
    "answer **{answer}**": "ответ **{answer}**",
    "{model} was trained on English text only: Russian prompts (ru-*) are outside its training data, so its "
    "ru-* scores understate what image-text matching can do; compare en-*, or use a multilingual model such "
    "as {suggested}":
        "{model} обучена только на английских текстах: русские промпты (ru-*) лежат вне её обучающих данных, "
        "поэтому её оценки на ru-* занижают возможности сопоставления картинки и текста; сравнивайте с en-* "
        "или возьмите многоязычную модель, например {suggested}",
    "Low label-token mass {mass} (< {threshold}): at the scoring step the model gave only this much "
    "probability to «токсичный» and «нейтральный» together, so it was not really choosing between the two "
    "words and p(toxic) says little.":
        "Малая масса токенов меток {mass} (< {threshold}): на шаге оценки модель отдала словам «токсичный» и "
        "«нейтральный» вместе лишь такую вероятность, то есть по сути не выбирала между ними, и p(toxic) "
        "мало что значит.",
    # table headers (components.COLUMN_TEXT)
    "format": "формат",
    "min width": "мин. ширина",
    "median width": "медиана ширины",
    "max width": "макс. ширина",
    "min height": "мин. высота",
    "median height": "медиана высоты",
    "max height": "макс. высота",
    "median KiB": "медиана, КиБ",
    "animated": "анимированные",
    "model": "модель",
    "memes in all": "мемов всего",
    "mean characters": "символов в среднем",
    "median characters": "медиана символов",
    "most characters": "символов максимум",
    "variant": "вариант",
    "prompt / method / engine": "промпт / метод / движок",
    "stage version": "версия этапа",
    "rows": "строк",
    "first result": "первый результат",
    "last result": "последний результат",
    "runs": "запуски",
    "prompt": "промпт",
    "low": "нижняя граница",
    "high": "верхняя граница",
    "resamples": "повторных выборок",
    "note": "примечание",
    "interval method": "метод интервала",
    "path": "путь",
    "last seen in run": "последний раз найден в запуске",
    "label mass": "масса меток",
    "low mass": "малая масса",
    "right": "верно",
    "at": "время",
    "text": "текст",
    "confidence": "уверенность",
    "box (model-input px)": "рамка (пиксели входа модели)",
    "error type": "тип ошибки",
    "failures": "сбои",
    "command": "команда",
    "started": "начат",
    "seconds": "секунд",
    "git commit": "коммит git",
    "memes folder": "папка мемов",
    "meme id": "id мема",
    "McNemar p": "p Мак-Немара",
    "McNemar p (Holm)": "p Мак-Немара (Холм)",
    "AUROC p": "p для AUROC",
    "AUROC p (Holm)": "p для AUROC (Холм)",

    # ---------------------------------------------------------------- charts
    "Both right": "Оба правы",
    "Only A right": "Прав только A",
    "Only B right": "Прав только B",
    "Both wrong": "Оба ошиблись",
    "longer side (px)": "длинная сторона (px)",
    "characters of OCR text": "символов текста OCR",
    "answer": "ответ",
    "true label": "истинная метка",
    "true positive rate": "доля верноположительных",
    "who is right": "кто прав",
    "threshold": "порог",

    # ---------------------------------------------------------------- Overview
    "What the cache holds, and how every prediction set (model × prompt version) scores against the folder labels.":
        "Что лежит в кэше и как каждый набор предсказаний (модель × версия промпта) справляется с метками "
        "из папок.",
    "Memes": "Мемы",
    "Toxic": "Токсичные",
    "Non-toxic": "Нетоксичные",
    "Label conflicts": "Конфликты меток",
    "Same bytes found under both labels: no true label.":
        "Один и тот же файл найден под обеими метками: истинной метки нет.",
    "Retired": "Выбывшие",
    "No longer found by the latest scan (included)": "Последнее сканирование их уже не нашло (учитываются)",
    "No longer found by the latest scan (left out; see the sidebar)":
        "Последнее сканирование их уже не нашло (не учитываются; см. боковую панель)",
    "Animated": "Анимированные",
    "GIF/WebP with more than one frame (first frame used).": "GIF/WebP больше чем из одного кадра (берётся первый кадр).",
    "Images": "Картинки",
    "Per file format: pixel sizes and file size": "По форматам файлов: размеры в пикселях и размер файла",
    "OCR coverage": "Охват OCR",
    "No OCR results yet. They are filled by:": "Результатов OCR пока нет. Их вычисляет команда:",
    "memes read": "прочитано мемов",
    "memes with a row from this engine": "мемы, для которых есть строка от этого движка",
    "with text": "с текстом",
    "memes where the engine found any text": "мемы, в которых движок нашёл хоть какой-то текст",
    "share with text": "доля с текстом",
    "Text length of": "Длина текста по движку",
    "This engine found no text in any meme.": "Этот движок не нашёл текста ни в одном меме.",
    "What is in the cache": "Что есть в кэше",
    "No stage has run yet: only the scan is stored. Fill the results with:":
        "Ни один этап ещё не запускался: сохранено только сканирование. Вычислите результаты командой:",
    "Metrics per model × prompt version": "Метрики по моделям × версиям промпта",
    "No predictions yet. They are filled by:": "Предсказаний пока нет. Их вычисляет команда:",
    "F1": "F1",
    "AUROC": "AUROC",
    "{low} of {n}": "{low} из {n}",
    "memes with a true label and an answer from this set": "мемы с истинной меткой и ответом из этого набора",
    "low label mass": "малая масса меток",
    "VLM scores where «токсичный» and «нейтральный» together got less than {share} of the probability at "
    "the scoring step: the model was not really choosing between the two words, so that p(toxic) says little "
    "(flagged on the Errors and Meme pages)":
        "Оценки VLM, при которых «токсичный» и «нейтральный» вместе получили меньше {share} вероятности на шаге "
        "оценки: модель по сути не выбирала между этими словами, и такое p(toxic) мало что значит (отмечено "
        "на страницах «Ошибки» и «Мем»)",
    "Value [95% interval] n=denominator; an interval that cannot be estimated from these memes says so instead "
    "of showing a zero-width one. Intervals: {methods}. Unparseable answers count as wrong and as missed toxic "
    "memes (docs/metrics.md).":
        "Значение [95% доверительный интервал] n=знаменатель; если интервал нельзя оценить по этим мемам, так и "
        "написано, вместо интервала нулевой ширины. Интервалы: {methods}. Неразобранные ответы считаются "
        "неверными и пропущенными токсичными мемами (docs/metrics.md).",
    "Stored by run {run}; the answers and labels are unchanged since.":
        "Сохранено запуском {run}; ответы и метки с тех пор не менялись.",
    "Computed now: the answers or labels changed after a precompute last stored the metrics.":
        "Вычислено сейчас: ответы или метки изменились после того, как предвычисление сохранило метрики.",
    "All numbers (long form)": "Все числа (длинная таблица)",
    "Confusion matrices": "Матрицы ошибок",
    "ROC curves": "ROC-кривые",
    "Score = p(toxic). Curves are thinned to at most {n} points each for drawing; AUROC uses every meme.":
        "Оценка = p(toxic). Для рисования каждая кривая прорежена до {n} точек; AUROC считается по всем мемам.",
    "No prediction set has scores with both classes present.":
        "Ни у одного набора предсказаний нет оценок при обоих присутствующих классах.",

    # ---------------------------------------------------------------- Errors
    "Where a prediction set is wrong, most confident mistakes first. An unparseable answer (the VLM named no "
    "class) is its own group.":
        "Где набор предсказаний ошибается — сначала самые уверенные ошибки. Неразобранный ответ (VLM не назвала "
        "класс) — отдельная группа.",
    "False positives": "Ложноположительные",
    "False negatives": "Ложноотрицательные",
    "Unparseable answers": "Неразобранные ответы",
    "with OCR text": "с текстом OCR",
    "without OCR text": "без текста OCR",
    "Prediction set": "Набор предсказаний",
    "True label": "Истинная метка",
    "OCR text": "Текст OCR",
    "Search OCR text and model answers": "Поиск по тексту OCR и ответам моделей",
    "a word or phrase (case-insensitive)": "слово или фраза (регистр не важен)",
    "OCR text from": "Текст OCR от",
    "answered toxic, labelled non-toxic": "ответ «токсичный», метка «нетоксичный»",
    "answered non-toxic, labelled toxic": "ответ «нетоксичный», метка «токсичный»",
    "Unparseable": "Неразобранные",
    "the answer named no class": "в ответе не назван класс",
    "Right": "Верные",
    "Show": "Показать",
    "No memes in this group under these filters.": "С этими фильтрами в этой группе мемов нет.",
    "Explanation": "Объяснение",
    "Raw answer": "Исходный ответ",

    # ---------------------------------------------------------------- Disagreement
    "Two prediction sets on the memes both answered: the right/wrong table, Cohen's kappa between their answers "
    "and the exact McNemar test. An unparseable answer counts as wrong.":
        "Два набора предсказаний на мемах, на которые ответили оба: таблица верно/неверно, каппа Коэна между их "
        "ответами и точный тест Мак-Немара. Неразобранный ответ считается неверным.",
    "Comparing needs two prediction sets (two models, or two prompt versions of one). Add another, e.g. all "
    "prompt versions of both models:":
        "Для сравнения нужны два набора предсказаний (две модели или две версии промпта одной модели). Добавьте "
        "ещё один, например все версии промптов обеих моделей:",
    "A and B are the same prediction set: pick two different ones.":
        "A и B — один и тот же набор предсказаний: выберите два разных.",
    "No meme with a true label has answers from both sets.": "Ни у одного мема с истинной меткой нет ответов обоих наборов.",
    "Memes compared": "Сравнено мемов",
    "Cohen's kappa": "Каппа Коэна",
    "agreement of the two answers beyond chance (unparseable is a third answer); 95% interval: {method}":
        "согласие двух ответов сверх случайного (неразобранный — третий вариант ответа); 95% доверительный "
        "интервал: {method}",
    "McNemar p (exact)": "p Мак-Немара (точный)",
    "Holm-adjusted over the {n} pairs below: {p}":
        ("с поправкой Холма по {n} паре ниже: {p}", "с поправкой Холма по {n} парам ниже: {p}",
         "с поправкой Холма по {n} парам ниже: {p}"),
    "Accuracy A − B": "Доля верных ответов A − B",
    "paired difference on the memes both answered; 95% interval: {method}":
        "парная разность на мемах, на которые ответили оба; 95% доверительный интервал: {method}",
    "AUROC A − B": "AUROC A − B",
    "on the {n} memes both scored; 95% interval and p: {method}; p = {p}":
        "на мемах, оценённых обоими ({n}); 95% доверительный интервал и p: {method}; p = {p}",
    ", Holm-adjusted {p}": ", с поправкой Холма {p}",
    "With {n} pairs of prediction sets, p-values are also given adjusted for the number of comparisons "
    "({adjustment}): p = {p_mcnemar} for McNemar and {p_auroc} for the AUROC difference of this pair.":
        "Пар наборов предсказаний: {n}, поэтому p-значения даны и с поправкой на число сравнений ({adjustment}): "
        "p = {p_mcnemar} для теста Мак-Немара и {p_auroc} для разности AUROC этой пары.",
    "All memes": "Все мемы",
    "True label: toxic": "Истинная метка: токсичный",
    "True label: non-toxic": "Истинная метка: нетоксичный",
    "Every pair of prediction sets ({n}), with Holm-adjusted p-values":
        "Все пары наборов предсказаний ({n}), p-значения с поправкой Холма",
    "Adjustment: {adjustment}. Accuracy: Newcombe's paired score interval and the exact McNemar test; AUROC: "
    "paired DeLong, on the memes both sets scored. A pair is significant at 5% after adjustment only where its "
    "Holm p < 0.05; docs/metrics.md explains the methods.":
        "Поправка: {adjustment}. Доля верных ответов: парный интервал Ньюкомба и точный тест Мак-Немара; AUROC: "
        "парный метод DeLong на мемах, оценённых обоими наборами. Пара значима на уровне 5% после поправки, "
        "только если её p по Холму < 0.05; методы описаны в docs/metrics.md.",
    "Scores: A against B": "Оценки: A против B",
    "A fixed sample of {k} of the {n} memes.": "Фиксированная выборка: {k} из {n} мемов.",
    "No meme has scores from both sets.": "Ни у одного мема нет оценок обоих наборов.",
    "Memes per cell": "Мемы по клеткам",
    "Cell": "Клетка",
    "No memes in this cell.": "В этой клетке мемов нет.",
    "A's explanation": "Объяснение A",
    "B's explanation": "Объяснение B",

    # ---------------------------------------------------------------- Heatmaps
    "Where the image model looked (class activation maps). Filters by true label, answer and correctness use "
    "the prediction set chosen below.":
        "Куда смотрела модель изображений (карты активации классов). Фильтры по истинной метке, ответу и "
        "правильности берут набор предсказаний, выбранный ниже.",
    "Method": "Метод",
    "Prediction set (for the answer filters)": "Набор предсказаний (для фильтров по ответу)",
    "none (no answer filters)": "нет (без фильтров по ответу)",
    "View": "Вид",
    "Overlay": "Наложение",
    "Original": "Оригинал",
    "Side by side": "Рядом",
    "Overlay opacity (%)": "Непрозрачность наложения (%)",
    "OCR boxes": "Рамки OCR",
    "Boxes from": "Рамки от",
    "Answer": "Ответ",
    "Correctness": "Правильность",
    "wrong": "неверно",
    "No heatmaps match these filters.": "Под эти фильтры не подходит ни одна тепловая карта.",

    # ---------------------------------------------------------------- Meme
    "Meme id": "id мема",
    "the meme's SHA-256, or its first characters": "SHA-256 мема или его первые символы",
    "Every gallery card has an 'Open meme' link that fills this in.":
        "У каждой карточки в галереях есть ссылка «Открыть мем», которая заполняет это поле.",
    "Open a meme from a gallery (Errors, Disagreement, Heatmaps: 'Open meme'), paste its id above, or search by "
    "file name below.":
        "Откройте мем из галереи («Ошибки», «Расхождения», «Тепловые карты»: «Открыть мем»), вставьте его id "
        "выше или найдите по имени файла ниже.",
    "Search by file name": "Поиск по имени файла",
    "part of a file name or folder, e.g. cat.jpg (case-insensitive)":
        "часть имени файла или папки, например cat.jpg (регистр не важен)",
    "Looks in every path a meme was found under (relative to the memes folder).":
        "Ищет по всем путям, под которыми найден мем (относительно папки мемов).",
    "No meme has a file name or folder containing this text.":
        "Ни у одного мема имя файла или папки не содержит этот текст.",
    "{n} memes found": ("найден {n} мем", "найдено {n} мема", "найдено {n} мемов"),
    "showing the first {n}: give more of the name": "показаны первые {n}: уточните имя",
    "retired": "выбыл",
    "Meme not found: no meme in this cache has this id.": "Мем не найден: в этом кэше нет мема с таким id.",
    "Several memes start with these characters: give more of the id.":
        "С этих символов начинаются несколько мемов: введите id длиннее.",
    "The original file, at up to 1600 px.": "Исходный файл, не больше 1600 px.",
    "The original file is not at its recorded place (or has changed): showing the stored thumbnail.":
        "Исходного файла нет на записанном месте (или он изменился): показана сохранённая миниатюра.",
    "**label conflict**": "**конфликт меток**",
    "**retired** (not found by the latest scan)": "**выбыл** (не найден последним сканированием)",
    "{n} frames": ("{n} кадр", "{n} кадра", "{n} кадров"),
    "size": "размер",
    "file size": "размер файла",
    "{size} KiB": "{size} КиБ",
    "first seen in run": "впервые найден в запуске",
    "Paths (relative to the memes folder)": "Пути (относительно папки мемов)",
    "Model answers": "Ответы моделей",
    "No model has answered for this meme yet.": "На этот мем пока не ответила ни одна модель.",
    "No p(toxic): why": "Нет p(toxic): почему",
    "Logits": "Логиты",
    "Prompt": "Промпт",
    "No OCR result for this meme yet.": "Результата OCR для этого мема пока нет.",
    "engine {engine} {version} · mean confidence {confidence}": "движок {engine} {version} · средняя уверенность {confidence}",
    "no text found": "текст не найден",
    "No heatmap for this meme yet.": "Тепловой карты для этого мема пока нет.",
    "Recorded failures": "Записанные сбои",

    # ---------------------------------------------------------------- Runs
    "Every `python -m pipeline precompute`: what it was asked, with which versions on which device, what it "
    "computed, and what failed.":
        "Каждый запуск `python -m pipeline precompute`: с какими параметрами, с какими версиями и на каком "
        "устройстве, что он вычислил и что не удалось.",
    "Details": "Подробности",
    "Run": "Запуск",
    "run {run}": "запуск {run}",
    "run {run} · {status} · {started}": "запуск {run} · {status} · {started}",
    "Arguments": "Аргументы",
    "Models / engines per stage": "Модели / движки по этапам",
    "Counts per stage": "Счётчики по этапам",
    "none recorded": "ничего не записано",
    "Versions": "Версии",
    "Device and commit": "Устройство и коммит",
    "Error": "Ошибка",
    "Stage": "Этап",
    "all": "все",
}
