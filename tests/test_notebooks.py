"""Every notebook executes in quick mode on the real offline data, and the book builds from them.

Needs ``ADLIB_DATA`` (CI sets it to ``../shared/data``); without it these tests fail with a
message naming the fix rather than skipping silently.
"""
import os

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


def test_book_builds_to_html(executed):
    book_copy, outcome = executed
    if any(isinstance(v, Exception) for v in outcome.values()):
        pytest.fail("a notebook failed; the book is not built from partial outputs")
    index = book.build_book(book_copy)
    html = book_copy / "_build" / "html"
    for source in SOURCES:
        page = html / "executed" / f"{source.stem}.html"
        assert page.exists(), f"{page} missing"
        assert "<img" in page.read_text(), f"{page.name} shows no figure"
    assert index.exists()
