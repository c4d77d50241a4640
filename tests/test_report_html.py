"""The HTML leaderboard page: its contents (plain checks) and how it renders in headless Chromium.

The browser tests drive Debian's ``chromium`` through Playwright (the ``dev`` extra) and never
download a browser of their own; they are skipped, naming the fix, where either is missing.
"""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_factory import CLASSES, REAL, SYNTHETIC, fake_health, fake_record

from bench.report.figures import Figure
from bench.report.html import render_html
from bench.report.published import published_frame
from bench.report.tables import leaderboard_frame

CHROMIUM = Path("/usr/bin/chromium")
# Chromium on a closed network stalls on its background services: switch them off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
METHODS = {"jepa": 0.84, "mae": 0.82, "simclr": 0.80, "random": 0.70}
TASKS = ("superdiagnostic", "form", "rhythm", "all_statements")
PROTOCOLS = ("linear", "finetune")
SEEDS = (0, 1)
TUNED_RUN = "jepa-xs-tuned01234"
WINNER = ("simclr", "rhythm", "linear")  # the one column where jepa is not the best
# (measured, published) rows per (protocol, label fraction). Published: linear has ECG-JEPA,
# ST-MEM, SimCLR and BYOL; finetune the 9 rows of published.py with one of our four tasks.
EXPECTED_ROWS = {("linear", "1"): (5, 4), ("finetune", "1"): (4, 9), ("linear", "0.1"): (1, 0)}
# Pre-training health per method: jepa stopped while its loss was still falling (a budget
# warning), mae's features collapsed dimensionally against init (16 signal directions -> 4),
# simclr's loss turned and its rank grew, the
# random reference is at init; the tuned jepa run's records predate health (not recorded).
HEALTH = {
    "jepa": {"loss": "falling", "rank": 20, "init_rank": 16},
    "mae": {"loss": "plateau", "rank": 4, "init_rank": 16},
    "simclr": {"loss": "turned", "rank": 20, "init_rank": 16},
    "random": {"loss": None, "rank": 16, "init_rank": None},
}
WARNED = {"jepa": "budget", "mae": "dimensional"}


def auroc(method: str, task: str, protocol: str, seed: int) -> float:
    if (method, task, protocol) == WINNER:
        return 0.95 + 0.002 * seed
    shift = 0.01 * TASKS.index(task) + (0.03 if protocol == "finetune" else 0.0)
    return METHODS[method] + shift + 0.002 * seed


def make_records(dataset: str) -> list[dict]:
    """4 methods x 4 tasks x 2 protocols x 2 seeds, a second jepa run and a low-label table."""
    health = {m: fake_health(**h) for m, h in HEALTH.items()}
    records = [
        fake_record(m, t, p, auroc(m, t, p, s), seed=s, dataset=dataset, health=health[m])
        for m in METHODS
        for t in TASKS
        for p in PROTOCOLS
        for s in SEEDS
    ]
    # a second configuration of jepa on the linear probe: its rows must name the run
    records += [
        fake_record(
            "jepa", t, "linear", auroc("jepa", t, "linear", s) - 0.005, seed=s, dataset=dataset,
            run_id=TUNED_RUN, eval_hash="fedcba9876543210",
        )
        for t in TASKS
        for s in SEEDS
    ]  # fmt: skip
    records += [
        fake_record("jepa", t, "linear", 0.75, label_fraction=0.1, dataset=dataset,
                    health=health["jepa"])
        for t in TASKS
    ]  # fmt: skip
    for r in records:
        if r["task"] == "rhythm":  # no STACH in the test fold: excluded everywhere
            r["metrics"]["test"]["per_label_auroc"]["STACH"] = None
            r["metrics"]["test"]["excluded_labels"] = [{"label": "STACH", "reason": "no positive"}]
    return records


