"""Russian for the Map page (dashboard/views/map.py) and its chart (dashboard/charts.py: map_scatter) (issue 17)."""
MESSAGES: dict[str, object] = {
    "Map": "Карта",
    "The memes laid out by their CLIP image embeddings: similar-looking memes lie close together. Colour the points "
    "by the true label or by a prediction set's answers, and draw a box to see those memes.":
        "Мемы, разложенные по их эмбеддингам изображений CLIP: похожие на вид мемы лежат рядом. Раскрасьте точки "
        "по истинной метке или по ответам набора предсказаний и выделите рамкой область, чтобы увидеть эти мемы.",
    "No map is stored in this cache yet. A precompute stores it after the CLIP stage (which stores the image "
    "embeddings it is computed from):":
        "В этом кэше пока нет карты. Её сохраняет предвычисление после этапа CLIP (он сохраняет эмбеддинги "
        "изображений, по которым она строится):",
    "Image model": "Модель изображений",
    "Colour by": "Цвет по",
    "Prediction set A": "Набор предсказаний A",
    "Prediction set B": "Набор предсказаний B",
    "The embeddings changed after this map was computed (run {run}): memes added or retired since are not on it. "
    "The next precompute computes it again.":
        "Эмбеддинги изменились после того, как карта была построена (запуск {run}): мемов, добавленных или выбывших "
        "с тех пор, на ней нет. Следующее предвычисление построит её заново.",
    "UMAP of {n} memes' image embeddings ({model}; cosine, 15 neighbours), computed by run {run}. Nearby points are "
    "memes whose pictures the model finds similar; distances between far-apart groups, and the axes, mean little. "
    "Draw a box (drag) to list the memes in it; double-click to clear it.":
        "UMAP эмбеддингов изображений {n} мемов ({model}; косинусное расстояние, 15 соседей), построен запуском "
        "{run}. Близкие точки — мемы, картинки которых модель считает похожими; расстояния между далёкими группами "
        "и оси почти ничего не значат. Выделите рамку (перетаскиванием), чтобы увидеть мемы в ней; двойной щелчок "
        "снимает её.",
    "Fewer than {k} memes: the first two principal components of their image embeddings ({model}) instead of UMAP, "
    "computed by run {run}. Draw a box (drag) to list the memes in it.":
        "Меньше {k} мемов: вместо UMAP — две первые главные компоненты их эмбеддингов изображений ({model}), "
        "построены запуском {run}. Выделите рамку (перетаскиванием), чтобы увидеть мемы в ней.",
    "Memes in the box": "Мемы в рамке",
    "Draw a box on the map to list the memes in it.": "Выделите рамкой область карты, чтобы увидеть мемы в ней.",
    "No meme in this box.": "В этой рамке нет мемов.",
    "true label **{label}**": "истинная метка **{label}**",
    "A: {answer}": "A: {answer}",
    "B: {answer}": "B: {answer}",
    # ---------------------------------------------------------------- the chart (dashboard/charts.py)
    "right or wrong (set A)": "верно или неверно (набор A)",
    "where A and B disagree": "где A и B расходятся",
    "no answer or no true label": "нет ответа или истинной метки",
    "not answered by both": "ответил не каждый из двух",
}
