"""parse_answer on answers VLMs really give: every case has an expected label and explanation fragments.

The table mixes classes so that a parser which always says "toxic", or one that calls any mention of
«токсичный» toxic, or one that falls back to a default class, fails many rows.
"""
from __future__ import annotations

import pytest

from pipeline.vlm import ParsedAnswer, parse_answer

T, N = "toxic", "non_toxic"

# (answer, expected label, fragments the explanation must contain, fragments it must not contain)
CASES = [
    # --- the requested two-line format
    ("Класс: токсичный\nОбъяснение: Мем высмеивает людей по национальности.",
     T, ["высмеивает людей по национальности"], ["Класс"]),
    ("Класс: нейтральный\nОбъяснение: Безобидная шутка про котов и понедельник.",
     N, ["Безобидная шутка про котов"], ["Класс"]),
    # explanation mentions «токсичный», the class line decides
    ("Класс: нейтральный\nОбъяснение: Хотя тема может показаться токсичной, мем никого не оскорбляет.",
     N, ["тема может показаться токсичной"], []),
    ("Класс: токсичный\nОбъяснение: Мем не нейтральный: он унижает женщин.",
     T, ["унижает женщин"], []),
    # --- markdown
    ("**Класс:** токсичный\n**Объяснение:** Оскорбление в адрес пожилых людей.",
     T, ["Оскорбление в адрес пожилых"], ["**"]),
    ("**Класс: нейтральный**\n\n**Объяснение:** Обычный бытовой юмор.", N, ["Обычный бытовой юмор"], ["**"]),
    ("### Класс\nнейтральный\n### Объяснение\nШутка про погоду без оскорблений.",
     N, ["Шутка про погоду"], ["#"]),
    ("*Класс*: *токсичный*\n*Объяснение*: унижение по внешности.", T, ["унижение по внешности"], ["*"]),
    ("**Класс:**\nТоксичный\n\n**Объяснение:**\nМем травит человека за лишний вес.",
     T, ["травит человека за лишний вес"], ["Токсичный"]),
    # --- capitals, dashes, numbering, bullets
    ("КЛАСС: ТОКСИЧНЫЙ\nОБЪЯСНЕНИЕ: ПРИЗЫВ К НАСИЛИЮ.", T, ["ПРИЗЫВ К НАСИЛИЮ"], []),
    ("Класс - нейтральный\nОбъяснение - просто игра слов.", N, ["просто игра слов"], []),
    ("Класс — токсичный\nОбъяснение — оскорбляет верующих.", T, ["оскорбляет верующих"], []),
    ("1. Класс: токсичный\n2. Объяснение: мем разжигает ненависть к мигрантам.",
     T, ["разжигает ненависть к мигрантам"], ["2."]),
    ("1) Класс: нейтральный\n2) Объяснение: ирония над самим собой.", N, ["ирония над самим собой"], []),
    ("- Класс: нейтральный\n- Объяснение: добрая шутка про студентов.", N, ["добрая шутка про студентов"], []),
    ("Класс токсичный\nОбъяснение высмеивает инвалидов", T, ["высмеивает инвалидов"], []),
    # --- code fences and JSON
    ("```\nКласс: нейтральный\nОбъяснение: мем про программистов.\n```", N, ["мем про программистов"], ["```"]),
    ('```json\n{"класс": "токсичный", "объяснение": "оскорбительные слова в адрес женщин"}\n```',
     T, ["оскорбительные слова в адрес женщин"], []),
    ('{"класс": "нейтральный", "объяснение": "Токсичных высказываний нет, это шутка."}',
     N, ["это шутка"], []),
    ('{"label": "toxic", "explanation": "The meme mocks an ethnic group."}', T, ["mocks an ethnic group"], []),
    ('{"label": "non-toxic", "reason": "A harmless pun."}', N, ["harmless pun"], []),
    ('{"Класс": "Не токсичный", "Объяснение": "нейтральная шутка"}', N, ["нейтральная шутка"], []),
    ('{"toxic": false, "explanation": "just a cat"}', N, ["just a cat"], []),
    ('Ответ:\n```json\n{"класс": "токсичный или нейтральный", "объяснение": "..."}\n```', None, [], []),
    # --- English
    ("Class: toxic\nExplanation: it insults people based on religion.", T, ["insults people based on religion"], []),
    ("Class: non-toxic\nExplanation: a wholesome joke about dogs.", N, ["wholesome joke about dogs"], []),
    ("Label: NEUTRAL\nReason: no insults.", N, ["no insults"], []),
    ("The meme is toxic. It demeans women.", T, ["It demeans women"], []),
    ("Neutral. The picture shows a cat sitting in a box.", N, ["cat sitting in a box"], []),
    ("This meme is not toxic, it is a joke about Mondays.", N, ["joke about Mondays"], []),
    ("Non-toxic", N, [], []),
    # --- short forms and inflections
    ("Класс: токсичен\nОбъяснение: грубое оскорбление.", T, ["грубое оскорбление"], []),
    ("Класс: нейтрален\nОбъяснение: шутка про кофе.", N, ["шутка про кофе"], []),
    ("Класс: токсичная\nОбъяснение: высмеивает внешность.", T, ["высмеивает внешность"], []),
    ("Класс: нейтральное\nОбъяснение: мем про учёбу.", N, ["мем про учебу"], []),
    ("Класс: Токсичный.", T, [], []),
    # --- negations
    ("Класс: не токсичный\nОбъяснение: обычная ирония.", N, ["обычная ирония"], []),
    ("Класс: нетоксичный\nОбъяснение: безобидный юмор.", N, ["безобидный юмор"], []),
    ("Класс: Не токсичный", N, [], []),
    ("Мем не является токсичным: это шутка про погоду.", N, ["шутка про погоду"], []),
    ("В меме нет ничего токсичного, просто смешная картинка с собакой.", N, ["смешная картинка с собакой"], []),
    # --- explain-first: reasoning, class line last
    ("Объяснение: На картинке мужчина, подпись оскорбляет людей с лишним весом. Это унижение.\nКласс: токсичный",
     T, ["оскорбляет людей с лишним весом"], ["Класс"]),
    ("Объяснение: мем шутит над долгим ожиданием автобуса, никто не оскорблён, ничего токсичного нет.\n"
     "Класс: нейтральный", N, ["ожиданием автобуса"], ["Класс"]),
    ("На меме изображён кот, текст — про понедельник. Оскорблений нет.\n\nКласс: нейтральный",
     N, ["изображен кот"], ["Класс"]),
    ("Мем содержит оскорбительные слова в адрес группы людей, это токсично.\n**Итоговый класс:** токсичный",
     T, ["оскорбительные слова"], ["Итоговый"]),
    # the template echoed first, then a real class line: the last decisive line wins
    ("Класс: токсичный или нейтральный\nКласс: нейтральный\nОбъяснение: шутка.", N, ["шутка"], []),
    # --- whole-text fallback
    ("Токсичный.\nМем оскорбляет людей по признаку пола.", T, ["оскорбляет людей по признаку пола"], ["Токсичный"]),
    ("Нейтральный — это просто шутка про отпуск.", N, ["просто шутка про отпуск"], []),
    ("Мем нейтральный. Некоторые могли бы счесть его токсичным, но оскорблений в нём нет.",
     N, ["оскорблений в нем нет"], []),
    ("Этот мем токсичный: он высмеивает людей с инвалидностью.", T, ["высмеивает людей с инвалидностью"], []),
    ("Класс: токсичный. Объяснение: тон вроде нейтральный, но подпись оскорбляет соседей.",
     T, ["подпись оскорбляет соседей"], ["Класс"]),
    ("Класс: скорее нейтральный, чем токсичный\nОбъяснение: грубовато, но без оскорблений.",
     N, ["без оскорблений"], []),
    ("Нетоксичный", N, [], []),
    ("Токсичный", T, [], ["Токсичный"]),
    ("Мем нейтральный. Не могу найти в нём оскорблений.", N, ["Не могу найти в нём оскорблений"], []),
    # --- no class stated -> None, never a default
    ("Я не могу ответить, является ли мем токсичным.", None, [], []),
    ("Объяснение: подпись высмеивает соседа по парте.\nКласс:", None, ["высмеивает соседа"], []),
    # an empty class line states nothing: the whole text is read
    ("Класс:\nОбъяснение: мем явно токсичный", T, ["мем явно токсичный"], []),
    ("", None, [], []),
    ("   \n ", None, [], []),
    ("Я не могу ответить на этот вопрос.", None, ["не могу ответить"], []),
    ("Я не могу однозначно сказать, токсичный ли этот мем.", None, [], []),
    ("I'm sorry, but I can't help with classifying this image.", None, [], []),
    ("Класс: токсичный или нейтральный\nОбъяснение: одно-два предложения.", None, [], []),
    ("Класс: токсичный/нейтральный", None, [], []),
    ("Класс: <токсичный | нейтральный>\nОбъяснение: ...", None, [], []),
    ("На картинке изображён человек с плакатом.", None, ["человек с плакатом"], []),
    ("Объяснение: на картинке кот сидит в коробке и смотрит в камеру, а подпись", None, ["кот сидит в коробке"], []),
]


