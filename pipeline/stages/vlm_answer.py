"""Reading a VLM answer: its class, its explanation, the reasoning before its class line, and the
label-token probability mass of its score. Pure Python (re, json, math): the precompute re-parses
cached answers with it without importing torch.

    parse_answer(text, order)      -> ParsedAnswer(label, explanation)
    reasoning_before_class(text, order)
    label_mass(logits)             exp(log p toxic) + exp(log p non_toxic)
    is_low_label_mass(mass)        mass < LOW_LABEL_MASS

PARSER_VERSION is stored with every VLM row (`predictions.parser_version`); a precompute re-parses
stored raw answers whose version differs (runner -> VlmStage.refresh_cached), it never regenerates them.

The rules (order = the prompt's `answer_order`, pipeline.stages.vlm_prompts):
  * A class line is a key (`Класс`, `Class`, `Label`, `Ответ`, `Итоговый класс`, ...) at the start of
    a line or of a sentence (after `.!?;`, or a capitalised key such as `... Объяснение: x Класс: y`),
    markdown, numbering, bullets, table pipes and emoji markers around it ignored. A key in the middle
    of a sentence (`..., что класс: токсичный`) is not a class line.
  * Its value decides by its head: the first class word that is a statement, negation applied
    (`скорее нейтральный, но с оттенком токсичности` -> non_toxic, `токсичный, хотя на первый взгляд
    нейтральный` -> toxic, `не-токсичный` -> non_toxic). A value that offers both classes as
    alternatives (`токсичный или нейтральный`, `токсичный/нейтральный`, `ни токсичный, ни
    нейтральный`, `между токсичным и нейтральным`) decides nothing; a value that refuses
    (`Класс: не могу определить`) makes the answer unparseable.
  * label-first answers: the first deciding class line wins; explain-first answers: the last one
    (the conclusion after the reasoning).
  * Without a class line the whole text is read: every class word that is a statement, negation
    scope applied; questions (`токсичный ли`, `...?`), comparisons (`чем токсичный`), hypotheticals
    and concessions (`может показаться токсичным`, `хотя нейтральный`, `на первый взгляд`) are not
    statements. All statements agreeing decide; otherwise the first sentence with statements
    (label-first) or the last one (explain-first) decides when its statements agree. A refusal in
    the first sentence (`не могу ответить`) gives None; None is never replaced by a default class.
  * Negation scope: a negation glued to the word (`нетоксичный`, `не-токсичный`, `non-toxic`) is part
    of the word; a negation among the four words before it in the same clause (`не является
    токсичным`, `is not really toxic`, `нет ничего токсичного`, not `не только`), or after it at the
    end of its clause (`Токсичным этот мем не является`, `токсичности нет`) negates it once (negative
    concord: `ничего ... нет` is one negation); a negated opinion frame (`не думаю, что`, `нельзя
    сказать, что`, `не считаю`, `вряд ли`, `I don't think`, `I wouldn't call`) negates everything up to
    the end of its sentence, a colon or a contrast (`но`, `а`, `but`).
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.config import NON_TOXIC, TOXIC

PARSER_VERSION = "2"            # v1: the parser before the order / head-word / negation-scope rules (NULL in old rows)
ORDERS = ("label-first", "explain-first")
DEFAULT_ORDER = "label-first"

# A label-token probability mass below this: the model was not really choosing between the two words
# (the score renormalises two small probabilities); the dashboard flags such scores.
LOW_LABEL_MASS = 0.5


@dataclass(frozen=True)
class ParsedAnswer:
    label: str | None          # toxic | non_toxic | None (no class stated)
    explanation: str


# =========================================================================== label-token mass
def label_mass(logits: Any) -> float | None:
    """exp(log p toxic) + exp(log p non_toxic) of a VLM score's `logits` (a dict or its stored JSON);
    None when absent or unreadable."""
    if isinstance(logits, str):
        try:
            logits = json.loads(logits)
        except ValueError:
            return None
    if not isinstance(logits, dict):
        return None
    try:
        a, b = float(logits[TOXIC]), float(logits[NON_TOXIC])
    except (KeyError, TypeError, ValueError):
        return None
    if math.isnan(a) or math.isnan(b) or a > 1e-6 or b > 1e-6:     # log-probabilities are <= 0
        return None
    return math.exp(a) + math.exp(b)


def is_low_label_mass(mass: float | None) -> bool:
    """True when the score's label mass is known and below LOW_LABEL_MASS."""
    return mass is not None and mass < LOW_LABEL_MASS


