"""Execute the notebooks with papermill and build the Jupyter Book from the executed copies.

``python -m adlib book --quick`` (what ``./run book`` calls): every ``notebooks/*.py`` is paired
to ``.ipynb`` with jupytext, executed by papermill with ``QUICK=True`` into ``book/executed/``,
and the book in ``book/`` is built to HTML with ``execute_notebooks: off`` (the book renders the
outputs, it never recomputes them). Every notebook runs even when one fails; the command fails at
the end, naming the notebooks that failed. Papermill's injected-parameters cell is tagged
``remove-cell`` in each executed copy, so the pages leave it out.

The book needs no network to be read: its math is typeset by a pinned MathJax that the build
copies from ``book/_vendor/mathjax/`` into its own ``_static`` folder (``mathjax_path`` in
``book/_config.yml``), and :func:`check_in_browser` fails a page whose math was not typeset or
that asks for anything outside the book's folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
BOOK = REPO / "book"

__all__ = ["notebook_sources", "execute_notebook", "execute_notebook_node", "execute_notebooks",
           "hide_injected_parameters", "build_book", "check_in_browser", "main"]

#: Where the browser check keeps its screenshots (a build artifact, ignored by git).
SCREENSHOTS = BOOK / "_build" / "screenshots"
#: The tag papermill puts on the cell it inserts with the parameters (nteract/papermill), and
#: the tag with which Jupyter Book leaves a cell, input and output, out of the page.
INJECTED_TAG, REMOVE_TAG = "injected-parameters", "remove-cell"


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
        if (out_dir / f"{stem}.ipynb").exists():
            hide_injected_parameters(out_dir / f"{stem}.ipynb")
    return time.perf_counter() - started


def hide_injected_parameters(path: Path) -> int:
    """Tag every ``injected-parameters`` cell of the notebook at ``path`` ``remove-cell`` (in
    place), so that the book shows the chapter's own parameters cell and not papermill's
    override; return how many cells were tagged."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    tagged = 0
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and REMOVE_TAG not in tags:
            tags.append(REMOVE_TAG)
            tagged += 1
    if tagged:
        nbformat.write(notebook, path)
    return tagged


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
    ``chromedriver`` (Debian: ``apt-get install chromium chromium-driver``), that logs every
    network request of its pages (Chrome's performance log)."""
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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


#: JavaScript run on every page (asynchronously): wait until MathJax has typeset the page, if
#: it loaded, then return the page's title, every image and whether it decoded, every link,
#: every math element (``.math``, Sphinx's and MyST's wrapper of the TeX source) and whether
#: MathJax put its output (``mjx-container``) in it, and the visible text outside code blocks.
_PAGE_PROBE = """
const done = arguments[arguments.length - 1];
const probe = (typeset) => {
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && !n.parentElement.closest(skip)
                     ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT});
  const text = [];
  while (walker.nextNode()) text.push(walker.currentNode.nodeValue);
  done({title: document.title, typeset: typeset,
        images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
                 ok: i.complete && i.naturalWidth > 0})),
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
        math: Array.from(document.querySelectorAll('.math')).map(m => ({
                 ok: m.querySelector('mjx-container') !== null,
                 source: m.textContent.slice(0, 60)})),
        text: text.join(' ')});
};
// the page's body can still be missing when the driver hands over (seen once with Chromium
// 150): wait for a loaded document before reading it
const whenLoaded = (then) => document.body && document.readyState === 'complete'
  ? then() : setTimeout(() => whenLoaded(then), 50);
whenLoaded(() => {
  const startup = window.MathJax && window.MathJax.startup;
  if (startup && startup.promise) {
    startup.promise.then(() => probe('done'), (err) => probe('failed: ' + err));
  } else {
    probe(window.MathJax ? 'not loaded' : 'absent');
  }
});
"""

#: TeX delimiters that must not survive on a rendered page: math MathJax did not typeset.
RAW_TEX = ("$$", "\\[", "\\(")
#: A TeX command in a page's text outside code: math that never reached MathJax (``\[`` in
#: MyST markdown is an escaped bracket, not a delimiter, so the TeX after it shows as text).
_TEX_COMMAND = re.compile(r"\\(?:[A-Za-z]{2,}|[{}_])")


def _requests(driver) -> list[str]:
    """The URLs the browser asked for since the last call (Chrome's performance log, drained
    on every read)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _outside(url: str, html_dir: Path) -> bool:
    """Whether a request for ``url`` leaves the book: anything but a ``data:`` URL or a
    ``file://`` URL under ``html_dir``."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    if parsed.scheme == "data":
        return False
    if parsed.scheme != "file":
        return True
    return not Path(unquote(parsed.path)).resolve().is_relative_to(html_dir)


def check_in_browser(html_dir: Path, screenshots: Path = SCREENSHOTS,
                     chapter: str = "executed/02_oclr.html", math_timeout: float = 60) -> dict:
    """Open every page of the built book in headless Chromium, offline as a reader would.

    Returns ``{"pages", "images", "math", "problems", "external_requests", "screenshots"}``.
    ``math`` counts the math elements on all pages and those MathJax typeset. A problem is a
    page without a title, an image that did not decode, an internal link to a missing file, a
    math element left untypeset (MathJax did not load, or failed), or raw TeX in the page's
    text outside code: a delimiter (:data:`RAW_TEX`) or a command such as ``\\mathcal``.
    ``external_requests`` lists every request a page made that is not a ``data:`` URL nor a
    ``file://`` URL inside ``html_dir`` (``{"page", "url"}``, in page order), as a CDN's script
    or a web font would be. Each page is probed once MathJax has finished typesetting it (at
    most ``math_timeout`` seconds). The landing page and ``chapter`` (scrolled to its first
    displayed equation, if any) are saved as PNG screenshots in ``screenshots``.
    """
    from urllib.parse import unquote, urlparse

    html_dir = Path(html_dir).resolve()
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.parts)
    problems, external, n_images, shots = [], [], 0, []
    n_math = n_typeset = 0
    screenshots.mkdir(parents=True, exist_ok=True)
    driver = _chromium()
    driver.set_script_timeout(math_timeout)
    try:
        for page in pages:
            driver.get(page.as_uri())
            seen = driver.execute_async_script(_PAGE_PROBE)
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
            n_math += len(seen["math"])
            n_typeset += sum(m["ok"] for m in seen["math"])
            raw = [m["source"] for m in seen["math"] if not m["ok"]]
            if raw:
                problems.append(f"{name}: {len(raw)} of {len(seen['math'])} math elements not "
                                f"typeset (MathJax: {seen['typeset']}), first {raw[0]!r}")
            found = [(seen["text"].find(d), d) for d in RAW_TEX if d in seen["text"]]
            command = _TEX_COMMAND.search(seen["text"])
            found += [(command.start(), command.group())] if command else []
            for at, tex in sorted(found)[:1]:
                problems.append(f"{name}: raw TeX {tex!r} in the text: "
                                f"{seen['text'][max(at - 30, 0):at + 50]!r}")
            for wanted, file in (("intro.html", "landing.png"), (chapter, "chapter.png")):
                if name == wanted:
                    if file == "chapter.png":
                        driver.execute_script(
                            "const m = document.querySelector('div.math');"
                            "if (m) m.scrollIntoView({block: 'center'});")
                    driver.save_screenshot(str(screenshots / file))
                    shots.append(screenshots / file)
            external += [{"page": name, "url": url} for url in _requests(driver)
                         if _outside(url, html_dir)]
    finally:
        driver.quit()
    return {"pages": len(pages), "images": n_images,
            "math": {"elements": n_math, "typeset": n_typeset}, "problems": problems,
            "external_requests": external, "screenshots": sorted(set(shots))}


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