@pytest.mark.parametrize("answer,label,fragments,absent", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_parse_answer(answer, label, fragments, absent):
    parsed = parse_answer(answer)
    assert isinstance(parsed, ParsedAnswer)
    assert parsed.label == label, (answer, parsed)
    norm = parsed.explanation.replace("ё", "е")
    for frag in fragments:
        assert frag.replace("ё", "е") in norm, (frag, parsed.explanation)
    for frag in absent:
        assert frag not in parsed.explanation, (frag, parsed.explanation)


def test_table_is_balanced_enough_to_catch_trivial_parsers():
    labels = [c[1] for c in CASES]
    assert len(CASES) >= 40
    # "always toxic", "always non_toxic" and "any mention of токсичн -> toxic" must each fail many rows
    assert sum(lab != T for lab in labels) >= 20 and sum(lab != N for lab in labels) >= 20
    naive = [("токсичн" in a.lower() or "toxic" in a.lower()) for a, *_ in CASES]
    assert sum((T if n else N) != lab for n, lab in zip(naive, labels)) >= 15
    assert sum(lab is None for lab in labels) >= 8


def test_none_answer():
    assert parse_answer(None) == ParsedAnswer(None, "")


@pytest.mark.parametrize("answer,reasoning", [
    ("Объяснение: мем про кота, 2024.\nКласс: нейтральный", "Объяснение: мем про кота, 2024."),
    ("Объяснение: подпись оскорбляет. Класс: токсичный", "Объяснение: подпись оскорбляет."),
    ("Подпись унижает женщин.\n\n**Класс:** токсичный", "Подпись унижает женщин."),
    ("1. Объяснение: шутка.\n2. Класс: нейтральный", "1. Объяснение: шутка."),
    ("Ответ оборвался на середине", "Ответ оборвался на середине"),
    ("Класс: токсичный\nОбъяснение: травля.", ""),
])
def test_reasoning_before_class(answer, reasoning):
    from pipeline.vlm import reasoning_before_class
    assert reasoning_before_class(answer) == reasoning


def test_assistant_prefix_depends_on_prompt_version():
    from pipeline.vlm import assistant_prefix
    answer = "Объяснение: подпись оскорбляет.\nКласс: токсичный"
    assert assistant_prefix("label-first-v1", answer) == "Класс:"
    assert assistant_prefix("explain-first-v1", answer) == "Объяснение: подпись оскорбляет.\nКласс:"
    assert assistant_prefix("explain-first-v1", "") == "Класс:"