# =========================================================================== vocabulary
_TOXIC_WORD = r"токсич\w*|toxic\w*"
_NEUTRAL_WORD = r"нейтрал\w*|neutral\w*"
_EXTRA_TOXIC = r"|оскорбительн\w*|offensive|hateful"       # accepted on a class line only
_EXTRA_NEUTRAL = r"|безобидн\w*|безвредн\w*|harmless|benign"
_GLUED_NEG = r"не[-‐‑–]?|non[-‐‑ ]?"
_NEGATIONS = {"не", "нет", "ни", "ничего", "нисколько", "ничуть", "вовсе", "без", "not", "no", "non", "never",
              "without", "nothing", "none", "neither", "nor", "isnt", "arent", "wasnt", "doesnt", "dont", "cannot"}
_NOT_NEGATING_NEXT = {"только", "просто", "лишь", "менее", "меньше", "just", "only", "merely", "less"}
_WINDOW_STOP = {"и", "а", "но", "однако", "and", "but", "же"}
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\n—–]|\s-\s")
_SENTENCE_END = re.compile(r"[.!?\n]")
_WORDS = re.compile(r"[\w'’]+")
_HYPOTHETICAL = re.compile(
    r"\b(?:мог\w*\s+бы|может\s+показаться|можно\s+(?:было\s+бы\s+)?(?:принять|счесть|подумать|решить)"
    r"|если\s+бы|на\s+первый\s+взгляд|казалось\s+бы|хотя|несмотря|счесть|сочтут|посчитать|показаться"
    r"|воспринять|был\w*\s+бы|стал\w*\s+бы|could|might|may\s+seem|at\s+first\s+glance|although|though|despite|would\s+be|if)\b")
_CONTRAST = re.compile(r"\b(?:но|однако|зато|but|however|yet)\b")
_FRAME = re.compile(
    r"(?:\b(?:не|никак\s+не|нельзя)\s+(?:[\w]+\s+){0,2}?"
    r"(?:думаю|считаю|скажу|сказать|сказал\w*(?:\s+бы)?|назвать|назову|назвал\w*(?:\s+бы)?|кажется|похоже|верю"
    r"|уверен\w*|утверждать|нахожу|признать)\b"
    r"|\bвряд\s+ли\b"
    r"|\b(?:don't|dont|do\s+not|wouldn't|would\s+not|can't|cannot|can\s+not|couldn't|doesn't|does\s+not)"
    r"\s+(?:\w+\s+)?(?:think|say|believe|call|consider|seem|find|agree)\b"
    r"|\b(?:cannot|can't|can\s+not|couldn't)\s+be\s+(?:called|considered|seen\s+as|described\s+as)\b"
    r"|\bhard\s+to\s+(?:call|consider)\b)"
    r"(?:\s*,?\s*(?:что|чтобы|будто|that)\b)?")
_FRAME_END = re.compile(r"[.!?;:\n]|,?\s+(?:но|а|однако|but|however)\b")
_POSTPOSED_NEG = re.compile(
    r"^\s*(?:[\w-]+\s+){0,3}?(?:(?:не|ни|никак\s+не|вовсе\s+не|точно\s+не)\s+"
    r"(?:является|являются|являлся|являлась|был\w*|будет|считается|назовешь|назвать|кажется|выглядит)"
    r"|(?:назвать|считать|признать)\s+нельзя"
    r"|нет|отсутствует|отсутствуют|не\s+(?:обнаружено|найдено|видно|наблюдается|выявлено|обнаружена|найдена))\s*$")