def draw_figures(directory: Path) -> list[Figure]:
    """Two small real PNGs drawn with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.bar(list(METHODS), list(METHODS.values()), color=["#1c5fa8", "#e8590c", "#2b8a3e", "#888"])
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("macro AUROC")
    fig.tight_layout()
    fig.savefig(directory / "bars.png")
    plt.close(fig)
    figures.append(
        Figure(
            "bars",
            "Macro AUROC by method",
            "Linear probe, superdiagnostic.",
            directory / "bars.png",
        )
    )
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    for i in range(len(METHODS)):
        ax.plot([0.01, 0.1, 1.0], [0.6 + 0.05 * i, 0.7 + 0.04 * i, 0.8 + 0.03 * i], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("label fraction")
    fig.tight_layout()
    fig.savefig(directory / "fractions.png")
    plt.close(fig)
    figures.append(
        Figure(
            "fractions", "Label efficiency", "Test macro AUROC against the fraction of labels.",
            directory / "fractions.png",
        )
    )  # fmt: skip
    return figures


def render(records: list[dict], figures: list[Figure]) -> str:
    return render_html(leaderboard_frame(records), records, figures, published_frame())


# --- a small DOM built with the standard library, for the tests that need no browser ---------


class Node:
    """One element: tag, attributes (unescaped), children (nodes and text)."""

    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str, cls: str | None = None, **attrs) -> list[Node]:
        """Descendants by tag, class and attributes (``data_task`` means ``data-task``)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            n
            for n in self.iter()
            if n is not self
            and n.tag == tag
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k) == v for k, v in wanted.items())
        ]

    def find(self, tag: str, cls: str | None = None, **attrs) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}> found, expected 1"
        return found[0]


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "input", "link", "col", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.root = self.current = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def board(dom: Node, protocol: str, fraction: str) -> Node:
    return dom.find("table", "leaderboard", data_protocol=protocol, data_label_fraction=fraction)


def column(table: Node, task: str) -> int:
    """Index of a task's column among a row's cells (the method header is cell 0)."""
    heads = table.find("thead").find_all("th")
    return [h.text() for h in heads].index(task)


def cells(row: Node) -> list[Node]:
    return [n for n in row.children if isinstance(n, Node) and n.tag in ("th", "td")]


# --- the page, without a browser ------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[str, list[dict], list[Figure]]:
    records = make_records(REAL)
    records[0]["environment"]["git"]["dirty"] = True
    figures = draw_figures(tmp_path_factory.mktemp("figures"))
    return render(records, figures), records, figures


def test_tables_have_measured_then_published_rows(real):
    page, _, _ = real
    dom = parse(page)
    assert len(dom.find_all("table", "leaderboard")) == len(EXPECTED_ROWS)
    for (protocol, fraction), (measured, published) in EXPECTED_ROWS.items():
        table = board(dom, protocol, fraction)
        head = [c.text() for c in cells(table.find("thead").find("tr"))]
        assert head == ["method", *TASKS, "pre-training health"]
        assert len(table.find_all("tr", "measured")) == measured
        rows = table.find_all("tr", "published")
        assert len(rows) == published
        for row in rows:  # badge, source in the title, a footnote that exists
            assert row.find("span", "badge").text() == "published"
            assert row.attrs["title"].startswith("published, not re-measured: ")
            note = row.find("a").attrs["href"].lstrip("#")
            assert dom.find("li", id=note).text() in row.attrs["title"]
    ecg_jepa = [
        r for r in board(dom, "linear", "1").find_all("tr", "published") if "ECG-JEPA" in r.text()
    ]
    assert cells(ecg_jepa[0])[column(board(dom, "linear", "1"), "rhythm")].text() == "0.969"


def test_best_value_is_the_best_measured_one(real):
    page, _, _ = real
    dom = parse(page)
    for protocol, fraction in EXPECTED_ROWS:
        table = board(dom, protocol, fraction)
        for task in TASKS:
            i = column(table, task)
            best = [r for r in table.find_all("tr", "measured") if "best" in cells(r)[i].classes]
            assert len(best) == 1, (protocol, fraction, task)
            expected = (
                "simclr" if (protocol, fraction, task) == ("linear", "1", "rhythm") else "jepa"
            )
            assert best[0].attrs["data-method"] == expected
            assert best[0].attrs["data-run-id"] != TUNED_RUN
            assert cells(best[0])[i].find_all("strong")
    # the published 0.969 beats every measured rhythm value yet is never marked
    assert not any("best" in c.classes for r in dom.find_all("tr", "published") for c in cells(r))


def test_rows_name_the_run_only_when_a_method_has_several(real):
    page, records, _ = real
    dom = parse(page)
    linear = board(dom, "linear", "1")
    jepa = [r for r in linear.find_all("tr", "measured") if r.attrs["data-method"] == "jepa"]
    assert sorted(r.find("code", "run-id").text() for r in jepa) == sorted(
        {r["run_id"] for r in records if r["method"] == "jepa"}
    )
    for row in board(dom, "finetune", "1").find_all("tr", "measured"):
        assert not row.find_all("code", "run-id")
    random = [r for r in linear.find_all("tr", "measured") if r.attrs["data-method"] == "random"]
    assert random[0].find("span", "reference").text() == "reference"


