"""Execute the notebooks with papermill and build the Jupyter Book from the executed copies.

``python -m adlib book --quick`` (what ``./run book`` calls): every ``notebooks/*.py`` is paired
to ``.ipynb`` with jupytext, executed by papermill with ``QUICK=True`` into ``book/executed/``,
and the book in ``book/`` is built to HTML with ``execute_notebooks: off`` (the book renders the
outputs, it never recomputes them). Every notebook runs even when one fails; the command fails at
the end, naming the notebooks that failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
BOOK = REPO / "book"

__all__ = ["notebook_sources", "execute_notebook", "execute_notebook_node", "execute_notebooks",
           "build_book", "check_in_browser", "main"]

#: Where the browser check keeps its screenshots (a build artifact, ignored by git).
SCREENSHOTS = BOOK / "_build" / "screenshots"


def notebook_sources(names=None) -> list[Path]:
    """The paired jupytext sources, ``notebooks/*.py``, in chapter order (only those whose stem
    starts with one of ``names``, when given). A name that selects no notebook raises a
    ``ValueError`` listing the chapters."""
    every = sorted(NOTEBOOKS.glob("[0-9]*.py"))
    unknown = [n for n in names or () if not any(s.stem.startswith(n) for s in every)]
    if unknown:
        raise ValueError(f"no notebook in {NOTEBOOKS} starts with {', '.join(unknown)}; "
                         f"chapters: {', '.join(s.stem for s in every)}")
    return [s for s in every if not names or any(s.stem.startswith(n) for n in names)]


def execute_notebook(source: Path, out_dir: Path, quick: bool = True) -> float:
    """Execute one notebook with papermill into ``out_dir``; return the wall time in seconds."""
    import jupytext

    return execute_notebook_node(jupytext.read(source), source.stem, out_dir, quick)


def execute_notebook_node(notebook, stem: str, out_dir: Path, quick: bool = True) -> float:
    """Execute an in-memory notebook with papermill into ``out_dir/<stem>.ipynb``, from
    ``notebooks/`` and with ``QUICK`` injected; return the wall time in seconds."""
    import jupytext
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    staged = out_dir / f".{stem}.input.ipynb"
    jupytext.write(notebook, staged, fmt="ipynb")
    # the kernel inherits our environment: an MPLBACKEND=Agg there would swallow every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(staged), str(out_dir / f"{stem}.ipynb"),
                                   parameters={"QUICK": quick}, kernel_name="python3",
                                   cwd=str(NOTEBOOKS), progress_bar=False)
    finally:
        staged.unlink(missing_ok=True)
    return time.perf_counter() - started


def execute_notebooks(out_dir: Path = BOOK / "executed", quick: bool = True,
                      names: list[str] | None = None) -> dict:
    """Execute every notebook (or those whose stem starts with one of ``names``).

    Returns ``{stem: seconds or the exception}``; never stops at the first failure.
    """
    outcome = {}
    for source in notebook_sources(names):
        print(f"executing {source.name} (quick={quick}) ...", flush=True)
        try:
            outcome[source.stem] = execute_notebook(source, out_dir, quick)
            print(f"  done in {outcome[source.stem]:.0f} s", flush=True)
        except Exception as err:  # keep going: report all failures at the end
            outcome[source.stem] = err
            print(f"  FAILED: {type(err).__name__}: {str(err)[:2000]}", flush=True)
    return outcome


def build_book(book_dir: Path = BOOK) -> Path:
    """Build the Jupyter Book in ``book_dir`` to HTML; return the path of its index page."""
    exe = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(exe), "build", str(book_dir), "--quiet"], check=True)
    index = book_dir / "_build" / "html" / "index.html"
    if not index.exists():
        raise RuntimeError(f"jupyter-book finished but {index} is missing")
    return index


def _chromium():
    """A headless Chromium driven by Selenium, from the system's ``chromium`` and
    ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        raise RuntimeError("no headless browser: install Chromium and its driver, e.g. "
                           "`apt-get install chromium chromium-driver` (the CI script does)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


#: JavaScript run on every page: its title, every image and whether it decoded, every link.
_PAGE_PROBE = """
return {title: document.title,
        images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
                 ok: i.complete && i.naturalWidth > 0})),
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href)};
"""


def check_in_browser(html_dir: Path, screenshots: Path = SCREENSHOTS,
                     chapter: str = "executed/02_oclr.html") -> dict:
    """Open every page of the built book in headless Chromium.

    Returns ``{"pages": n, "images": n, "problems": [...], "screenshots": [...]}``: a problem is
    a page without a title, an image that did not decode, or an internal link to a missing
    file. The landing page and ``chapter`` are saved as PNG screenshots in ``screenshots``.
    """
    from urllib.parse import unquote, urlparse

    html_dir = Path(html_dir).resolve()
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)
    problems, n_images, shots = [], 0, []
    screenshots.mkdir(parents=True, exist_ok=True)
    driver = _chromium()
    try:
        for page in pages:
            driver.get(page.as_uri())
            seen = driver.execute_script(_PAGE_PROBE)
            name = page.relative_to(html_dir).as_posix()
            if not seen["title"]:
                problems.append(f"{name}: no title (did the page load?)")
            for image in seen["images"]:
                n_images += 1
                if not image["ok"]:
                    problems.append(f"{name}: image {image['src'][:80]} did not decode")
            for link in seen["links"]:
                url = urlparse(link)
                if url.scheme == "file" and not Path(unquote(url.path)).exists():
                    problems.append(f"{name}: broken link to {unquote(url.path)}")
            for wanted, file in (("intro.html", "landing.png"), (chapter, "chapter.png")):
                if name == wanted:
                    driver.save_screenshot(str(screenshots / file))
                    shots.append(screenshots / file)
    finally:
        driver.quit()
    return {"pages": len(pages), "images": n_images, "problems": problems,
            "screenshots": sorted(set(shots))}


def copy_book(target: Path) -> Path:
    """Copy the book's sources (not its build or executed notebooks) to ``target``."""
    shutil.copytree(BOOK, target, ignore=shutil.ignore_patterns("_build", "executed"))
    return target


def main(argv=None) -> int:
    """``python -m adlib book [--quick] [--only NAME ...]``."""
    parser = argparse.ArgumentParser(prog="python -m adlib book")
    parser.add_argument("--quick", action="store_true", help="execute notebooks in quick mode")
    parser.add_argument("--only", nargs="+", help="execute only notebooks starting with these")
    parser.add_argument("--no-build", action="store_true", help="execute but do not build HTML")
    args = parser.parse_args(argv)
    outcome = execute_notebooks(quick=args.quick, names=args.only)
    failed = [k for k, v in outcome.items() if isinstance(v, Exception)]
    if not args.no_build:
        print(f"built {build_book()}")
    for k, v in outcome.items():
        print(f"{k:40s} {'FAILED' if k in failed else f'{v:.0f} s'}")
    return 1 if failed else 0
