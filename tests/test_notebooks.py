"""Every notebook executes in quick mode on the real offline data, and the book builds from them.

Needs ``ADLIB_DATA`` (CI sets it to ``../shared/data``); without it these tests fail with a
message naming the fix rather than skipping silently.
"""
import os
import re
import shutil

import nbformat
import pytest

from adlib import book

SOURCES = book.notebook_sources()


@pytest.fixture(autouse=True)
def isolated_cache():
    """Keep the real cache (ADLIB_CACHE or .cache/) here: the notebooks read the real data, and
    decoding the CIFAR-10 JPEGs again for every test would only cost time."""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Execute every notebook once into a copy of the book; map stem -> seconds or error."""
    if not os.environ.get("ADLIB_DATA"):
        pytest.fail("ADLIB_DATA is not set: point it at the offline data, e.g. ../shared/data")
    book_copy = book.copy_book(tmp_path_factory.mktemp("book") / "book")
    outcome = book.execute_notebooks(book_copy / "executed", quick=True)
    return book_copy, outcome


def test_every_notebook_is_paired_and_has_one_parameters_cell():
    assert SOURCES, "no notebooks/*.py found"
    import jupytext
    for source in SOURCES:
        assert source.with_suffix(".ipynb").exists(), f"{source.name} has no paired .ipynb"
        nb = jupytext.read(source)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{source.name} needs exactly one 'parameters' cell"
        assert "QUICK" in tagged[0].source, f"{source.name}: QUICK missing from parameters"
        paired = jupytext.read(source.with_suffix(".ipynb"))
        assert [c.source for c in paired.cells] == [c.source for c in nb.cells], (
            f"{source.stem}.ipynb is out of sync with {source.name}: run jupytext --sync")


def test_a_headless_browser_is_installed():
    """Runs before the notebooks (minutes): the browser test at the end needs the system's
    Chromium and its driver; say so now rather than after the book is built."""
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    assert not missing, (f"{' and '.join(missing)} not found: `apt-get install chromium "
                         "chromium-driver` (./run test does it when it runs as root)")


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_notebook_executes_in_quick_mode(executed, source):
    book_copy, outcome = executed
    result = outcome[source.stem]
    assert not isinstance(result, Exception), f"{source.name} failed: {result}"
    nb = nbformat.read(book_copy / "executed" / f"{source.stem}.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{source.name} drew no figure"


#: How Python's warnings module writes a warning: "file:line: SomethingWarning: message".
WARNING = re.compile(r"\b[A-Z]\w*Warning: ")


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_no_python_warning_in_outputs(executed, source):
    """No chapter prints a Python warning (a deprecation, a future change) on its page: the
    code that caused it is fixed instead."""
    book_copy, _ = executed
    path = book_copy / "executed" / f"{source.stem}.ipynb"
    if not path.exists():
        pytest.fail(f"{source.name} was not executed (see test_notebook_executes_in_quick_mode)")
    nb = nbformat.read(path, as_version=4)
    warned = [f"cell {i}: {line.strip()[:200]}"
              for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "stream"
              for line in o.get("text", "").splitlines() if WARNING.search(line)]
    assert not warned, f"{source.name} shows warnings:\n" + "\n".join(warned)


def test_injected_parameters_cells_are_tagged_remove_cell(tmp_path):
    """Papermill's injected-parameters cell gets Jupyter Book's remove-cell tag; no other
    cell is touched."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("# Parameters\nQUICK = True",
                                  metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(QUICK)")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert book.hide_injected_parameters(path) == 1
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters"], ["injected-parameters", "remove-cell"], []]
    assert book.hide_injected_parameters(path) == 0


def test_plots_table_shows_missing_cells_as_a_dash():
    """plots.table draws a DataFrame as pandas does in a notebook, with "-" for NaN or None."""
    import pandas as pd

    from adlib import plots
    df = pd.DataFrame({"AUROC": [97.25, float("nan")], "source": ["ours", None]},
                      index=["a", "b"])
    shown = plots.table(df)._repr_html_()
    assert "NaN" not in shown and "None" not in shown and 'class="dataframe"' in shown
    assert shown.count("<td>-</td>") == 2 and "97.25" in shown
    assert df["AUROC"].isna().sum() == 1  # the data are left as they are


