"""Russian for the modality analysis (issue 16): the Modality page (dashboard/views/modality.py), the three
views on the Meme page, and pipeline/modality.py's names and readings."""
MESSAGES: dict[str, object] = {
    "Modality": "Модальность",
    "One prediction set on three views of each meme: the full meme, the meme with its caption inpainted away, and "
    "the caption alone (for CLIP drawn as plain text on a plain background, for the VLM given as text without the "
    "image). Which decisions survive removing the caption?":
        "Один набор предсказаний на трёх видах каждого мема: мем целиком, мем с закрашенной подписью и "
        "одна подпись (для CLIP — простой текст на ровном фоне, для VLM — текст без картинки). Какие решения "
        "переживают удаление подписи?",
    "No prediction set has answers on the derived views yet. They are computed by:":
        "Ни у одного набора предсказаний пока нет ответов на производных видах. Их вычисляет:",
    "Memes on all three views": "Мемов на всех трёх видах",
    "No OCR text": "Нет текста OCR",
    "memes whose OCR text has no letter or digit: they have no caption to remove or to show alone, so no derived "
    "view; left out of every number below":
        "мемы, в тексте OCR которых нет ни буквы, ни цифры: у них нет подписи, которую можно убрать или показать "
        "отдельно, поэтому нет производных видов; они не входят ни в одно число ниже",
    "Not computed yet": "Ещё не вычислено",
    "answered on the full meme but not yet on both derived views (or failed: see the Runs page)":
        "есть ответ на целый мем, но ещё нет ответов на обоих производных видах (или они не удались: см. страницу "
        "«Запуски»)",
    "Answered on the full meme": "Ответов на целый мем",
    "No meme with a true label has answers on all three views.":
        "Ни у одного мема с истинной меткой нет ответов на всех трёх видах.",
    "Of the memes called toxic on the full meme": "Из мемов, названных токсичными на целом меме",
    "image-driven": "за счёт картинки",
    "text-driven": "за счёт текста",
    "needs both": "нужно и то и другое",
    "image-driven: still toxic with the caption removed; text-driven: not toxic without the caption but toxic on "
    "the caption alone; needs both: toxic on neither derived view. Share [Wilson 95% interval] · memes. An "
    "unparseable answer counts as not toxic.":
        "за счёт картинки: токсичен и без подписи; за счёт текста: без подписи не токсичен, а по одной подписи "
        "токсичен; нужно и то и другое: не токсичен ни на одном производном виде. Доля [95% интервал Уилсона] · "
        "мемы. Нераспознанный ответ считается «не токсичен».",
    "Decisions on the three views": "Решения на трёх видах",
    "Full meme": "Целый мем",
    "Caption removed": "Без подписи",
    "Caption only": "Только подпись",
    "Paired tests between the views": "Парные тесты между видами",
    "Toxic on A": "Токсичен на A",
    "Toxic on B": "Токсичен на B",
    "Toxic on A only": "Токсичен только на A",
    "Toxic on B only": "Токсичен только на B",
    "McNemar p (decisions)": "p Макнемара (решения)",
    "Holm p": "p по Холму",
    "McNemar p (correctness, Holm)": "p Макнемара (правильность, Холм)",
    "Exact McNemar tests on the memes answered on all three views: on the decisions (toxic or not) and on "
    "correctness (an unparseable answer is wrong), each Holm-adjusted over the three pairs.":
        "Точные тесты Макнемара на мемах с ответами на всех трёх видах: для решений (токсичен или нет) и для "
        "правильности (нераспознанный ответ — ошибка), каждый с поправкой Холма на три пары.",
    "Memes per cell, the three views side by side": "Мемы по ячейкам, три вида рядом",
    "image-driven: still toxic without the caption": "за счёт картинки: токсичен и без подписи",
    "text-driven: toxic only with the caption": "за счёт текста: токсичен только с подписью",
    "needs both: toxic on neither derived view": "нужно и то и другое: не токсичен ни на одном производном виде",
    "not toxic on the full meme": "не токсичен на целом меме",
    "text only, no image": "только текст, без картинки",
    # pipeline/modality.py
    "full meme": "целый мем",
    "meme without its caption": "мем без подписи",
    "caption alone": "одна подпись",
    "No meme has an answer on all three views: there is nothing to compare.":
        "Ни у одного мема нет ответа на всех трёх видах: сравнивать нечего.",
    "On all {n} memes the decision is the same on the {a} and the {b}: changing the view changed no decision here.":
        ("На {n} меме решение одинаково на виде «{a}» и на виде «{b}»: смена вида здесь не изменила ни одного "
         "решения.",
         "На всех {n} мемах решение одинаково на виде «{a}» и на виде «{b}»: смена вида здесь не изменила ни "
         "одного решения.",
         "На всех {n} мемах решение одинаково на виде «{a}» и на виде «{b}»: смена вида здесь не изменила ни "
         "одного решения."),
    "Toxic on the {a} but not on the {b}: {only_a}; the reverse: {only_b} (of {n} memes); exact McNemar p = {p:.3g} "
    "(Holm over the three pairs).":
        "Токсичен на виде «{a}», но не на виде «{b}»: {only_a}; наоборот: {only_b} (из {n} мемов); точный тест "
        "Макнемара p = {p:.3g} (поправка Холма на три пары).",
    " A split this uneven would be unlikely if the view did not matter to the decision; it says nothing about why.":
        " Такой неравный раскол был бы маловероятен, если бы вид не влиял на решение; о причинах он ничего не "
        "говорит.",
    " p >= 0.05 does not show that the view does not matter: an effect smaller than these memes can detect may be "
    "there.":
        " p >= 0.05 не доказывает, что вид не важен: эффект меньше того, что могут обнаружить эти мемы, может "
        "быть.",
    # dashboard/views/meme.py
    "The three views the models judged": "Три вида, которые оценивали модели",
    "The full meme, the meme with its OCR boxes inpainted away, and the caption alone (CLIP sees it drawn as here; "
    "the VLM gets it as text, without an image). Answers per view: the prediction sets named …/caption-removed and "
    "…/caption-only above; the Modality page compares them.":
        "Целый мем, мем с закрашенными рамками OCR и одна подпись (CLIP видит её нарисованной, как здесь; VLM "
        "получает её текстом, без картинки). Ответы по видам — наборы предсказаний …/caption-removed и "
        "…/caption-only выше; их сравнивает страница «Модальность».",
    "no OCR text: no derived view": "нет текста OCR: нет производного вида",
}
