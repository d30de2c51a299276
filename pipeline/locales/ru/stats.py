"""Russian for the statistical texts of pipeline/metrics.py: interval methods (METHOD_NAMES), the
notes of an Estimate without an interval, the McNemar reading and the Holm adjustment. Shown by
note_text, method_text, reading_text and adjustment_text; the stored results keep English.

Plural entries (tuples) are (one, few, many): 1 / 21 мем, 2 / 22 мема, 5 / 11 мемов."""
MESSAGES: dict[str, object] = {
    # ---------------------------------------------------------------- interval methods
    "Wilson score": "интервал Уилсона",
    "Wilson on tp/(tp+fp+fn), mapped to F1": "интервал Уилсона для tp/(tp+fp+fn), пересчитанный в F1",
    "DeLong, logit scale": "метод ДеЛонга на логит-шкале",
    "Hanley-McNeil score": "скор-интервал Хэнли — Макнила",
    "Hanley-McNeil score joined with DeLong logit":
        "скор-интервал Хэнли — Макнила, объединённый с логит-интервалом ДеЛонга",
    "Wilson on the observed agreement, mapped to kappa":
        "интервал Уилсона для наблюдаемого согласия, пересчитанный в каппу",
    "stratified BCa bootstrap": "стратифицированный бутстрэп BCa",
    "paired DeLong": "парный метод ДеЛонга",
    "MOVER from the two AUROC intervals, paired DeLong correlation":
        "MOVER по двум интервалам AUROC с парной корреляцией ДеЛонга",
    "MOVER from the two logit-DeLong intervals, paired DeLong correlation":
        "MOVER по двум логит-интервалам ДеЛонга с парной корреляцией ДеЛонга",
    "Newcombe paired score (method 10)": "парный скор-интервал Ньюкомба (метод 10)",
    "percentile bootstrap": "процентильный бутстрэп",
    "DeLong": "метод ДеЛонга",
    "{method}, {resamples}": "{method}, {resamples}",
    "{n} resamples": ("{n} бутстрэп-выборка", "{n} бутстрэп-выборки", "{n} бутстрэп-выборок"),

    # ---------------------------------------------------------------- notes: why there is no interval / value
    "not estimable at this n": "не поддаётся оценке при таком n",
    "undefined: no memes": "не определено: нет мемов",
    "undefined: both classes are needed among the memes scored by both sets":
        "не определено: среди мемов, оценённых обоими наборами, нужны оба класса",
    "not estimable at this n: fewer than 2 memes in a class":
        "не поддаётся оценке при таком n: в одном из классов меньше 2 мемов",
    "not estimable at this n: the paired DeLong variance is 0 (e.g. both sets rank the memes alike, "
    "or both separate the classes perfectly)":
        "не поддаётся оценке при таком n: парная дисперсия ДеЛонга равна 0 (например, оба набора "
        "одинаково упорядочивают мемы или оба идеально разделяют классы)",
    "not estimable at this n: the two AUROCs move together exactly":
        "не поддаётся оценке при таком n: два AUROC меняются строго согласованно",
    "undefined: no toxic memes and none said toxic":
        "не определено: нет токсичных мемов, и ни один мем не назван токсичным",
    "not estimable by BCa at this n: the resamples do not vary around the estimate":
        "BCa не даёт интервала при таком n: бутстрэп-выборки не разбросаны вокруг оценки",
    "not estimable by BCa at this n: the resamples do not vary around the estimate (e.g. perfect separation)":
        "BCa не даёт интервала при таком n: бутстрэп-выборки не разбросаны вокруг оценки "
        "(например, при идеальном разделении классов)",
    "not estimable by BCa at this n: the resamples do not vary around the estimate (e.g. identical answers)":
        "BCa не даёт интервала при таком n: бутстрэп-выборки не разбросаны вокруг оценки "
        "(например, при одинаковых ответах)",
    "not estimable at this n: all scores tied (one distinct score)":
        "не поддаётся оценке при таком n: все оценки токсичности совпадают (одно уникальное значение)",
    "undefined: no memes with a score": "не определено: нет мемов с оценкой токсичности",
    "undefined: no toxic memes with a score": "не определено: нет токсичных мемов с оценкой токсичности",
    "undefined: no non-toxic memes with a score": "не определено: нет нетоксичных мемов с оценкой токсичности",
    "undefined: both answer sets give one and the same answer to every meme (chance agreement 1)":
        "не определено: оба набора дают один и тот же ответ на каждый мем (случайное согласие равно 1)",

    # ---------------------------------------------------------------- the McNemar reading (metrics._reading)
    "No memes with a true label: there is nothing to compare.":
        "Нет мемов с истинной меткой: сравнивать нечего.",
    "{name_a} and {name_b} are right and wrong on exactly the same {n} memes, so McNemar's test has "
    "nothing to compare. This does not show they are equally good in general, only that these {n} memes "
    "do not separate them.": (
        "{name_a} и {name_b} правы и ошибаются ровно на одних и тех же мемах (всего {n} мем), поэтому "
        "тесту Мак-Немара нечего сравнивать. Это не показывает, что они в целом одинаково хороши, — "
        "лишь то, что эти мемы их не различают.",
        "{name_a} и {name_b} правы и ошибаются ровно на одних и тех же мемах (всего {n} мема), поэтому "
        "тесту Мак-Немара нечего сравнивать. Это не показывает, что они в целом одинаково хороши, — "
        "лишь то, что эти мемы их не различают.",
        "{name_a} и {name_b} правы и ошибаются ровно на одних и тех же мемах (всего {n} мемов), поэтому "
        "тесту Мак-Немара нечего сравнивать. Это не показывает, что они в целом одинаково хороши, — "
        "лишь то, что эти мемы их не различают."),
    "{only_a}, {only_b} (accuracy difference {diff:+.1%} {over_n}); exact McNemar p = {p:.3g}.":
        "{only_a}, {only_b} (разница долей верных ответов {diff:+.1%} {over_n}); точный тест "
        "Мак-Немара: p = {p:.3g}.",
    "{name_a} is right where {name_b} is wrong on {n} memes": (
        "{name_a} прав там, где {name_b} ошибается, на {n} меме",
        "{name_a} прав там, где {name_b} ошибается, на {n} мемах",
        "{name_a} прав там, где {name_b} ошибается, на {n} мемах"),
    "{name_b} right where {name_a} is wrong on {c}": "{name_b} прав там, где ошибается {name_a}, — на {c}",
    "over {n} memes": ("на выборке из {n} мема", "на выборке из {n} мемов", "на выборке из {n} мемов"),
    " A split this uneven would be unlikely (p < 0.05) if {name_a} and {name_b} were equally accurate on "
    "memes like these; on its own it says nothing about how large or how important the difference is.":
        " Столь неравное разбиение было бы маловероятным (p < 0.05), если бы {name_a} и {name_b} были "
        "одинаково точны на подобных мемах; само по себе оно ничего не говорит о том, насколько разница "
        "велика или важна.",
    "with only {n} memes where exactly one of them is right, no split at all could reach p < 0.05, so "
    "this comparison cannot detect any difference": (
        "при всего {n} меме, где прав ровно один из них, никакое разбиение не может дать p < 0.05, так что "
        "это сравнение не способно обнаружить никакой разницы",
        "при всего {n} мемах, где прав ровно один из них, никакое разбиение не может дать p < 0.05, так что "
        "это сравнение не способно обнаружить никакой разницы",
        "при всего {n} мемах, где прав ровно один из них, никакое разбиение не может дать p < 0.05, так что "
        "это сравнение не способно обнаружить никакой разницы"),
    "with {n} memes where exactly one of them is right": (
        "при {n} меме, где прав ровно один из них,",
        "при {n} мемах, где прав ровно один из них,",
        "при {n} мемах, где прав ровно один из них,"),
    "{with_d}, p < 0.05 would need a split of at least {k} to {rest}, an accuracy difference of "
    "{smallest:.1%} {over_n}; {size}":
        "{with_d} для p < 0.05 нужно разбиение не менее {k} к {rest}, то есть разница долей верных "
        "ответов {smallest:.1%} {over_n}; {size}",
    "only large differences are detectable at this sample size":
        "при таком размере выборки обнаружимы только большие различия",
    "a smaller true difference could go unnoticed": "меньшая истинная разница может остаться незамеченной",
    " p >= 0.05 does not show that {name_a} and {name_b} are equally good: {power}.":
        " p ≥ 0.05 не показывает, что {name_a} и {name_b} одинаково хороши: {power}.",

    # ---------------------------------------------------------------- multiple comparisons
    "Holm-Bonferroni (step-down) over the pairs shown ({n} pairs; McNemar and AUROC each a family)": (
        "поправка Холма — Бонферрони (пошаговая) по показанным парам ({n} пара; тест Мак-Немара и "
        "AUROC — каждый своё семейство)",
        "поправка Холма — Бонферрони (пошаговая) по показанным парам ({n} пары; тест Мак-Немара и "
        "AUROC — каждый своё семейство)",
        "поправка Холма — Бонферрони (пошаговая) по показанным парам ({n} пар; тест Мак-Немара и "
        "AUROC — каждый своё семейство)"),
    # ---------------------------------------------------------------- calibration (pipeline/calibration.py)
    "BCa bootstrap over memes": "бутстрэп BCa по мемам",
    "not estimable at this n: fewer than 10 memes with a score":
        "не оценивается при таком n: меньше 10 мемов с оценкой",
    "undefined: both classes are needed among the memes with a score":
        "не определено: среди мемов с оценкой нужны оба класса",
    "threshold chosen by cross-validation: for each fold the F1-best threshold on the other folds, F1 counted on "
    "the held-out fold only":
        "порог выбран кросс-валидацией: для каждой части — лучший по F1 порог на остальных частях, F1 считается "
        "только на отложенной части",
    "not estimable at this n: cross-validation needs at least 2 memes of each class":
        "не оценивается при таком n: кросс-валидации нужно хотя бы 2 мема каждого класса",
    "threshold chosen on the same memes it is evaluated on: its F1 is optimistic":
        "порог выбран на тех же мемах, на которых оценён: его F1 завышен",
    # ---------------------------------------------------------------- label issues (pipeline/label_issues.py)
    "too few memes for confident learning: ranked by self-confidence alone (candidates are the memes whose mean "
    "score favours the other label)":
        "слишком мало мемов для confident learning: ранжировано только по уверенности в метке (кандидаты — мемы, "
        "чья средняя оценка за другую метку)",
    "all labelled memes with a score have one label: the other label's confident threshold is undefined, 0.5 is "
    "used":
        "у всех размеченных мемов с оценкой одна метка: порог уверенности другой метки не определён, взят 0.5",
    "undefined: no labelled memes with a score": "не определено: нет размеченных мемов с оценкой",
}
