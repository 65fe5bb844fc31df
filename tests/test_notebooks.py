"""Every notebook executes in quick mode on the real offline data, and the book builds from them.

Needs ``ADLIB_DATA`` (CI sets it to ``../shared/data``); without it these tests fail with a
message naming the fix rather than skipping silently.
"""
import os
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


def test_book_opens_in_headless_chromium(built):
    """Every page loads in a real browser, every figure decodes, no internal link is broken;
    screenshots of the landing page and of a chapter are kept in book/_build/screenshots."""
    _, html = built
    report = book.check_in_browser(html)
    assert report["pages"] >= len(SOURCES) + 1
    assert report["images"] >= len(SOURCES), "the browser saw fewer figures than chapters"
    assert not report["problems"], "\n".join(report["problems"][:20])
    names = sorted(p.name for p in report["screenshots"])
    assert names == ["chapter.png", "landing.png"]
    for shot in report["screenshots"]:
        assert shot.stat().st_size > 10_000, f"{shot} looks blank"