def test_browser_check_reports_raw_math_and_requests_leaving_the_book(tmp_path):
    """The browser check on two hand-written pages: one asks for a script outside the book
    (on the loopback address, so nothing leaves this machine) and holds math no MathJax
    typeset; the other is clean."""
    html = tmp_path / "html"
    html.mkdir()
    gif = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"  # one white pixel
    (html / "intro.html").write_text(
        "<html><head><title>clean</title></head><body><p>No math, a data image "
        f"<img src='data:image/gif;base64,{gif}' alt=''>.</p>"
        "<pre>print('$$ in code is fine')</pre></body></html>")
    (html / "chapter.html").write_text(
        "<html><head><title>raw</title><script src='http://127.0.0.1:9/tex-mml-chtml.js'>"
        "</script></head><body><div class='math'>\\[x^2\\]</div></body></html>")
    report = book.check_in_browser(html, tmp_path / "shots", chapter="chapter.html",
                                   math_timeout=5)
    assert report["math"] == {"elements": 1, "typeset": 0}
    assert [r["page"] for r in report["external_requests"]] == ["chapter.html"]
    assert report["external_requests"][0]["url"].startswith("http://127.0.0.1:9/")
    assert any("1 of 1 math elements not typeset" in p for p in report["problems"])
    assert any("raw TeX" in p and "chapter.html" in p for p in report["problems"])
    assert not [p for p in report["problems"] if p.startswith("intro.html")]


@pytest.fixture(scope="module")
def built(executed):
    """The book built to HTML from the executed notebooks (once for the module)."""
    book_copy, outcome = executed
    if any(isinstance(v, Exception) for v in outcome.values()):
        pytest.fail("a notebook failed; the book is not built from partial outputs")
    return book.build_book(book_copy), book_copy / "_build" / "html"


def test_book_builds_to_html(built):
    index, html = built
    for source in SOURCES:
        page = html / "executed" / f"{source.stem}.html"
        assert page.exists(), f"{page} missing"
        assert "<img" in page.read_text(), f"{page.name} shows no figure"
    assert index.exists()


def test_chapters_hide_papermill_injected_parameters(built):
    """The cell papermill inserts with QUICK = True is left out of every chapter's page."""
    _, html = built
    for source in SOURCES:
        page = (html / "executed" / f"{source.stem}.html").read_text()
        assert "injected-parameters" not in page, f"{source.stem}.html shows papermill's cell"
        assert "Injected parameters" not in page


def test_book_tables_show_no_nan(built):
    """A table on a page shows a missing number as "-" (or leaves it out), never as NaN."""
    _, html = built
    found = []
    for page in sorted(html.rglob("*.html")):
        for table in re.findall(r"<table\b.*?</table>", page.read_text(), re.S | re.I):
            text = re.sub(r"<[^>]+>", " ", table)
            if re.search(r"\bNaN\b", text):
                found.append(f"{page.relative_to(html)}: {' '.join(text.split())[:160]}")
    assert not found, "tables showing NaN:\n" + "\n".join(found)


def test_book_opens_in_headless_chromium(built):
    """Every page loads in a real browser, every figure decodes, no internal link is broken,
    all math is typeset by the book's own MathJax, and no page asks for anything outside the
    book's folder (it reads offline); screenshots of the landing page and of a chapter are
    kept in book/_build/screenshots."""
    _, html = built
    report = book.check_in_browser(html)
    assert report["pages"] >= len(SOURCES) + 1
    assert report["images"] >= len(SOURCES), "the browser saw fewer figures than chapters"
    assert not report["problems"], "\n".join(report["problems"][:20])
    assert not report["external_requests"], "requests leaving the book:\n" + "\n".join(
        f"{r['page']}: {r['url']}" for r in report["external_requests"][:20])
    assert report["math"]["elements"] > 0, "no math found: is MyST's dollarmath still on?"
    assert report["math"]["typeset"] == report["math"]["elements"]
    names = sorted(p.name for p in report["screenshots"])
    assert names == ["chapter.png", "landing.png"]
    for shot in report["screenshots"]:
        assert shot.stat().st_size > 10_000, f"{shot} looks blank"