_ALTERNATIVE_GAP = re.compile(r"^[\W_]*(?:(?:или|либо|or|и|and|nor|ни|neither|между|between)\b[\W_]*)*$")
_REFUSAL = re.compile(
    r"не\s+могу|затрудняюсь|невозможно\s+(?:определить|сказать|оценить)|сложно\s+сказать|трудно\s+сказать"
    r"|не\s+буду|не\s+удалось|нельзя\s+определить|cannot|can't|can\s+not|unable|i\s+won't|i'm\s+sorry"
    r"|not\s+able\s+to|unclear|undecidable|неясно|не\s+ясно|неопредел\w*|не\s+определ\w*|unknown|n/a\b", re.IGNORECASE)

_KEYS_CLASS = (r"(?:итоговый\s+|окончательный\s+|финальный\s+|final\s+)?(?:класс|class|label|метка|категория|category"
               r"|ответ|answer|вердикт|verdict|классификация|classification|оценка|result|результат|вывод)")
_KEYS_EXPL = r"(?:объяснение|пояснение|обоснование|причина|рассуждение|комментарий|explanation|reason|reasoning|rationale)"
_KEY_LINE = (r"^\s*(?:\d+\s*[.)]\s*)?(?:[^\w\s\"'«]{{1,4}}\s*)?(?:\d+\s*[.)]\s*)?[\"'«]?(?P<key>{keys})[\"'»]?"
             r"\s*(?:[:\-–—=|]+\s*|\s+(?=\S)|$)(?P<value>.*)$")
_CLASS_LINE = re.compile(_KEY_LINE.format(keys=_KEYS_CLASS), re.IGNORECASE)
_EXPL_LINE = re.compile(_KEY_LINE.format(keys=_KEYS_EXPL), re.IGNORECASE)
_INLINE_KEYS = r"объяснение|обоснование|пояснение|explanation|reason|класс|class|label|ответ|answer|итоговый\s+класс"
# a key inside a line starts a new field only at the start of a sentence: after .!?; (and markup), or
# written with a capital letter after a space; never in the middle of a sentence ('..., что класс: x')
_INLINE_KEY = re.compile(
    rf"(?<=[.!?;»\"')])[ \t]*(?=\b(?i:{_INLINE_KEYS})\s*:)"
    rf"|(?<=\S)[ \t]+(?=[А-ЯA-Z])(?=(?i:{_INLINE_KEYS})\s*:)")
_JSON_CLASS_KEYS = {"класс", "class", "label", "метка", "категория", "category", "ответ", "answer", "verdict",
                    "вердикт", "classification", "классификация", "result", "результат"}
_JSON_BOOL_KEYS = {"toxic", "is_toxic", "токсичный", "токсичен", "токсичность", "toxicity"}
_JSON_EXPL_KEYS = {"объяснение", "пояснение", "обоснование", "причина", "explanation", "reason", "reasoning",
                   "rationale", "комментарий"}


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    return order


