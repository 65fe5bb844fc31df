"""Course labs: student versions of the notebooks, without the exercises' solutions.

Every chapter ends with a markdown ``## Exercises`` section; the code cells that answer them,
and the ``### Solution to exercise N`` headings above those, are tagged ``solution``.
``python -m adlib lab`` writes ``<stem>_student.ipynb`` for every notebook (or those named with
``--only``) into ``book/_build/labs/`` without those cells; ``--check`` then executes each
student notebook with papermill in quick mode, as ``python -m adlib book`` does, to show that
it still runs up to its exercises. ``book/teaching.md`` is the teacher's guide.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from . import book

__all__ = ["SOLUTION_TAG", "LABS", "LabError", "is_solution", "has_exercises", "student_version",
           "write_student_versions", "check_student_version", "main"]

#: The cell tag that marks a solution (its code and its heading); student versions drop it.
SOLUTION_TAG = "solution"
#: Where ``python -m adlib lab`` writes the student notebooks by default (ignored by git).
LABS = book.BOOK / "_build" / "labs"

_EXERCISES = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)
_NOTE = ("> **Student version.** The solutions to the exercises at the end of this notebook "
         "are left out; the teacher's version, `notebooks/{name}`, has them. Run it with "
         "`QUICK = True` (the parameters cell) for small, fast runs.\n\n")


class LabError(RuntimeError):
    """A student notebook that cannot serve as a lab (no exercises, or it fails to run)."""


def is_solution(cell) -> bool:
    """Whether ``cell`` carries the ``solution`` tag."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def has_exercises(notebook) -> bool:
    """Whether a markdown cell of ``notebook`` holds a ``## Exercises`` heading."""
    return any(c.cell_type == "markdown" and _EXERCISES.search(c.source)
               for c in notebook.cells)


def student_version(source: Path):
    """The student version of a notebook source (``notebooks/NAME.py``, any jupytext format).

    Every cell tagged ``solution`` is dropped, the others are kept in order, and the first
    markdown cell starts with a note saying that this is the student version. Returns an
    ``nbformat.NotebookNode`` with a Python 3 kernelspec and no jupytext pairing metadata.
    """
    import jupytext
    import nbformat

    source = Path(source)
    notebook = jupytext.read(source)
    notebook.cells = [c for c in notebook.cells if not is_solution(c)]
    note = _NOTE.format(name=source.name)
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    if first is None:
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(note.strip()))
    else:
        first.source = note + first.source
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def write_student_versions(out_dir: Path = LABS, names: list[str] | None = None) -> list[Path]:
    """Write ``<stem>_student.ipynb`` into ``out_dir`` for every ``notebooks/[0-9]*.py`` (or
    those whose stem starts with one of ``names``); return the paths written, in chapter
    order. Raises ``ValueError`` when ``names`` matches no notebook."""
    import nbformat

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in book.notebook_sources(names):
        path = out_dir / f"{source.stem}_student.ipynb"
        nbformat.write(student_version(source), path)
        written.append(path)
    return written


def check_student_version(path: Path, quick: bool = True, out_dir: Path | None = None) -> float:
    """Execute the student notebook ``path`` with papermill (``QUICK`` injected, run from
    ``notebooks/``, as ``python -m adlib book`` does) into ``out_dir`` (default: an
    ``executed/`` folder beside it); return the wall time in seconds.

    Raises :class:`LabError`, naming the notebook, when it has no ``## Exercises`` heading or
    when a cell fails.
    """
    import nbformat

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    if not has_exercises(notebook):
        raise LabError(f"{path.name}: no '## Exercises' heading, so it is not a lab")
    out_dir = Path(out_dir) if out_dir is not None else path.parent / "executed"
    try:
        return book.execute_notebook_node(notebook, path.stem, out_dir, quick)
    except Exception as err:
        detail = (f"{err.ename}: {err.evalue}" if hasattr(err, "ename")
                  else f"{type(err).__name__}: {err}")
        raise LabError(f"{path.name} failed in {'quick' if quick else 'full'} mode "
                       f"(executed copy: {out_dir / path.name}): {detail}") from err


def main(argv=None) -> int:
    """``python -m adlib lab [--only NAME ...] [--out DIR] [--check]``: write the student
    notebooks and, with ``--check``, execute each in quick mode; 1 if any check failed."""
    parser = argparse.ArgumentParser(prog="python -m adlib lab")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only notebooks whose name starts with these")
    parser.add_argument("--out", type=Path, default=LABS, metavar="DIR",
                        help=f"output folder ({LABS})")
    parser.add_argument("--check", action="store_true",
                        help="execute every student notebook in quick mode")
    args = parser.parse_args(argv)
    paths = write_student_versions(args.out, args.only)
    failed = []
    for path in paths:
        print(f"wrote {path}", flush=True)
        if args.check:
            try:
                print(f"  runs in quick mode in {check_student_version(path):.0f} s", flush=True)
            except LabError as err:
                failed.append(path.name)
                print(f"  FAILED: {str(err)[:2000]}", flush=True)
    if failed:
        print(f"{len(failed)} of {len(paths)} student notebooks failed: {', '.join(failed)}")
    return 1 if failed else 0