def test_real_page_has_no_banner_synthetic_page_has_no_published_rows():
    real_dom = parse(render(make_records(REAL), []))
    assert not real_dom.find_all("div", id="synthetic-warning")
    assert not real_dom.find_all("p", id="published-omitted")
    dom = parse(render(make_records(SYNTHETIC), []))
    banner = dom.find("div", "banner", id="synthetic-warning")
    assert "these numbers say nothing about real ECG" in banner.text()
    assert not dom.find_all("tr", "published")
    assert "meaningless" in dom.find("p", id="published-omitted").text()
    assert len(dom.find("table", "leaderboard", data_protocol="finetune").find_all("tr")) == 5


def test_everything_is_escaped(tmp_path):
    evil = "<script>alert('x')</script>"
    records = make_records(REAL)
    for r in records:
        if r["method"] == "mae":
            r["method"] = evil
            r["run_id"] = 'mae" onmouseover="alert(1)'
        r["dataset"]["name"] = "PTB-XL <b>1.0.3</b> & more"
    (tmp_path / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    figure = Figure("x", "<img src=x onerror=alert(2)>", "a & b < c", tmp_path / "f.png")
    page = render(records, [figure])
    dom = parse(page)
    assert len(dom.find_all("script")) == 1  # only the page's own sorting script
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert not any("onmouseover" in n.attrs or "onerror" in n.attrs for n in dom.iter())
    # the text round-trips: the reader sees exactly the names in the records
    row = [r for r in dom.find_all("tr", "measured") if r.attrs["data-method"] == evil]
    assert len(row) == 2 and evil in row[0].text()
    assert dom.find("title").text() == "Leaderboard: PTB-XL <b>1.0.3</b> & more"
    assert not dom.find_all("b")
    assert dom.find("figure", "plot").find("h3").text() == "<img src=x onerror=alert(2)>"
    assert dom.find("figure", "plot").find("figcaption").text() == "a & b < c"


def test_page_is_self_contained(real):
    page, _, figures = real
    assert "http://" not in page.lower() and "https://" not in page.lower()
    assert "url(" not in page and "@import" not in page
    dom = parse(page)
    assert not dom.find_all("link")
    assert all("src" not in s.attrs for s in dom.find_all("script"))
    images = dom.find_all("img")
    assert len(images) == len(figures)
    for img, fig in zip(images, figures, strict=True):
        prefix = "data:image/png;base64,"
        assert img.attrs["src"].startswith(prefix)
        assert base64.b64decode(img.attrs["src"][len(prefix) :]) == fig.path.read_bytes()
        assert img.attrs["alt"].startswith(fig.title)
    for node, fig in zip(dom.find_all("figure", "plot"), figures, strict=True):
        assert node.find("h3").text() == fig.title
        assert node.find("figcaption").text() == fig.caption


def test_per_label_drilldown(real):
    page, records, _ = real
    dom = parse(page)
    details = dom.find_all("details", "drilldown")
    assert [d.attrs["data-task"] for d in details] == list(TASKS)
    superdiagnostic = dom.find("details", data_task="superdiagnostic")
    rows = superdiagnostic.find("tbody").find_all("tr")
    assert [r.attrs["data-label"] for r in rows] == CLASSES["superdiagnostic"]
    # the column of one run and protocol holds the mean over seeds of each label's AUROC
    run = next(r["run_id"] for r in records if r["method"] == "mae")
    heads = superdiagnostic.find("thead").find_all("th", "sortable")
    head = superdiagnostic.find("th", data_run_id=run, data_protocol="finetune")
    i = int(head.attrs["data-col"])
    for row in rows:
        label = row.attrs["data-label"]
        expected = np.mean(
            [
                r["metrics"]["test"]["per_label_auroc"][label]
                for r in records
                if (r["run_id"], r["task"], r["protocol"], r["label_fraction"])
                == (run, "superdiagnostic", "finetune", 1.0)
            ]
        )
        assert float(cells(row)[i].attrs["data-value"]) == pytest.approx(expected)
        assert cells(row)[i].text() == f"{expected:.3f}"
    # the label, then each run's protocols: jepa (2), the tuned jepa (1), mae, random, simclr (2)
    assert len(heads) == 1 + 2 + 1 + 2 + 2 + 2
    rhythm = dom.find("details", data_task="rhythm")
    stach = rhythm.find("tr", data_label="STACH")
    assert all("excluded" in c.classes for c in cells(stach)[1:])
    excluded = rhythm.find("li", data_label="STACH").text()
    assert "no positive" in excluded and "every column" in excluded
    assert "No label excluded" in superdiagnostic.text()


def test_provenance_of_every_measured_row(real):
    page, records, _ = real
    dom = parse(page)
    provenance = dom.find("table", "provenance")
    rows = provenance.find("tbody").find_all("tr")
    assert len(rows) == len({(r["run_id"], r["protocol"]) for r in records})
    ids = {r.attrs["id"] for r in rows}
    for row in dom.find_all("tr", "measured"):  # every measured row links to its provenance
        assert cells(row)[0].find("a").attrs["href"].lstrip("#") in ids
    tuned = provenance.find("tr", data_run_id=TUNED_RUN)
    text = tuned.text()
    for expected in ("fedcba9876543210", "a" * 16, "c" * 7, "f" * 12, REAL, "cpu", "bf16"):
        assert expected in text
    assert (
        tuned.find("span", title="2026-12-01 12:00:00 to 2026-12-01 12:00:00").text()
        == "2026-12-01"
    )
    assert tuned.find("code", title="c" * 40).text() == "c" * 7
    assert [c.text() for c in cells(tuned)[-2:]] == ["2", str(len(TASKS) * len(SEEDS))]
    steps = next(r["pretrain"] for r in records if r["run_id"] == TUNED_RUN)["steps"]
    assert f"{steps:,} steps x" in text and "FLOPs not recorded" in text  # factory: no count
    first = next(r for r in records if r["kind"] == "reference")
    reference = provenance.find("tr", data_run_id=first["run_id"], data_protocol=first["protocol"])
    assert "none (reference row)" in reference.text()
    dirty = provenance.find(
        "tr", data_run_id=records[0]["run_id"], data_protocol=records[0]["protocol"]
    )
    assert dirty.find("span", "dirty").text() == "dirty"
    assert not tuned.find_all("span", "dirty")


def test_every_measured_row_shows_its_runs_health(real):
    page, records, _ = real
    dom = parse(page)
    for table in dom.find_all("table", "leaderboard"):
        for row in table.find_all("tr", "measured"):
            cell = cells(row)[-1]
            assert "health" in cell.classes
            method, run = row.attrs["data-method"], row.attrs["data-run-id"]
            if run == TUNED_RUN:  # written before health existed
                assert "none" in cell.classes and cell.text() == "–"
                assert cell.attrs["title"].startswith("not recorded")
                continue
            warned = method in WARNED
            assert ("warn" in cell.classes) == warned, method
            assert len(cell.find_all("span", "health-warning")) == warned, method
            status = cell.find("span", "loss-status").text()
            assert status == {"jepa": "still falling", "mae": "plateau", "simclr": "turned",
                              "random": "at init"}[method]  # fmt: skip
            assert (
                cell.find("span", "rank")
                .text()
                .startswith(
                    {
                        "jepa": "rank 19.",
                        "mae": "rank 4.0/32",
                        "simclr": "rank 19.",
                        "random": "rank 15.",
                    }[method]  # fmt: skip
                )
            )
            # the collapsed run's rank is marked as fallen below init, no other
            assert bool(cell.find("span", "rank").find_all("span", "down")) == (method == "mae")
            title = cell.attrs["title"]
            assert f"Pre-training health of {run}" in title and "Effective rank" in title
            if method == "jepa":
                assert "still falling at step 200" in title and "(init 15." in title
                assert "budget may be too small" in title
            if method == "mae":
                assert "dimensional collapse" in title and "signal directions 16 -> 4" in title
            if method == "random":
                assert "reference row" in title and "(init" not in title
            target = cell.find("a").attrs["href"].lstrip("#")
            assert dom.find("tr", id=target).attrs["data-run-id"] == run
    # published context rows get an empty health cell, so every row has the same width
    for row in board(dom, "linear", "1").find_all("tr", "published"):
        assert len(cells(row)) == len(TASKS) + 2 and "health" in cells(row)[-1].classes


def test_health_section_lists_every_run_with_numbers_and_definitions(real):
    page, records, _ = real
    dom = parse(page)
    assert dom.find("nav").find("a", href="#health").text() == "Pre-training health"
    section = dom.find("section", id="health")
    rows = section.find("table", "health-table").find("tbody").find_all("tr")
    runs = [r.attrs["data-run-id"] for r in rows]
    assert sorted(runs) == sorted({r["run_id"] for r in records})
    assert runs[-1] == next(r["run_id"] for r in records if r["method"] == "random")  # refs last
    by_run = {r.attrs["data-run-id"]: r for r in rows}
    for method, code in WARNED.items():
        run = next(r["run_id"] for r in records if r["method"] == method)
        assert by_run[run].attrs.get("class") == "warn"
        assert by_run[run].find_all("li", code)
    mae = next(r for r in records if r["method"] == "mae")
    rank_cell = cells(by_run[mae["run_id"]])[2]
    end, init = mae["health"]["features"], mae["health"]["features_init"]
    expected = (
        f"{init['effective_rank']:.1f} → {end['effective_rank']:.1f} ↓ (32); "
        f"signal directions {init['signal_dims']} → {end['signal_dims']}"
    )
    assert rank_cell.text() == expected and rank_cell.find_all("span", "collapsed")
    assert "not recorded" in by_run[TUNED_RUN].text()
    simclr = next(r["run_id"] for r in records if r["method"] == "simclr")
    assert "turned at step" in cells(by_run[simclr])[1].text()
    assert by_run[simclr].find_all("span", "muted")[-1].text() == "none"  # no warning
    terms = [n.text() for n in section.find_all("dt")]
    assert terms == [
        "Loss curve", "Spread and relative spread", "Effective rank", "Signal directions",
        "Collapse: complete or dimensional",
    ]  # fmt: skip
    assert "Roy & Vetterli" in section.find("dl", "definitions").text()


def test_pages_of_records_without_health_are_unchanged(real):
    """Old records (no health key) still render: no health column, section or link."""
    old = make_records(REAL)
    for r in old:
        r.pop("health", None)
    dom = parse(render(old, []))
    assert not dom.find_all("section", id="health") and not dom.find_all("td", "health")
    assert not dom.find_all("a", href="#health")
    head = [c.text() for c in cells(board(dom, "linear", "1").find("thead").find("tr"))]
    assert head == ["method", *TASKS]


def test_two_protocol_configs_of_one_run_link_to_that_runs_provenance_and_health():
    """Rows labelled "<run id>@<eval hash>" (one run, two protocol configs) still link to the
    run's provenance and health rows, which are keyed by the pre-training run."""
    health = fake_health("turned")
    records = [
        fake_record("jepa", "superdiagnostic", "linear", v, eval_hash=h * 16, dataset=REAL,
                    health=health)
        for v, h in ((0.80, "1"), (0.90, "2"))
    ]  # fmt: skip
    dom = parse(render(records, []))
    rows = board(dom, "linear", "1").find_all("tr", "measured")
    assert sorted(r.attrs["data-run-id"] for r in rows) == [
        f"{records[0]['run_id']}@11111111",
        f"{records[0]['run_id']}@22222222",
    ]
    for row in rows:
        provenance = dom.find("tr", id=cells(row)[0].find("a").attrs["href"].lstrip("#"))
        assert provenance.attrs["data-run-id"] == records[0]["run_id"]
        target = cells(row)[-1].find("a").attrs["href"].lstrip("#")
        assert dom.find("tr", id=target).attrs["data-run-id"] == records[0]["run_id"]


# --- the page in headless Chromium ---------------------------------------------------------


@pytest.fixture(scope="module")
def browser(real, tmp_path_factory):
    """(page, browser, directory): the real-data leaderboard opened from file:// in Chromium."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: `make install` as root installs Debian's chromium "
            "(or: apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: .venv/bin/pip install -e '.[dev]'"
    )
    page_html, _, _ = real
    out = tmp_path_factory.mktemp("html")
    path = out / "leaderboard.html"
    path.write_text(page_html, encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page.set_default_timeout(15_000)
        page.goto(path.as_uri())
        yield page, chromium, out
        chromium.close()


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_browser_shows_tables_and_every_figure(browser):
    page, _, out = browser
    shot = page.screenshot(full_page=True)
    (out / "leaderboard.png").write_bytes(shot)
    full = pixels(shot)
    assert full.shape[0] > 900 and full.std() > 10, "blank screenshot"
    for (protocol, fraction), (measured, published) in EXPECTED_ROWS.items():
        table = page.locator(
            f'table.leaderboard[data-protocol="{protocol}"][data-label-fraction="{fraction}"]'
        )
        assert table.is_visible()
        assert table.locator("tr.measured").count() == measured
        assert table.locator("tr.published").count() == published
        box = table.bounding_box()
        assert box["width"] > 400 and box["height"] > 30 * (measured + published)
    images = page.locator("figure.plot img")
    assert images.count() == 2
    for i in range(images.count()):
        img = images.nth(i)
        state = img.evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " return {complete: el.complete, natural: el.naturalWidth,"
            " x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}; }"
        )
        assert state["complete"] and state["natural"] > 0
        assert state["w"] > 50 and state["h"] > 50 and img.is_visible()
        x, y, w, h = (round(state[k]) for k in ("x", "y", "w", "h"))
        crop = full[y : y + h, x : x + w]
        assert crop.shape[:2] == (h, w)
        assert crop.std() > 10, f"figure {i} is blank on screen"


def test_browser_sorts_on_header_click(browser):
    page, _, _ = browser
    table = page.locator('table.leaderboard[data-protocol="linear"][data-label-fraction="1"]')
    header = table.locator("thead th", has_text="rhythm")
    i = int(header.get_attribute("data-col"))

    def values() -> list[float]:
        return [
            float(v)
            for v in table.locator("tr.measured").evaluate_all(
                f"rows => rows.map(r => r.cells[{i}].dataset.value)"
            )
        ]

    before = values()
    assert before != sorted(before, reverse=True)  # simclr's winning row is not on top yet
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert values() == sorted(before, reverse=True)
    assert table.locator("tr.measured").first.get_attribute("data-method") == "simclr"
    header.click()
    assert values() == sorted(before)
    # published rows stay apart, after every measured row
    kinds = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.className)")
    assert kinds.index("published") > max(j for j, k in enumerate(kinds) if k == "measured")
    table.locator("thead th", has_text="method").click()
    methods = table.locator("tr.measured").evaluate_all("rows => rows.map(r => r.dataset.method)")
    assert methods == sorted(methods)


def test_browser_opens_a_drilldown(browser):
    page, _, _ = browser
    details = page.locator('details.drilldown[data-task="rhythm"]')
    inner = details.locator("table.per-label")
    assert details.get_attribute("open") is None and not inner.is_visible()
    details.locator("summary").click()
    assert details.get_attribute("open") is not None and inner.is_visible()
    assert inner.locator("tbody tr").count() == len(CLASSES["rhythm"])
    assert details.locator('li[data-label="STACH"]').is_visible()


def test_browser_shows_the_health_cells_and_their_warnings(browser):
    page, _, _ = browser
    table = page.locator('table.leaderboard[data-protocol="linear"][data-label-fraction="1"]')
    for method in METHODS:
        cell = table.locator(f'tr.measured[data-method="{method}"] td.health').first
        assert cell.is_visible(), method
        box = cell.bounding_box()
        assert box["width"] > 60 and box["height"] > 10
        marker = cell.locator("span.health-warning")
        assert marker.count() == (method in WARNED)
        if method in WARNED:
            assert marker.is_visible()
            # the marker stands out: its colour is not the cell's text colour
            colours = marker.evaluate(
                "el => [getComputedStyle(el).color, getComputedStyle(el.closest('td')).color]"
            )
            assert colours[0] != colours[1]
    # the cell links to the run's row in the health section, which the browser scrolls to
    table.locator('tr.measured[data-method="mae"] td.health a').click()
    target = page.locator("table.health-table tr:target")
    assert target.count() == 1 and target.is_visible()
    assert "dimensional collapse" in target.inner_text()
    assert page.locator("section#health dl.definitions").is_visible()


def test_browser_synthetic_page_warns(browser, tmp_path):
    _, chromium, _ = browser
    path = tmp_path / "synthetic.html"
    path.write_text(render(make_records(SYNTHETIC), []), encoding="utf-8")
    page = chromium.new_page()
    page.goto(path.as_uri())
    assert page.locator("#synthetic-warning").is_visible()
    assert page.locator("tr.published").count() == 0
    assert page.locator("tr.measured").count() == sum(m for m, _ in EXPECTED_ROWS.values())
    page.close()