def _clean(text: str) -> str:
    """Markdown and code fences off, 'Класс: x. Объяснение: y' split into lines; otherwise lines kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in text.split("\n") if not ln.strip().startswith("```")]
    lines = [ln for ln in lines if not re.fullmatch(r"\s*\|?[\s:|-]*-{3,}[\s:|-]*\|?\s*", ln)]   # table rules
    text = "\n".join(lines)
    text = re.sub(r"\*\*|__|`", "", text)
    text = re.sub(r"(?m)^\s*#+\s*", "", text)                 # headings
    text = re.sub(r"(?m)^(\s*)\*\s+", r"\1- ", text)          # '* item' bullets
    text = re.sub(r"(?<!\w)\*(?=\S)|(?<=\S)\*(?!\w)", "", text)   # *italic*
    return _INLINE_KEY.sub("\n", text)


# =========================================================================== class words in a text
@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    label: str
    sentence: int


def _frames(low: str) -> list[tuple[int, int, int]]:
    """Negated opinion frames: (frame start, frame end, end of the scope it negates)."""
    stops = [x.start() for x in _FRAME_END.finditer(low)]
    out = []
    for m in _FRAME.finditer(low):
        k = bisect.bisect_left(stops, m.end())
        out.append((m.start(), m.end(), stops[k] if k < len(stops) else len(low)))
    return out


def _local_negation(before: str) -> bool:
    words = [w.replace("’", "'") for w in _WORDS.findall(before)][-4:]
    for k in range(len(words) - 1, -1, -1):
        w = words[k].strip("'").replace("'", "")
        if w in _WINDOW_STOP:
            return False
        if w in _NEGATIONS or w.endswith("nt") and words[k].endswith(("n't", "n’t")):
            nxt = words[k + 1] if k + 1 < len(words) else ""
            return nxt not in _NOT_NEGATING_NEXT
    return False


def _mentions(text: str, class_value: bool = False) -> list[_Mention]:
    """Class words in `text` that are statements, negations applied, in order (see the module doc)."""
    low = text.lower().replace("ё", "е").replace("’", "'")
    toxic = _TOXIC_WORD + (_EXTRA_TOXIC if class_value else "")
    neutral = _NEUTRAL_WORD + (_EXTRA_NEUTRAL if class_value else "")
    frames = _frames(low)
    breaks = [(b.start(), b.end()) for b in _CLAUSE_BREAK.finditer(low)]
    break_starts = [b[0] for b in breaks]
    sentence_ends = [x.start() for x in _SENTENCE_END.finditer(low)]
    found = []
    for m in re.finditer(rf"\b(?P<neg>{_GLUED_NEG})?(?:(?P<t>{toxic})|(?P<n>{neutral}))", low):
        if re.match(r"\s+ли\b", low[m.end():m.end() + 4]):
            continue
        k = bisect.bisect_left(sentence_ends, m.end())
        if not class_value and k < len(sentence_ends) and low[sentence_ends[k]] == "?":
            continue
        sentence = bisect.bisect_left(sentence_ends, m.start())
        j = bisect.bisect_left(break_starts, m.start())      # breaks before the word: breaks[:j]
        clause_start = breaks[j - 1][1] if j and breaks[j - 1][1] <= m.start() else 0
        j2 = bisect.bisect_left(break_starts, m.end())
        clause_end = break_starts[j2] if j2 < len(break_starts) else len(low)
        before = low[max(clause_start, m.start() - 200):m.start()]     # bounded: a looping answer stays linear
        before_words = _WORDS.findall(before)
        if before_words and before_words[-1] in ("чем", "than"):
            continue
        if _HYPOTHETICAL.search(_CONTRAST.split(before)[-1]):     # 'could be a joke, but is toxic' states
            continue
        if re.match(r"^\s*[\w\s]{0,40}?(?:хотя|although|though)\b", low[clause_start:m.start()]):
            continue
        word = TOXIC if m.group("t") else NON_TOXIC
        if m.group("neg"):
            word = NON_TOXIC if word == TOXIC else TOXIC
        frame_end = max((e for _, e, scope in frames if e <= m.start() < scope), default=None)
        local_from = max(clause_start, frame_end or 0, m.start() - 200)
        negated = (_local_negation(low[local_from:m.start()])
                   or bool(_POSTPOSED_NEG.match(low[m.end():min(clause_end, m.end() + 200)])))
        if frame_end is not None:
            negated = not negated
        if negated:
            word = NON_TOXIC if word == TOXIC else TOXIC
        found.append(_Mention(m.start(), m.end(), word, sentence))
    return found


def _agree(mentions: list[_Mention]) -> str | None:
    distinct = {x.label for x in mentions}
    return distinct.pop() if len(distinct) == 1 else None


def _value_label(value: str) -> str | None:
    """The class a class line's value states: its head word, unless it offers both classes."""
    mentions = _mentions(value, class_value=True)
    if not mentions:
        return None
    low = value.lower()
    if re.search(r"\b(?:ни|neither)\b[^.;]*\b(?:ни|nor)\b", low) and len({x.label for x in mentions}) > 1:
        return None
    for a, b in zip(mentions, mentions[1:]):
        if a.label != b.label and _ALTERNATIVE_GAP.match(low[a.end:b.start]):
            return None
    return mentions[0].label


