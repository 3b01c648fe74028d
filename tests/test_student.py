"""The students' copy (``make student``): every cell tagged ``solution`` goes, everything else
stays, and a rebuild never overwrites a student's work unasked."""
import nbformat
import pytest

from fatsmb_lib.course import student
from fatsmb_lib.course.pipeline import course_notebooks


def cells(notebook):
    return [(cell.cell_type, cell.source, cell.metadata, cell.get("outputs")) for cell in notebook.cells]


def course(folder):
    """Two notebooks: one with exercises and their solutions (a markdown explanation and a code
    cell each, and a solution without explanation), one without any."""
    folder.mkdir()
    tagged = {"tags": ["solution"]}
    exercises = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 01 · topic"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x + 1", execution_count=1, outputs=[
            nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]),
        nbformat.v4.new_markdown_cell("## Exercises\n1. Add two.\n2. Add three."),
        nbformat.v4.new_markdown_cell("**Solution 1.** Add two:", metadata=tagged),
        nbformat.v4.new_code_cell("x + 2", metadata=tagged, execution_count=2, outputs=[
            nbformat.v4.new_output("execute_result", {"text/plain": "3"}, execution_count=2)]),
        nbformat.v4.new_code_cell("x + 3", metadata={"tags": ["solution", "hide-input"]}),
        nbformat.v4.new_markdown_cell("Solutions tagged `solution` are not for students."),
    ])
    exercises.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}
    nbformat.write(exercises, folder / "01_topic.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 00 · notation")]),
                   folder / "00_notation.ipynb")
    return folder


def test_the_student_copy_drops_solutions_and_keeps_everything_else(tmp_path):
    notebooks = course(tmp_path / "notebooks")
    written = student.build_student_copy(tmp_path / "student", notebooks)
    assert {path.name: n for path, n in written.items()} == {"00_notation.ipynb": 0,
                                                              "01_topic.ipynb": 3}
    for name in ("00_notation.ipynb", "01_topic.ipynb"):
        source = nbformat.read(notebooks / name, as_version=4)
        copy = nbformat.read(tmp_path / "student" / name, as_version=4)
        assert student.solution_cells(copy) == []
        assert cells(copy) == [c for c, cell in zip(cells(source), source.cells)
                               if not student.is_solution(cell)]
        assert copy.metadata == source.metadata
    kept = nbformat.read(tmp_path / "student" / "01_topic.ipynb", as_version=4)
    assert [c.source for c in kept.cells][-1] == "Solutions tagged `solution` are not for students."


def test_a_rebuild_keeps_a_students_work_unless_forced(tmp_path):
    notebooks = course(tmp_path / "notebooks")
    out = tmp_path / "student"
    student.build_student_copy(out, notebooks)
    student.build_student_copy(out, notebooks)              # unchanged copies: rebuilt quietly
    work = out / "01_topic.ipynb"
    mine = nbformat.read(work, as_version=4)
    mine.cells.append(nbformat.v4.new_code_cell("my_answer = x + 2"))
    nbformat.write(mine, work)
    with pytest.raises(FileExistsError, match="01_topic.ipynb changed since the last build"):
        student.build_student_copy(out, notebooks)
    assert "my_answer" in work.read_text()
    student.build_student_copy(out, notebooks, force=True)
    assert "my_answer" not in work.read_text()


def test_the_command_builds_every_course_notebook(tmp_path, capsys):
    student.main(["--out", str(tmp_path / "student")])
    built = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert built == [nb.name for nb in course_notebooks()]
    assert "00_notation.ipynb" in built
    for name in built:
        assert student.solution_cells(nbformat.read(tmp_path / "student" / name, as_version=4)) == []
    assert "solution cells removed" in capsys.readouterr().out
