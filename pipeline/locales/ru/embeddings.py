"""Russian for the image embeddings (issue 17): the similar memes on the Meme page (dashboard/views/meme.py)."""
MESSAGES: dict[str, object] = {
    "Similar memes": "Похожие мемы",
    "No image embedding of this meme is stored yet. The CLIP stage stores one per image model "
    "(from the same image pass as its answers):":
        "Эмбеддинг изображения этого мема ещё не сохранён. Этап CLIP сохраняет по одному на каждую модель "
        "изображений (из того же прохода по картинке, что и его ответы):",
    "Image embedding of": "Эмбеддинг изображения модели",
    "The memes (at most {n}) whose CLIP image embedding ({model}) is closest to this one's by cosine "
    "similarity (1: the same direction), most similar first, each with its true label and the answers "
    "of every prediction set. Near-copies with another label, or other answers, are worth a look.":
        "Мемы (не больше {n}), чей эмбеддинг изображения CLIP ({model}) ближе всего к эмбеддингу этого мема по косинусной "
        "близости (1 — то же направление), самые похожие первыми; у каждого истинная метка и ответы всех наборов "
        "предсказаний. Стоит присмотреться к почти копиям с другой меткой или другими ответами.",
    "No other meme has an image embedding of this model.":
        "Ни у одного другого мема нет эмбеддинга изображения этой модели.",
    "similarity {similarity}": "близость {similarity}",
}