def _is_refusal(text: str) -> bool:
    low = text.lower()
    spans = [(s, e) for s, e, _ in _frames(low)]
    return any(not any(s <= r.start() < e for s, e in spans) for r in _REFUSAL.finditer(low))


# =========================================================================== JSON answers
def _from_json(text: str) -> ParsedAnswer | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    label, found = None, False
    explanation = ""
    for key, value in data.items():
        k = str(key).strip().lower().replace("ё", "е")
        if k in _JSON_CLASS_KEYS and not found:
            found = True
            label = _value_label(str(value))
        elif k in _JSON_BOOL_KEYS and isinstance(value, bool) and not found:
            found = True
            label = TOXIC if value else NON_TOXIC
        elif k in _JSON_EXPL_KEYS and not explanation:
            explanation = " ".join(str(value).split())
    if not found:
        return None
    return ParsedAnswer(label, explanation)


# =========================================================================== parse_answer
def _only_label_words(text: str) -> bool:
    rest = re.sub(rf"\b(?:не\s*|non-?|not\s+)?(?:{_TOXIC_WORD}|{_NEUTRAL_WORD})", "", text.lower())
    return not re.search(r"\w", rest)


def _squash(lines: list[str]) -> str:
    parts = []
    for ln in lines:
        ln = re.sub(r"^\s*(?:\d+\s*[.)]\s*)?(?:[-•>|]\s*)?", "", ln).strip()
        if ln:
            parts.append(ln)
    return " ".join(" ".join(parts).split())


def _class_lines(lines: list[str]) -> tuple[list[tuple[int, str | None, bool]], set[int]]:
    """(index, label, refusal) of every class line with a value, and the lines used as values."""
    out: list[tuple[int, str | None, bool]] = []
    used_as_value: set[int] = set()
    for i, ln in enumerate(lines):
        m = _CLASS_LINE.match(ln)
        if not m:
            continue
        value, j = m.group("value").strip(), i
        if not value:                                   # '**Класс:**' with the class on the next line
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), i)
            if j != i and (_EXPL_LINE.match(lines[j]) or _CLASS_LINE.match(lines[j])):
                j = i
            value = lines[j].strip() if j != i and _mentions(lines[j], class_value=True) else ""
            if not value:
                j = i
        label = _value_label(value) if value else None
        refusal = label is None and bool(value) and not _mentions(value, class_value=True) and _is_refusal(value)
        if label is not None or refusal or _mentions(value, class_value=True):
            out.append((i, label, refusal))
            if j != i:
                used_as_value.add(j)
    return out, used_as_value


def _deciding(class_lines: list[tuple[int, str | None, bool]], order: str) -> tuple[int, str | None, bool] | None:
    """The class line that decides: the first (label-first) or last (explain-first) one that states a class
    or refuses to; None when no line does."""
    candidates = [c for c in class_lines if c[1] is not None or c[2]]
    if not candidates:
        return None
    return candidates[0] if order == "label-first" else candidates[-1]


