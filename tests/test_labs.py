"""Course labs (:mod:`adlib.labs`): student versions drop exactly the solution cells, still run,
fail loudly when they do not, and every chapter has exercises with solutions after them."""
import re

import jupytext
import nbformat
import pytest

from adlib import book, labs

SOURCES = book.notebook_sources()
EXERCISES = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)

TINY = '''# %% [markdown]
# # A tiny lab

# %% tags=["parameters"]
QUICK = False

# %%
x = 1 if QUICK else 2

# %% [markdown]
# ## Exercises
#
# 1. Set `answer`.

# %% [markdown] tags=["solution"]
# ### Solution to exercise 1

# %% tags=["solution"]
answer = 42

# %%
after = x + 1
'''


def tiny_lab(folder, broken: bool = False, exercises: bool = True):
    """Write the tiny py:percent notebook to ``folder``; ``broken``: a student cell raises."""
    text = TINY
    if broken:
        text = text.replace("after = x + 1", 'raise ValueError("boom in a student cell")')
    if not exercises:
        text = text.replace("## Exercises", "## Questions")
    path = folder / "tiny_lab.py"
    path.write_text(text)
    return path


def tags(cell):
    return cell.metadata.get("tags", [])


def test_student_version_drops_exactly_the_solution_cells_in_order(tmp_path):
    source = tiny_lab(tmp_path)
    full = jupytext.read(source)
    student = labs.student_version(source)
    kept = [c for c in full.cells if "solution" not in tags(c)]
    assert len(full.cells) - len(kept) == 2
    assert [c.cell_type for c in student.cells] == [c.cell_type for c in kept]
    assert [c.source for c in student.cells[1:]] == [c.source for c in kept[1:]]
    assert not any("answer = 42" in c.source or "Solution to" in c.source for c in student.cells)
    first = student.cells[0].source
    assert "Student version" in first and first.endswith("# A tiny lab")
    assert student.metadata["kernelspec"]["name"] == "python3"


def test_check_student_version_runs_a_student_notebook(tmp_path):
    path = tmp_path / "tiny_student.ipynb"
    nbformat.write(labs.student_version(tiny_lab(tmp_path)), path)
    seconds = labs.check_student_version(path, quick=True)
    assert seconds > 0
    ran = nbformat.read(tmp_path / "executed" / path.name, as_version=4)
    code = "\n".join(c.source for c in ran.cells if c.cell_type == "code")
    assert "QUICK = True" in code  # papermill injected the parameter
    assert "answer" not in code


def test_check_student_version_names_the_failing_notebook(tmp_path):
    path = tmp_path / "broken_student.ipynb"
    nbformat.write(labs.student_version(tiny_lab(tmp_path, broken=True)), path)
    with pytest.raises(labs.LabError, match=r"broken_student\.ipynb.*boom in a student cell"):
        labs.check_student_version(path)


def test_check_student_version_refuses_a_notebook_without_exercises(tmp_path):
    path = tmp_path / "plain_student.ipynb"
    nbformat.write(labs.student_version(tiny_lab(tmp_path, exercises=False)), path)
    with pytest.raises(labs.LabError, match=r"plain_student\.ipynb.*Exercises"):
        labs.check_student_version(path)
    assert not (tmp_path / "executed").exists()  # refused before executing anything


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_every_notebook_has_exercises_then_solutions(source):
    cells = jupytext.read(source).cells
    solutions = [i for i, c in enumerate(cells) if "solution" in tags(c)]
    assert solutions, f"{source.name} has no cell tagged 'solution'"
    headings = [i for i, c in enumerate(cells)
                if c.cell_type == "markdown" and EXERCISES.search(c.source)]
    assert headings and headings[0] < solutions[0], (
        f"{source.name}: no '## Exercises' heading before its first solution cell")
    code = [i for i in solutions if cells[i].cell_type == "code"]
    assert code, f"{source.name}: its solution cells hold no code"
    for i in code:
        heading = cells[i - 1]
        titled = heading.cell_type == "markdown" and heading.source.startswith("### Solution to")
        assert titled and "solution" in tags(heading), (
            f"{source.name}: solution cell {i} lacks a tagged '### Solution to exercise N' above")


def test_cli_writes_the_student_notebooks(tmp_path):
    assert labs.main(["--out", str(tmp_path), "--only", "00"]) == 0
    written = sorted(tmp_path.glob("*.ipynb"))
    source = next(s for s in SOURCES if s.stem.startswith("00"))
    assert written == [tmp_path / f"{source.stem}_student.ipynb"]
    student = nbformat.read(written[0], as_version=4)
    full = jupytext.read(source)
    assert not any("solution" in tags(c) for c in student.cells)
    assert len(student.cells) == sum("solution" not in tags(c) for c in full.cells)
    assert labs.has_exercises(student)


def test_unknown_notebook_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no notebook"):
        labs.write_student_versions(tmp_path, ["99_missing"])
