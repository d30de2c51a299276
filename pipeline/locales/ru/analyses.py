"""Russian for the Calibration and Label issues pages (dashboard/views/calibration.py, label_issues.py), their
charts and the report's sections of the same name (issue 17)."""
MESSAGES: dict[str, object] = {
    # ---------------------------------------------------------------- Calibration page
    "Calibration": "Калибровка",
    "Does a prediction set's p(toxic) mean what it says? Of the memes given p(toxic) ≈ 0.8, about 80% should be "
    "toxic. Expected calibration error, Brier score and reliability diagrams per scored set; for CLIP, the metrics "
    "at every threshold.":
        "Значит ли p(toxic) набора предсказаний то, что говорит? Из мемов с p(toxic) ≈ 0.8 токсичными должны быть "
        "около 80%. Ожидаемая ошибка калибровки, оценка Брайера и диаграммы надёжности для каждого набора с "
        "оценками; для CLIP — метрики при каждом пороге.",
    "Calibration per model × prompt version": "Калибровка по модели × версии промпта",
    "Reliability diagram": "Диаграмма надёжности",
    "Prediction sets": "Наборы предсказаний",
    "CLIP: the metrics at every threshold": "CLIP: метрики при каждом пороге",
    "CLIP set": "Набор CLIP",
    "F1 at the 0.5 default": "F1 при пороге 0.5 по умолчанию",
    "F1 held out, threshold chosen by cross-validation": "F1 на отложенных мемах, порог выбран кросс-валидацией",
    "F1 at the threshold chosen on these memes": "F1 при пороге, выбранном на этих же мемах",
    "At the 0.5 default: accuracy {acc}, precision {prec}, recall {rec}, F1 {f1} ({n} memes predicted toxic).":
        "При пороге 0.5 по умолчанию: доля верных ответов {acc}, точность {prec}, полнота {rec}, F1 {f1} "
        "(предсказано токсичными: {n}).",
    "No prediction set has a score (p(toxic)) for a meme with a true label.":
        "Ни у одного набора предсказаний нет оценки p(toxic) для мема с истинной меткой.",
    "Each point: the memes whose p(toxic) falls in one of 10 equal-width bins; size = memes; bar = 95% Wilson "
    "interval of their toxic share. On the dashed diagonal the scores mean what they say; below it the set "
    "overstates toxicity, above it understates it.":
        "Каждая точка — мемы, чья p(toxic) попала в один из 10 равных интервалов; размер — число мемов; отрезок — "
        "95% интервал Уилсона для доли токсичных. На пунктирной диагонали оценки значат то, что говорят; ниже неё "
        "набор завышает токсичность, выше — занижает.",
    "No CLIP set has scores. (A VLM answers with its written class line, not with a threshold on p(toxic), so the "
    "threshold analysis is for CLIP sets.)":
        "Ни у одного набора CLIP нет оценок. (VLM отвечает строкой класса, а не порогом на p(toxic), поэтому "
        "анализ порога — для наборов CLIP.)",
    "0.5 (the default rule)": "0.5 (правило по умолчанию)",
    "the rule CLIP's answers use: toxic when p(toxic) ≥ 0.5": "правило ответов CLIP: токсичный, если p(toxic) ≥ 0.5",
    "Chosen by {k}-fold cross-validation: threshold {t} (median of the folds' {ts}); F1 on the held-out folds {f1}. "
    "This is the fair estimate of what choosing a threshold from memes like these gives.":
        "Выбран {k}-кратной кросс-валидацией: порог {t} (медиана порогов частей: {ts}); F1 на отложенных частях "
        "{f1}. Это честная оценка того, что даёт выбор порога по таким мемам.",
    "Chosen on these same memes: threshold {t}, F1 {f1}. Chosen on the memes it is measured on, so optimistic: not "
    "a held-out result.":
        "Выбран на этих же мемах: порог {t}, F1 {f1}. Выбран на тех мемах, на которых измерен, поэтому завышен: "
        "это не результат на отложенных данных.",
    "Value [95% interval]. Intervals: {methods}. The plug-in ECE is biased upward on few memes: read it against "
    "the ECE of a calibrated model at the same n.":
        "Значение [95% интервал]. Интервалы: {methods}. Выборочная ECE на малом числе мемов смещена вверх: "
        "сравнивайте её с ECE откалиброванной модели при том же n.",
    "chosen by cross-validation": "выбран кросс-валидацией",
    "chosen on these memes": "выбран на этих мемах",
    "no score": "без оценки",
    "ECE [95% interval]": "ECE [95% интервал]",
    "ECE of a calibrated model": "ECE откалиброванной модели",
    "p (calibrated?)": "p (откалиброван?)",
    "Brier [95% interval]": "Брайер [95% интервал]",
    "memes with a true label and a score from this set": "мемы с истинной меткой и оценкой этого набора",
    "memes with a true label and an answer but no p(toxic): left out of calibration":
        "мемы с истинной меткой и ответом, но без p(toxic): не входят в калибровку",
    "expected calibration error: over 10 equal-width score bins, the memes-weighted gap between the mean p(toxic) "
    "and the share of toxic memes; 0 = calibrated":
        "ожидаемая ошибка калибровки: по 10 равным интервалам оценки — взвешенный по числу мемов разрыв между "
        "средней p(toxic) и долей токсичных мемов; 0 — откалиброван",
    "the ECE that a perfectly calibrated model shows on these scores from chance alone (95th percentile of labels "
    "redrawn from the scores): on few memes even a calibrated model has a large ECE":
        "ECE, которую идеально откалиброванная модель показывает на этих оценках только из-за случайности "
        "(95-й процентиль при метках, заново разыгранных по оценкам): на малом числе мемов даже у "
        "откалиброванной модели ECE велика",
    "how often a perfectly calibrated model shows an ECE at least this large at this n; small = the "
    "miscalibration is more than chance (a large p does not show the set is calibrated)":
        "как часто идеально откалиброванная модель показывает ECE не меньше этой при таком n; мало — "
        "некалиброванность больше случайной (большое p не доказывает, что набор откалиброван)",
    "mean squared error of p(toxic) against the true label; lower is better, 0.25 = always saying 0.5":
        "средний квадрат ошибки p(toxic) относительно истинной метки; чем меньше, тем лучше, 0.25 — всегда "
        "отвечать 0.5",
    "Computing the calibration of every scored prediction set…": "Считаю калибровку каждого набора с оценками…",
    # ---------------------------------------------------------------- charts
    "mean p(toxic) in the bin": "средняя p(toxic) в интервале",
    "share of toxic memes (95% Wilson interval)": "доля токсичных мемов (95% интервал Уилсона)",
    "threshold on p(toxic)": "порог на p(toxic)",
    "bin from": "интервал от",
    "bin to": "интервал до",
    "share of toxic memes": "доля токсичных мемов",
    "interval from": "интервал от",
    "interval to": "интервал до",
    # ---------------------------------------------------------------- Label issues page
    "Label issues": "Проблемы разметки",
    "Memes whose folder label several prediction sets confidently contradict: candidates for a second look, "
    "ranked by confident learning (Cleanlab) on the zero-shot scores. Labels are never changed by the tool.":
        "Мемы, метке папки которых уверенно противоречат несколько наборов предсказаний: кандидаты на повторный "
        "просмотр, ранжированные методом confident learning (Cleanlab) по zero-shot оценкам. Инструмент никогда "
        "не меняет метки.",
    "Prediction sets that give evidence": "Наборы предсказаний — свидетельства",
    "Sets that must disagree": "Сколько наборов должны не согласиться",
    "Memes checked": "Проверено мемов",
    "Flagged by confident learning": "Отмечено методом",
    "Listed": "В списке",
    "No score in any set": "Без оценки во всех наборах",
    "Method: {method}. A set confidently disagrees with a meme's label when its probability of the other label "
    "reaches that label's per-set threshold (the mean probability the set gives the memes labelled so). Quality = "
    "the mean probability of the given label over the sets (0: they are sure it is the other one). A listed meme "
    "may be mislabelled, ambiguous, or a shared blind spot of the models: look at it.":
        "Метод: {method}. Набор уверенно не согласен с меткой мема, когда его вероятность другой метки достигает "
        "порога этой метки для набора (средней вероятности, которую набор даёт мемам с такой меткой). Качество — "
        "средняя по наборам вероятность данной метки (0 — наборы уверены в другой). Мем в списке может быть "
        "размечен неверно, быть неоднозначным или общим слепым пятном моделей: посмотрите на него.",
    "Their p(toxic) per meme, used as out-of-sample probabilities: none of them saw the labels. Sets of one model "
    "with other prompts are not independent evidence.":
        "Их p(toxic) для каждого мема используются как вероятности вне выборки: ни один набор не видел меток. "
        "Наборы одной модели с другими промптами — не независимые свидетельства.",
    "Choose at least one prediction set.": "Выберите хотя бы один набор предсказаний.",
    "A meme is listed only when at least this many of the chosen sets confidently favour the other label on "
    "their own":
        "Мем попадает в список, только если хотя бы столько выбранных наборов сами по себе уверенно за другую "
        "метку",
    "memes with a true label and at least one score": "мемы с истинной меткой и хотя бы одной оценкой",
    "flagged, and contradicted by at least {n} of the chosen sets":
        "отмечены методом, и им противоречат не меньше {n} выбранных наборов",
    "memes with a true label left out": "мемы с истинной меткой, не вошедшие в анализ",
    "No meme is contradicted by at least {n} of the chosen sets.":
        "Ни одному мему не противоречат {n} или больше выбранных наборов.",
    "folder label **{label}** · the sets suggest **{suggested}**": "метка папки **{label}** · наборы за **{suggested}**",
    "quality {q} · {k} of {m} sets disagree": "качество {q} · не согласны наборов: {k} из {m}",
    "confident learning (Cleanlab)": "confident learning (Cleanlab)",
    "self-confidence ranking": "ранжирование по уверенности в метке",
    "Ranking possible label issues…": "Ранжирую возможные проблемы разметки…",
    # ---------------------------------------------------------------- the report's sections
    "Expected calibration error: over 10 equal-width bins of p(toxic), the memes-weighted gap between the mean "
    "p(toxic) and the share of toxic memes (0 = the scores mean what they say). On few memes it is large even for "
    "a calibrated model: «ECE of a calibrated model» is the 95th percentile a perfectly calibrated model shows on "
    "these scores by chance, and p how often it reaches the observed ECE. Brier: mean squared error of p(toxic) "
    "(0.25 = always 0.5). Intervals: BCa bootstrap over memes.":
        "Ожидаемая ошибка калибровки (ECE): по 10 равным интервалам p(toxic) — взвешенный по числу мемов разрыв "
        "между средней p(toxic) и долей токсичных мемов (0 — оценки значат то, что говорят). На малом числе мемов "
        "она велика даже у откалиброванной модели: «ECE откалиброванной модели» — 95-й процентиль, который "
        "идеально откалиброванная модель показывает на этих оценках случайно, а p — как часто она достигает "
        "наблюдаемой ECE. Брайер — средний квадрат ошибки p(toxic) (0.25 — всегда 0.5). Интервалы: бутстрэп BCa "
        "по мемам.",
    "{name}: the threshold on p(toxic)": "{name}: порог на p(toxic)",
    "how it was chosen": "как выбран",
    "Memes whose folder label at least {n} of these sets confidently contradict, ranked by confident learning "
    "(Cleanlab) on their zero-shot scores: {sets}. Candidates for a second look; the tool never changes a label.":
        "Мемы, метке папки которых уверенно противоречат не меньше {n} из этих наборов, ранжированные методом "
        "confident learning (Cleanlab) по их zero-shot оценкам: {sets}. Кандидаты на повторный просмотр; "
        "инструмент никогда не меняет метки.",
    "Possible label issues": "Возможные проблемы разметки",
    "the sets suggest {label} · quality {q} · {k} of {m} sets disagree":
        "наборы за {label} · качество {q} · не согласны наборов: {k} из {m}",
    # ---------------------------------------------------------------- Overview: near-duplicates
    "Near-duplicates": "Почти дубликаты",
    "No perceptual hashes stored yet: the next precompute's scan stores one per image.":
        "Перцептивные хеши ещё не сохранены: их сохранит сканирование при следующем precompute.",
    "Memes hashed": "Мемов с хешем",
    "Near-duplicate groups": "Групп почти дубликатов",
    "Memes in a group": "Мемов в группах",
    "Groups with both labels": "Групп с обеими метками",
    "perceptual hash (pHash, 64 bits) of the first frame, stored by the scan":
        "перцептивный хеш (pHash, 64 бита) первого кадра, сохраняется при сканировании",
    "memes whose hashes differ in at most {d} of 64 bits, joined transitively: resized, recompressed or slightly "
    "edited copies of one picture":
        "мемы, чьи хеши различаются не больше чем в {d} битах из 64, с объединением по цепочке: уменьшенные, "
        "пересжатые или слегка изменённые копии одной картинки",
    "the same picture under both labels: label noise, or a caption that changes the class; either way the two "
    "copies are not independent test cases":
        "одна картинка под обеими метками: шум разметки или подпись, меняющая класс; в любом случае две копии — "
        "не независимые тестовые примеры",
    "{n} near-duplicate groups carry both labels: look at them (label noise or leakage between the classes).":
        "Групп почти дубликатов с обеими метками: {n}. Посмотрите на них (шум разметки или утечка между "
        "классами).",
    "Near-duplicate groups ({shown} of {n}, groups with both labels first)":
        "Группы почти дубликатов ({shown} из {n}, сначала группы с обеими метками)",
    "Group {i}: {toxic} toxic, {non} non-toxic": "Группа {i}: токсичных — {toxic}, нейтральных — {non}",
    "group": "группа",
    "both labels": "обе метки",
    "first meme": "первый мем",
    # ---------------------------------------------------------------- Slices page (pipeline/slices.py)
    "Slices": "Срезы",
    "Where does a prediction set do better or worse? Its metrics within slices of the memes, each with its 95% "
    "interval: a difference between slices means something only where the intervals leave no doubt.":
        "Где набор предсказаний работает лучше или хуже? Его метрики в срезах мемов, каждая с 95% интервалом: "
        "разница между срезами что-то значит, только если интервалы не оставляют сомнений.",
    "Slice by": "Срез по",
    "Value [95% interval]; accuracy: Wilson, F1: as on the Overview. Unparseable answers count as wrong. The "
    "slices are not corrected for multiple comparisons: with many slices, one will look different by chance.":
        "Значение [95% интервал]; доля верных ответов — интервал Уилсона, F1 — как в обзоре. Неразобранные ответы считаются "
        "ошибками. Поправки на множественные сравнения нет: среди многих срезов какой-то случайно будет "
        "выглядеть иначе.",
    "OCR engine": "Движок OCR",
    "Too few memes to say anything (fewer than {n}): {slices}. Their numbers are shown, but a difference there is "
    "as likely chance as a real effect.":
        "Слишком мало мемов, чтобы что-то утверждать (меньше {n}): {slices}. Их числа показаны, но разница там "
        "с равным успехом может быть случайной.",
    "This slice needs OCR results. They are filled by:": "Этому срезу нужны результаты OCR. Их заполняет:",
    "toxic share": "доля токсичных",
    "too small": "слишком мал",
    "memes with a true label in this slice that the set answered":
        "мемы с истинной меткой в этом срезе, на которые набор ответил",
    "fewer than {n} memes: the intervals are too wide to say anything about this slice":
        "меньше {n} мемов: интервалы слишком широки, чтобы что-то сказать об этом срезе",
    "not read by this engine": "не прочитан этим движком",
    "no text": "нет текста",
    "in a near-duplicate group": "в группе почти дубликатов",
    "no near-duplicate": "без почти дубликатов",
    "not hashed": "нет хеша",
    "unknown": "неизвестно",
    "has text": "есть текст",
    "whether the OCR engine found any text in the meme": "нашёл ли движок OCR в меме хоть какой-то текст",
    "OCR confidence": "уверенность OCR",
    "the OCR engine's mean confidence over the words it read": "средняя уверенность движка OCR по прочитанным словам",
    "caption length": "длина подписи",
    "image size": "размер изображения",
    "near-duplicate group": "группа почти дубликатов",
    "the longer side of the original image": "длинная сторона исходного изображения",
    "whether the meme has a near-duplicate (perceptual hash) among the memes":
        "есть ли у мема почти дубликат (по перцептивному хешу) среди мемов",
    "all memes": "все мемы",
    "Slice of every page": "Срез для всех страниц",
    "Every page then counts only these memes (the number after the dot: memes in it). Kept in the link and "
    "across pages.":
        "Тогда каждая страница считает только эти мемы (число после точки — мемы в срезе). Сохраняется в ссылке "
        "и при переходе между страницами.",
    "Slice: {slice} memes. Every number and gallery on this page counts only these memes; choose “all memes” in "
    "the sidebar to see the whole cache.":
        "Срез: {slice} мемов. Каждое число и каждая галерея на этой странице учитывают только эти мемы; выберите "
        "«все мемы» на боковой панели, чтобы видеть весь кэш.",
    "This meme is outside the slice chosen in the sidebar: choose “all memes” there to see it.":
        "Этот мем вне среза, выбранного на боковой панели: выберите там «все мемы», чтобы его увидеть.",
    "template cluster": "кластер шаблона",
    "template {n}": "шаблон {n}",
    "in no template cluster": "вне кластеров шаблонов",
    "no image vector (map)": "нет вектора изображения (карта)",
    "memes whose CLIP image vectors are this close (cosine ≥ 0.9, joined transitively): the same picture under "
    "other captions; template 1 is the largest":
        "мемы, чьи векторы изображений CLIP так близки (косинус ≥ 0,9, с транзитивным объединением): одна и та же "
        "картинка под разными подписями; шаблон 1 — самый большой",
    # ---------------------------------------------------------------- the report's map
    "Each point is a meme, placed by its CLIP image embedding ({model}, {method}): memes that look alike lie close "
    "together. Distances between far-apart groups mean little.":
        "Каждая точка — мем, размещённый по его эмбеддингу изображения CLIP ({model}, {method}): похожие мемы "
        "лежат рядом. Расстояния между далёкими группами мало что значат.",
    "An even sample of 4000 of the {n} memes is drawn.": "Нарисована равномерная выборка: 4000 из {n} мемов.",
    "No map is stored yet: a precompute that runs the CLIP stage lays one out.":
        "Карта ещё не сохранена: её строит precompute, запускающий этап CLIP.",
    "Map of the memes by their CLIP image embeddings": "Карта мемов по их эмбеддингам изображений CLIP",
}
