"""Russian for the first-run demo, the precompute progress banner and the missing-model notice
(dashboard/first_run.py, dashboard/progress.py)."""
MESSAGES: dict[str, object] = {
    # dashboard/progress.py
    "scanning the memes folder": "сканируется папка с мемами",
    "stage {stage} ({i} of {n})": "этап {stage} ({i} из {n})",
    "Precompute run {run} in progress: {where} · {done} of {total} done, {failed} failed, "
    "{cached} cached · started {started} UTC ({elapsed} ago)":
        "Идёт предрасчёт, запуск {run}: {where} · готово {done} из {total}, с ошибкой {failed}, "
        "из кэша {cached} · начат {started} UTC ({elapsed} назад)",
    "This page shows what is cached so far; it refreshes by itself when the run ends.":
        "Страница показывает то, что уже посчитано; когда запуск закончится, она обновится сама.",
    "Precompute run {run} stopped without finishing (its process is gone); what it wrote is "
    "kept, and the next precompute completes the rest.":
        "Предрасчёт (запуск {run}) остановился, не закончив (его процесса больше нет); всё записанное "
        "сохранено, а следующий предрасчёт досчитает остальное.",
    "Precompute run {run} ended ({status}) at {at} UTC: the page shows its results.":
        "Предрасчёт (запуск {run}) завершился ({status}) в {at} UTC: страница показывает его результаты.",
    # dashboard/first_run.py
    "on a machine that can reach huggingface.co:": "на машине, с которой доступен huggingface.co:",
    "copy the models/ folder into the project folder here, then:": "скопируйте папку models/ сюда, в папку проекта, затем:",
    "make the model folder exist (or point at another one), then:":
        "проверьте, что папка модели существует (или укажите другую), затем:",
    "start the VLM server (see docs/served_vlm.md) and check --vlm-url, then:":
        "запустите сервер VLM (см. docs/served_vlm.md) и проверьте --vlm-url, затем:",
    "Not computed because a model could not be loaded: {names}. The pages show what the "
    "other stages stored.":
        "Не посчитано, потому что не удалось загрузить модель: {names}. Страницы показывают то, "
        "что сохранили остальные этапы.",
    "{stage}, run {run}, the reason as recorded:": "{stage}, запуск {run}, причина (как записана, по-английски):",
    "The fix:": "Как исправить:",
    "This is the demo: {n} synthetic memes with Russian captions drawn by VLMemes, not research data. "
    "To study your own memes, put them into {toxic} (toxic) and {neutral} (neutral) and run "
    "`scripts/main.sh` again.":
        "Это демо: {n} синтетических мемов с русскими подписями, нарисованных VLMemes, а не данные "
        "исследования. Чтобы изучить свои мемы, положите их в {toxic} (токсичные) и {neutral} "
        "(нейтральные) и снова запустите `scripts/main.sh`.",
}
