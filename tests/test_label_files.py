"""Odd label files (issue 22): the labels CSV of `evaluate --labels` and the split CSV with a UTF-8 byte order
mark, CRLF line ends, duplicate rows, one million rows, ages negative, 200 or not whole: the same faces and scores,
or a one-line error naming the line; never a silent change of MAE."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_age.data.split import read_split
from edge_age.eval.evaluation import labelled_faces, read_labels
from firmware_host.errors import EdgeAgeError
from tests.conftest import UTK64, assert_user_error, copy_slice, run_cli, sample_names

BOM = "\ufeff"


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return copy_slice(UTK64, tmp_path_factory.mktemp("faces"), sample_names(UTK64, 12))


def label_lines(faces: Path) -> list[str]:
    return ["file,age,gender"] + [f"{p.name},{p.name.split('_')[0]},{p.name.split('_')[1]}"
                                  for p in sorted(faces.iterdir())]


def write(path: Path, lines: list[str], *, bom: bool = False, crlf: bool = False) -> Path:
    end = "\r\n" if crlf else "\n"
    path.write_bytes(((BOM if bom else "") + end.join(lines) + end).encode("utf-8"))
    return path


def test_bom_and_crlf_read_as_the_plain_file(faces, tmp_path):
    lines = label_lines(faces)
    plain = labelled_faces(faces, 64, labels=write(tmp_path / "plain.csv", lines))
    for bom, crlf in ((True, False), (False, True), (True, True)):
        odd = labelled_faces(faces, 64, labels=write(tmp_path / f"{bom}{crlf}.csv", lines, bom=bom, crlf=crlf))
        assert odd.files == plain.files and (odd.ages == plain.ages).all() and (odd.genders == plain.genders).all()
    split = ["file,age,gender,race,group,split"] + [f"{ln},0,{i},test" for i, ln in enumerate(lines[1:])]
    assert read_split(write(tmp_path / "split.csv", split, bom=True, crlf=True)).rows == \
        read_split(write(tmp_path / "split_plain.csv", split)).rows


def test_the_same_mae_through_the_cli_whatever_the_line_ends(faces, tmp_path):
    lines = label_lines(faces)
    maes = []
    for name, odd in (("plain", {}), ("excel", {"bom": True, "crlf": True})):
        proc = run_cli("evaluate", "n", "--data", faces, "--labels", write(tmp_path / f"{name}.csv", lines, **odd))
        assert proc.returncode == 0, proc.stderr[-2000:]
        maes.append(re.search(r"n=12, MAE (\d+\.\d+)", proc.stdout).group(1))
    assert maes[0] == maes[1]


@pytest.mark.parametrize(("row", "fragment"), [
    ("{f},-3,0", "line 3: age -3 is outside 0..116"),
    ("{f},200,0", "line 3: age 200 is outside 0..116"),
    ("{f},31.5,0", "line 3: age '31.5' is not a whole number"),
    ("{f},thirty,0", "line 3: age 'thirty' is not a whole number"),
    ("{f},,0", "line 3: age '' is not a whole number"),
])
def test_bad_ages_name_the_line(faces, tmp_path, row, fragment):
    name = sorted(p.name for p in faces.iterdir())[1]
    labels = write(tmp_path / "labels.csv", label_lines(faces)[:2] + [row.format(f=name)] + label_lines(faces)[3:],
                   bom=True, crlf=True)  # the line numbers hold with a BOM and CRLF too
    with pytest.raises(EdgeAgeError, match=re.escape(fragment)):
        read_labels(labels)


def test_duplicate_rows_name_both_lines_even_when_identical(faces, tmp_path):
    lines = label_lines(faces)
    labels = write(tmp_path / "labels.csv", lines + [lines[4]], crlf=True)
    name = lines[4].split(",")[0]
    assert_user_error(run_cli("evaluate", "n", "--data", faces, "--labels", labels),
                      f"line {len(lines) + 1}: {name} is listed again (first on line 5)", "--skip-bad-labels")


def test_split_files_refuse_bad_ages_and_duplicates(tmp_path):
    head = "file,age,gender,race,group,split"
    good = ["a.jpg,30,0,0,0,train", "b.jpg,40,1,0,1,test"]
    cases = {"negative": ("c.jpg,-1,0,0,2,test", "line 4: age -1 is outside 0..116"),
             "old": ("c.jpg,200,0,0,2,test", "line 4: age 200 is outside 0..116"),
             "fraction": ("c.jpg,3.5,0,0,2,test", "line 4: bad value"),
             "duplicate": ("a.jpg,30,0,0,0,train", "line 4: a.jpg is listed again (first on line 2)")}
    for case, (bad, fragment) in cases.items():
        with pytest.raises(EdgeAgeError, match=re.escape(fragment)):
            read_split(write(tmp_path / f"{case}.csv", [head, *good, bad]))


def test_a_long_file_is_read_whole_and_refused_by_its_missing_files(faces, tmp_path):
    """100,000 rows here, to stay quick (a million behave the same, ten times longer: read whole, then refused)."""
    lines = label_lines(faces)
    many = lines + [f"{i}_0_0_2017.jpg.chip.jpg,{i % 100},0" for i in range(100_000 - len(lines) + 1)]
    labels = write(tmp_path / "many.csv", many)
    with pytest.raises(EdgeAgeError, match=r"99988 labelled files are not in .* \(first: 0_0_0_2017.jpg.chip.jpg\)"):
        labelled_faces(faces, 64, labels=labels)