def parse_answer(text: str | None, order: str = DEFAULT_ORDER) -> ParsedAnswer:
    """Read the class and the explanation out of a model answer; label None when no class is stated.

    `order` is the answer layout the prompt asked for (`VlmPrompt.answer_order`): "label-first" (the
    class line first: the first deciding class line wins) or "explain-first" (the reasoning first,
    the class line last: the last deciding class line wins). The rules: the module docstring.
    """
    _check_order(order)
    if not text or not text.strip():
        return ParsedAnswer(None, "")
    if "{" in text:
        parsed = _from_json(text)
        if parsed is not None:
            return parsed
    lines = _clean(text).split("\n")
    class_lines, used_as_value = _class_lines(lines)

    expl_idx = [i for i, ln in enumerate(lines) if _EXPL_LINE.match(ln)]
    skip = {i for i, _, _ in class_lines} | used_as_value
    if expl_idx:
        collected = []
        for start in expl_idx:
            collected.append(_EXPL_LINE.match(lines[start]).group("value"))
            for k in range(start + 1, len(lines)):
                if k in skip or k in expl_idx or _CLASS_LINE.match(lines[k]):
                    break
                collected.append(lines[k])
        explanation = _squash(collected)
    else:
        explanation = _squash([ln for i, ln in enumerate(lines) if i not in skip])

    deciding = _deciding(class_lines, order)
    if deciding is not None:
        return ParsedAnswer(deciding[1], explanation)
    if class_lines:                                     # class lines, none deciding (the template echoed)
        return ParsedAnswer(None, explanation)

    # no class line: a careful read of the whole text
    body = "\n".join(lines)
    first_sentence = re.split(r"[.!?\n]", body.strip(), maxsplit=1)[0]
    if _is_refusal(first_sentence):
        return ParsedAnswer(None, explanation)
    mentions = _mentions(body)
    label = _agree(mentions)
    if label is None and mentions:
        sentences = sorted({x.sentence for x in mentions})
        pick = sentences[0] if order == "label-first" else sentences[-1]
        label = _agree([x for x in mentions if x.sentence == pick])
    if label is not None and _only_label_words(body):
        explanation = ""
    elif label is not None:
        first, _, rest = body.strip().partition("\n")
        if len(first) <= 80 and re.fullmatch(r"[\W\d_]*(?:\w+[\W_]*){1,2}", first) and _mentions(first) \
                and rest.strip():
            explanation = _squash(rest.split("\n"))      # a bare 'Токсичный.' first line is the label
        else:
            m = re.match(r"\s*[\"'«]?(?:не\s+|non-?)?(?:токсич\w*|toxic\w*|нейтрал\w*|neutral\w*)[\"'»]?\s*[.:!—–-]\s*",
                         body, re.IGNORECASE)
            if m and body[m.end():].strip():
                explanation = _squash(body[m.end():].split("\n"))
    return ParsedAnswer(label, explanation)


# =========================================================================== the reasoning before the class
def reasoning_before_class(raw_answer: str, order: str = "explain-first") -> str:
    """The answer as generated up to (not including) the class line that decides it under `order`
    (parse_answer's rule: the last deciding line for explain-first, the first for label-first); the
    whole answer when it has none."""
    _check_order(order)
    raw_lines = raw_answer.replace("\r\n", "\n").split("\n")
    found: list[tuple[int, int, str | None, bool]] = []     # (raw line, offset of the key, label, refusal)
    for i, line in enumerate(raw_lines):
        subs = _clean(line).split("\n")
        for s, sub in enumerate(subs):
            m = _CLASS_LINE.match(sub)
            if not m:
                continue
            value = m.group("value").strip()
            if not value and s == len(subs) - 1:
                value = next((ln for ln in raw_lines[i + 1:] if ln.strip()), "")
                if _EXPL_LINE.match(_clean(value)) or not _mentions(value, class_value=True):
                    value = ""
            label = _value_label(value) if value else None
            refusal = label is None and bool(value) and not _mentions(value, class_value=True) and _is_refusal(value)
            if label is None and not refusal:
                continue
            pos = 0
            if s > 0:
                key_re = re.compile(r"(?i)\b" + r"\s+".join(map(re.escape, m.group("key").split())))
                earlier = sum(len(key_re.findall(x)) for x in subs[:s])
                keys = list(key_re.finditer(line))
                pos = keys[earlier].start() if earlier < len(keys) else (keys[-1].start() if keys else 0)
            found.append((i, pos, label, refusal))
    if not found:
        return raw_answer.strip()
    i, pos, _, _ = found[0] if order == "label-first" else found[-1]
    head = raw_lines[i][:pos]
    if re.fullmatch(r"[\s\d.)*#>•_|-]*", head):        # only markup before the key: '**', '2. ', '- '
        head = ""
    return "\n".join(raw_lines[:i] + [head.rstrip(" \t*_")]).strip()
