"""The one-file HTML report and the Parquet export, on a cache built by the real pipeline (smoke_db).

A copy of the smoke cache gets hostile model/OCR text, a retired meme, an unlabelled meme and a
failure message with a local path, written directly with duckdb; the report of that copy is parsed
(stdlib html.parser) and opened in headless Chromium with every network request intercepted.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from dashboard_helpers import holm_by_hand, sql

from pipeline import export
from pipeline.cli import main

HOSTILE_ANSWER = ("Класс: токсичный\nОбъяснение: <script>alert(1)</script> <img src=x onerror=alert(1)> "
                  "[x](http://evil.example) ![x](http://evil.example/a.png) </div></article><b>bold</b>")
HOSTILE_OCR = "<img src=x onerror=alert(1)>\n" + "Ж" * 20_000
LOCAL_FAILURE_PATH = "/home/alice/secret-memes/Негативно/leak-me.jpg"
SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# ============================================================================ a small DOM from html.parser
class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, id_: str) -> Node | None:
        return next((n for n in self.iter() if n.attrs.get("id") == id_), None)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def ancestors(self):
        n = self.parent
        while n is not None:
            yield n
            n = n.parent


class DomBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.texts: list[tuple[str, Node]] = []      # every text node with its element

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)
        self.texts.append((data, self.cur))


def parse(html: str) -> DomBuilder:
    b = DomBuilder()
    b.feed(html)
    b.close()
    return b


# ============================================================================ fixtures
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hostile_db(smoke_db, tmp_path_factory) -> dict:
    """A copy of the smoke cache with hostile text, a retired and an unlabelled meme, and a leaky failure."""
    db = tmp_path_factory.mktemp("export") / "hostile.duckdb"
    shutil.copy(smoke_db, db)
    con = duckdb.connect(str(db))
    try:
        vlm = con.execute("SELECT variant_id FROM variants WHERE stage = 'vlm' ORDER BY model_id, name").fetchall()
        assert vlm, "the smoke cache has no VLM prediction set"
        vid = vlm[0][0]
        non_toxic = [m for (m,) in con.execute(
            "SELECT m.meme_id FROM memes m JOIN predictions p USING (meme_id) WHERE p.variant_id = ? "
            "AND m.label = 'non_toxic' AND NOT m.retired ORDER BY m.meme_id", [vid]).fetchall()]
        toxic = [m for (m,) in con.execute(
            "SELECT meme_id FROM memes WHERE label = 'toxic' AND NOT retired ORDER BY meme_id").fetchall()]
        hostile, retired, unlabelled = non_toxic[0], non_toxic[-1], toxic[-1]
        # the hostile answer is a confident false positive: first card of this set's FP gallery
        con.execute("UPDATE predictions SET label = 'toxic', score = 0.9999, raw_answer = ?, explanation = ? "
                    "WHERE meme_id = ? AND variant_id = ?", [HOSTILE_ANSWER, HOSTILE_ANSWER, hostile, vid])
        assert con.execute("UPDATE ocr SET text = ? WHERE meme_id = ?", [HOSTILE_OCR, hostile]).fetchall()[0][0] >= 1
        con.execute("UPDATE memes SET retired = TRUE WHERE meme_id = ?", [retired])
        con.execute("UPDATE memes SET label = NULL, label_conflict = TRUE WHERE meme_id = ?", [unlabelled])
        con.execute("INSERT INTO failures (run_id, stage, meme_id, path, error_type, message, created_at) "
                    "VALUES (1, 'scan', NULL, ?, 'BadImage', ?, now())",
                    [LOCAL_FAILURE_PATH, f"cannot read {LOCAL_FAILURE_PATH}: truncated"])
    finally:
        con.close()
    return dict(db=db, vlm=vid, hostile=hostile, retired=retired, unlabelled=unlabelled)


@pytest.fixture(scope="module")
def hostile_report(hostile_db) -> dict:
    out = hostile_db["db"].with_name("report.html")
    before = _sha(hostile_db["db"])
    export.export_html(hostile_db["db"], out)
    assert _sha(hostile_db["db"]) == before, "the export changed the database file"
    html = out.read_text(encoding="utf-8")
    return dict(hostile_db, out=out, html=html, dom=parse(html))


def _prediction_sets(db: Path) -> list[tuple[str, str, str, bool]]:
    return sql(db, "SELECT variant_id, model_id, name, is_smoke FROM variants WHERE stage IN ('clip', 'vlm') "
                  "ORDER BY list_position(['ocr', 'clip', 'vlm', 'cam'], stage), model_id, name")


ELIGIBLE = "m.label IS NOT NULL AND NOT m.retired"


# ============================================================================ structure and numbers
def test_report_has_every_section_and_the_numbers_of_the_cache(hostile_report):
    db, dom = hostile_report["db"], hostile_report["dom"].root
    for sid in ("summary", "sets", "agreement", "errors", "disagreements", "about", "content-warning",
                "smoke-banner", "exclusions", "metrics-chart"):
        assert dom.by_id(sid) is not None, sid
    n_eligible, n_retired, n_unlabelled = sql(
        db, f"SELECT count(*) FILTER ({ELIGIBLE.replace('m.', '')}), count(*) FILTER (retired), "
            "count(*) FILTER (label IS NULL AND NOT retired) FROM memes")[0]
    assert (n_retired, n_unlabelled) == (1, 1)
    assert dom.by_id("n-eligible").text() == str(n_eligible)
    assert dom.by_id("n-retired").text() == "1" and dom.by_id("n-unlabelled").text() == "1"
    assert "are left out" in dom.by_id("exclusions").text()

    sets = _prediction_sets(db)
    assert len(sets) >= 2
    for vid, _model, _name, _smoke in sets:
        section = dom.by_id(f"set-{vid}")
        assert section is not None and dom.by_id(f"errors-{vid}") is not None
        (n, right, tp, fp, fn, tn, u_tox, u_non), = sql(db, f"""
            SELECT count(*), count(*) FILTER (p.label = m.label),
                   count(*) FILTER (m.label = 'toxic' AND p.label = 'toxic'), count(*) FILTER (m.label = 'non_toxic' AND p.label = 'toxic'),
                   count(*) FILTER (m.label = 'toxic' AND p.label = 'non_toxic'), count(*) FILTER (m.label = 'non_toxic' AND p.label = 'non_toxic'),
                   count(*) FILTER (m.label = 'toxic' AND p.label IS NULL), count(*) FILTER (m.label = 'non_toxic' AND p.label IS NULL)
            FROM predictions p JOIN memes m USING (meme_id) WHERE p.variant_id = ? AND {ELIGIBLE}""", [vid])
        assert section.attrs["data-n"] == str(n) and n == n_eligible
        acc_row = section.find_all("tr", data_metric="accuracy")[0]
        assert acc_row.find_all("td")[0].text() == f"{right / n:.3f}"
        assert re.fullmatch(r"\[\d\.\d{3}, \d\.\d{3}\]", acc_row.find_all("td")[1].text())
        cells = {td.attrs["data-cell"]: int(td.text()) for td in section.find_all("td") if "data-cell" in td.attrs}
        assert cells == dict(tp=tp, fp=fp, fn=fn, tn=tn, unparsed_toxic=u_tox, unparsed_non_toxic=u_non)
        assert section.find_all("p", cls="smoke"), "no smoke banner next to the metrics of a smoke set"

    pairs = dom.find_all("section", cls="pair")
    n_pairs = len(list(itertools.combinations(sets, 2)))
    assert len(pairs) == min(n_pairs, export.MAX_PAIRS)
    for p in pairs:
        assert p.find_all("p", cls="smoke") and p.find_all("td", data_p="mcnemar")
        assert "McNemar p" in p.find_all("p", cls="reading")[0].text() or "nothing to compare" in p.text()
        table = {td.attrs["data-cell"]: int(td.text()) for td in p.find_all("td") if "data-cell" in td.attrs}
        assert sum(table.values()) == n_eligible
    assert len(dom.find_all("section", cls="disagree")) == len(pairs)
    if n_pairs > export.MAX_PAIRS:
        assert f"first {export.MAX_PAIRS} of {n_pairs} pairs" in dom.by_id("pairs-note").text()


def _pval(p: float) -> str:
    return f"{p:.3g}" if p >= 0.001 else "< 0.001"


def test_pairs_show_paired_differences_and_holm_adjusted_p_values(hostile_report):
    """Per shown pair: accuracy A - B and AUROC A - B (scikit-learn on SQL rows), the exact McNemar p and
    its Holm adjustment over the shown pairs, computed here independently; the adjustment is named."""
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score
    db, dom = hostile_report["db"], hostile_report["dom"].root
    pairs = dom.find_all("section", cls="pair")
    assert len(pairs) > 1
    raw, shown_holm = [], []
    for p in pairs:
        a, b = p.attrs["id"].removeprefix("pair-").split("-")
        rows = sql(db, f"""SELECT m.label, pa.label, pb.label, pa.score, pb.score
            FROM predictions pa JOIN predictions pb USING (meme_id) JOIN memes m USING (meme_id)
            WHERE pa.variant_id = ? AND pb.variant_id = ? AND {ELIGIBLE}""", [a, b])
        only_a = sum(t == x and t != y for t, x, y, _, _ in rows)
        only_b = sum(t == y and t != x for t, x, y, _, _ in rows)
        acc = p.find_all("tr", data_test="accuracy")[0]
        assert acc.find_all("td")[0].text() == f"{(only_a - only_b) / len(rows):.3f}"
        assert re.fullmatch(r"\[-?\d\.\d{3}, -?\d\.\d{3}\]", acc.find_all("td")[1].text())
        p_raw = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else None
        assert acc.find_all("td", data_p="mcnemar")[0].text() == ("–" if p_raw is None else _pval(p_raw))
        raw.append(p_raw)
        shown_holm.append(acc.find_all("td", data_p="mcnemar-holm")[0].text())
        y = [t == "toxic" for t, *_ in rows]
        auc = roc_auc_score(y, [r[3] for r in rows]) - roc_auc_score(y, [r[4] for r in rows])
        assert p.find_all("tr", data_test="auroc")[0].find_all("td")[0].text() == f"{auc:.3f}".replace("-0.000", "0.000")
        assert "Holm-Bonferroni" in p.find_all("p", data_adjustment="holm")[0].text()
    tested = [i for i, x in enumerate(raw) if x is not None]
    adjusted = dict(zip(tested, holm_by_hand([raw[i] for i in tested])))
    assert shown_holm == [_pval(adjusted[i]) if i in adjusted else "–" for i in range(len(raw))]


def test_low_label_mass_is_counted_and_flagged(hostile_report):
    """Random-weight Qwen spreads its probability over the whole vocabulary: its label mass is tiny, so
    every VLM score is flagged; the count equals one made here from the stored log-probabilities."""
    import math
    db, dom = hostile_report["db"], hostile_report["dom"].root
    for vid, in sql(db, "SELECT variant_id FROM variants WHERE stage = 'vlm'"):
        logits = [json.loads(x) for x, in sql(db, f"""SELECT p.logits FROM predictions p JOIN memes m USING (meme_id)
            WHERE p.variant_id = ? AND {ELIGIBLE}""", [vid])]
        masses = [math.exp(d["toxic"]) + math.exp(d["non_toxic"]) for d in logits]
        note = dom.by_id(f"set-{vid}").find_all("p", data_low_mass_count=str(sum(x < 0.5 for x in masses)))
        assert note and f"of {len(masses)} scores" in note[0].text()
    for vid, in sql(db, "SELECT variant_id FROM variants WHERE stage = 'clip'"):
        assert not [n for n in dom.by_id(f"set-{vid}").iter() if "data-low-mass-count" in n.attrs]
    flags = dom.find_all("p", data_low_mass="flag")
    assert flags and all("not really choosing" in f.text() for f in flags)


def test_error_gallery_is_the_most_confident_errors_from_sql(hostile_report):
    db, dom, vid = hostile_report["db"], hostile_report["dom"].root, hostile_report["vlm"]
    gallery = [g for g in dom.find_all("div", cls="gallery") if g.attrs.get("data-set") == vid
               and g.attrs["data-kind"] == "fp"][0]
    shown = [c.attrs["data-meme-id"] for c in gallery.find_all("article", cls="card")]
    expected = [m for (m,) in sql(db, f"SELECT p.meme_id FROM predictions p JOIN memes m USING (meme_id) "
                                     f"WHERE p.variant_id = ? AND {ELIGIBLE} AND m.label = 'non_toxic' AND "
                                     f"p.label = 'toxic' ORDER BY p.score DESC NULLS LAST", [vid])]
    assert shown[0] == hostile_report["hostile"]
    assert int(gallery.attrs["data-total"]) == len(expected)
    assert set(shown) == set(expected[:export.GALLERY_LIMIT])
    every_card = {c.attrs["data-meme-id"] for c in dom.find_all("article", cls="card")}
    assert hostile_report["retired"] not in every_card and hostile_report["unlabelled"] not in every_card


def test_every_image_is_embedded_as_a_data_uri_matching_the_cache(hostile_report):
    db, dom = hostile_report["db"], hostile_report["dom"].root
    cams = [v for (v,) in sql(db, "SELECT variant_id FROM variants WHERE stage = 'cam'")]
    assert cams, "the smoke cache has no CAM heatmaps"
    cards = dom.find_all("article", cls="card")
    assert cards
    expected = {m: (n, label) for m, n, label in sql(db, """
        SELECT meme_id, (thumbnail IS NOT NULL)::INT + (SELECT count(*) FROM heatmaps h WHERE h.meme_id = m.meme_id
               AND overlay IS NOT NULL), label FROM memes m""")}
    total = 0
    for card in cards:
        meme = card.attrs["data-meme-id"]
        n_expected, label = expected[meme]
        imgs = card.find_all("img")
        assert len(imgs) == n_expected, meme
        for img in imgs:
            assert ("reveal" in {c for a in img.ancestors() for c in a.classes}) == (label == "toxic")
        total += len(imgs)
    all_imgs = dom.find_all("img")
    assert len(all_imgs) == total > 0
    assert all(i.attrs["src"].startswith("data:image/jpeg;base64,") for i in all_imgs)
    assert hostile_report["html"].count("data:image/") == total


# ============================================================================ safety
def test_no_external_reference_and_no_local_path(hostile_report, smoke_db, synthetic_memes, tiny_models):
    html, b = hostile_report["html"], hostile_report["dom"]
    for node in b.root.iter():
        assert node.tag not in {"script", "link", "iframe", "object", "embed", "base", "form", "a"} or (
            node.tag == "a" and node.attrs.get("href", "").startswith("#")), node.tag
        for k, v in node.attrs.items():
            assert not k.startswith("on"), (node.tag, k)
            if node.tag == "svg" and k == "xmlns":
                assert v == "http://www.w3.org/2000/svg"
            elif node.tag == "meta" and node.attrs.get("http-equiv") == "Content-Security-Policy" and k == "content":
                # no script may run and nothing may load but data: images, even if markup were injected
                assert v == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
            elif node.tag == "img" and k == "src":
                assert re.fullmatch(r"data:image/jpeg;base64,[A-Za-z0-9+/]+=*", v), v[:80]
            else:
                assert not re.search(r"https?:|//|url\(|data:", v or "", re.I), (node.tag, k, (v or "")[:80])
    # every "http" left in the file is hostile model/OCR text shown as plain text, or the SVG namespace
    untrusted = "".join(t for t, el in b.texts if "untrusted" in el.classes)
    for scheme in ("http://", "https://"):
        assert html.replace(SVG_NS, "").count(scheme) == untrusted.count(scheme)
    assert "url(" not in html.split("</style>")[0] and "@import" not in html

    leaks = {"/tmp/", "/home/", "/root/", "/work/", str(Path.home()), str(smoke_db.parent), str(synthetic_memes),
             str(tiny_models["clip"].parent), "alice", "secret-memes"}
    assert not [s for s in leaks if s in html]
    assert "leak-me.jpg" in html                       # the failure is still shown, by its file name
    assert tiny_models["clip"].name in html             # a local model folder appears by its last component


def test_hostile_text_is_escaped_plain_text(hostile_report):
    html, b = hostile_report["html"], hostile_report["dom"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not [n for n in b.root.iter() if n.tag in ("script", "b") and "bold" in n.text()]
    assert all(n.attrs.get("src") != "x" for n in b.root.find_all("img"))
    texts = [t for t, el in b.texts if "untrusted" in el.classes]
    assert any("<script>alert(1)</script>" in t and "![x](http://evil.example/a.png)" in t for t in texts)
    long_text = [t for t in texts if "ЖЖЖ" in t]
    assert long_text and all(len(t) <= export.TEXT_LIMIT for t in long_text)
    assert "more characters not shown" in html


def test_clean_report_is_strictly_offline_and_read_only(smoke_db, tmp_path, capsys):
    before = _sha(smoke_db)
    out = tmp_path / "clean.html"
    assert main(["export", "--db", str(smoke_db), "--out", str(out)]) == 0
    assert _sha(smoke_db) == before and not Path(str(smoke_db) + ".wal").exists()
    html = out.read_text(encoding="utf-8")
    assert SVG_NS in html                                  # the charts are inline SVG
    rest = html.replace(SVG_NS, "")
    assert "http://" not in rest and "https://" not in rest
    assert export.SMOKE_BANNER in html
    assert f"wrote {out}" in capsys.readouterr().out


# ============================================================================ in a real browser
def test_report_in_headless_chromium(hostile_report):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no /usr/bin/chromium")
    url = hostile_report["out"].resolve().as_uri()
    n_sets = len(hostile_report["dom"].root.find_all("section", cls="pred-set"))
    requests, console_errors, dialogs = [], [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def route(r):
                requests.append(r.request.url)
                r.continue_() if r.request.url == url else r.abort()
            page.route("**/*", route)
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url, wait_until="load")

            assert not console_errors and not dialogs
            assert {u for u in requests if not u.startswith("data:")} == {url}
            # charts: the metrics chart and one ROC per set, each with drawn marks
            boxes = page.eval_on_selector_all(
                "svg.marks", "els => els.map(s => [s.getBoundingClientRect().width, s.querySelectorAll("
                             "'.mark-line path, .mark-symbol path, .mark-rule line').length])")
            assert len(boxes) >= 1 + n_sets and all(w > 50 and marks > 0 for w, marks in boxes)
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            # blur: a toxic image is blurred until clicked, and again after a second click
            img = page.locator("label.reveal.thumb img").first
            img.scroll_into_view_if_needed()
            style = "e => getComputedStyle(e).filter"
            assert "blur" in img.evaluate(style)
            img.click()
            assert img.evaluate(style) == "none"
            img.click()
            assert "blur" in img.evaluate(style)
            page.locator("label[for=reveal-all]").click()
            assert set(page.eval_on_selector_all("label.reveal img", f"els => els.map({style})")) == {"none"}
            # the 20,000-character line wraps instead of widening the page
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert not dialogs and not console_errors
        finally:
            browser.close()


def test_smoke_banner_follows_the_shown_sets(smoke_db, copy_db, tmp_path):
    db = copy_db(smoke_db, "flags.duckdb")
    sets = _prediction_sets(db)
    smoke_vid = sets[0][0]
    con = duckdb.connect(str(db))
    con.execute("UPDATE variants SET is_smoke = (variant_id = ?)", [smoke_vid])
    con.close()
    dom = parse(export.export_html(db, tmp_path / "mixed.html", images=False).read_text(encoding="utf-8")).root
    assert dom.by_id("smoke-banner") is not None
    banners = {s.attrs["data-variant-id"]: bool(s.find_all("p", cls="smoke")) for s in dom.find_all("section", cls="pred-set")}
    assert banners == {vid: vid == smoke_vid for vid, *_ in sets}

    con = duckdb.connect(str(db))
    con.execute("UPDATE variants SET is_smoke = FALSE")
    con.close()
    html = export.export_html(db, tmp_path / "real.html", images=False).read_text(encoding="utf-8")
    assert export.SMOKE_BANNER not in html and 'class="smoke' not in html


# ============================================================================ options
def test_no_images_leaves_every_image_out(smoke_db, tmp_path):
    out = export.export_html(smoke_db, tmp_path / "noimg.html", images=False)
    html = out.read_text(encoding="utf-8")
    dom = parse(html).root
    assert not dom.find_all("img") and "data:image" not in html
    assert dom.find_all("article", cls="card") and dom.find_all("section", cls="pred-set")
    assert "Images left out" in html


def test_models_filter_keeps_matching_prediction_sets(smoke_db, tmp_path, capsys):
    sets = _prediction_sets(smoke_db)
    vlm_names = [name for vid, model, name, _ in sets if sql(smoke_db, "SELECT stage FROM variants WHERE variant_id = ?", [vid])[0][0] == "vlm"]
    needle = vlm_names[0]
    kept = {vid for vid, model, name, _ in sets if needle in model or needle in name}
    out = export.export_html(smoke_db, tmp_path / "f.html", models=[needle])
    dom = parse(out.read_text(encoding="utf-8")).root
    shown = {s.attrs["data-variant-id"] for s in dom.find_all("section", cls="pred-set")}
    assert shown == kept and len(shown) < len(sets)
    assert len(dom.find_all("section", cls="pair")) == min(len(kept) * (len(kept) - 1) // 2, export.MAX_PAIRS)

    with pytest.raises(export.ExportError, match="matches no prediction set"):
        export.export_html(smoke_db, tmp_path / "none.html", models=["no-such-model"])
    assert main(["export", "--db", str(smoke_db), "--out", str(tmp_path / "n.html"), "--models", "no-such-model"]) == 2
    assert "matches no prediction set" in capsys.readouterr().err
    assert not (tmp_path / "none.html").exists() and not (tmp_path / "n.html").exists()


def test_images_are_recompressed_to_fit_the_size_budget(smoke_db, tmp_path, monkeypatch, capsys):
    full = export.export_html(smoke_db, tmp_path / "full.html").stat().st_size
    budget = int(full * 0.7)
    monkeypatch.setattr(export, "SIZE_BUDGET", budget)
    small = export.export_html(smoke_db, tmp_path / "small.html")
    assert small.stat().st_size <= budget
    assert "re-encoded" in capsys.readouterr().out
    dom = parse(small.read_text(encoding="utf-8")).root
    assert len(dom.find_all("img")) == len(parse((tmp_path / "full.html").read_text(encoding="utf-8")).root.find_all("img"))


def test_parquet_export_round_trips_every_table(smoke_db, tmp_path, capsys):
    before = _sha(smoke_db)
    out = tmp_path / "pq"
    assert main(["export", "--db", str(smoke_db), "--parquet", str(out)]) == 0
    assert _sha(smoke_db) == before
    tables = [t for (t,) in sql(smoke_db, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]
    assert {"memes", "predictions", "heatmaps", "ocr", "variants", "runs", "failures", "meme_paths"} <= set(tables)
    assert sorted(p.stem for p in out.glob("*.parquet")) == tables
    printed = capsys.readouterr().out
    con = duckdb.connect(str(smoke_db), read_only=True)
    try:
        for t in tables:
            path = str(out / f"{t}.parquet")
            assert con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == \
                   con.execute(f"SELECT count(*) FROM {t}").fetchall(), t
            assert f"{t}.parquet" in printed
        blobs = "SELECT meme_id, md5(thumbnail) FROM {} ORDER BY 1"
        assert con.execute(blobs.format(f"read_parquet('{out / 'memes.parquet'}')")).fetchall() == \
               con.execute(blobs.format("memes")).fetchall()
        overlays = "SELECT meme_id, variant_id, md5(overlay), md5(cam) FROM {} ORDER BY 1, 2"
        assert con.execute(overlays.format(f"read_parquet('{out / 'heatmaps.parquet'}')")).fetchall() == \
               con.execute(overlays.format("heatmaps")).fetchall()
    finally:
        con.close()


def test_empty_or_missing_cache(empty_db, tmp_path, capsys):
    html = export.export_html(empty_db, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "No CLIP or VLM predictions in the cache" in html and "<img" not in html
    assert export.export_parquet(empty_db, tmp_path / "pq")["memes"] == 0
    assert main(["export", "--db", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "m.html")]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "missing.duckdb").exists() and not (tmp_path / "m.html").exists()


# ============================================================================ helpers
@pytest.mark.parametrize("model_id, shown", [
    ("openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14"),
    ("/home/alice/models/tiny-random-clip", "tiny-random-clip"),
    ("/home/alice/models/tiny-random-clip/", "tiny-random-clip"),
    ("./models/qwen", "qwen"),
    ("~/models/qwen", "qwen"),
    ("C:\\Users\\alice\\qwen", "qwen"),
])
def test_public_name_hides_local_folders(model_id, shown):
    assert export.public_name(model_id) == shown


def test_scrub_paths_keeps_only_the_last_component():
    assert export.scrub_paths("cannot read /home/a/b/x.jpg: bad; see ~/logs/run.txt") == "cannot read x.jpg: bad; see run.txt"
    assert export.scrub_paths("model openai/clip-vit-large-patch14 ok") == "model openai/clip-vit-large-patch14 ok"

