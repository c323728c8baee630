"""`edge-age members-table`: the table of teacher networks and members holds the figures of the files it reads (run
folders, a conversion report, one real bench), and bad rows get one-line errors."""
import json
from pathlib import Path

import pytest

from firmware_host.infer.model_info import read_info
from tests.conftest import ROOT, assert_user_error, run_cli

REFERENCE = ROOT / "edge_age" / "reference"
S_FILE = ROOT / "edge_age" / "family" / "s" / "age_gender_int8-qat.tflite"  # the reference network, 96 px
N_FILE = ROOT / "edge_age" / "family" / "n" / "age_gender_int8-qat.tflite"
FIGURES = ("mae", "cs5", "gender_accuracy")


@pytest.fixture(scope="module")
def bench(converted, faces, split, tmp_path_factory) -> Path:
    """One real bench of the tiny run's int8-qat file and the bundled s file, 1 and 2 threads, scored on the
    test side of the split."""
    out = tmp_path_factory.mktemp("members-bench")
    proc = run_cli("bench", converted / "age_gender_int8-qat.tflite", S_FILE, "--data", faces, "--split", split,
                   "--threads", "1,2", "--runs", "3", "--warmup", "1", "--rounds", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "bench.json"


def _figures(scores: dict) -> dict:
    return {k: scores[k] for k in FIGURES}


def _p50(bench: dict, file: Path) -> dict:
    name = next(m["name"] for m in bench["models"] if Path(m["file"]) == file.resolve())
    return {str(r["threads"]): r["latency_ms"]["p50"] for r in bench["latency"] if r["model"] == name}


def _line(markdown: str, name: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))


def test_the_table_holds_the_figures_of_its_sources(tiny_run, converted, bench, tmp_path):
    out = tmp_path / "table"
    proc = run_cli("members-table", "--teacher", f"m96-seed0={REFERENCE}", "--member", f"tiny={tiny_run}:{converted}",
                   "--file", f"s-bundled={S_FILE}", "--bench", bench, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = json.loads((out / "members_table.json").read_text())
    markdown = (out / "members_table.md").read_text()
    assert proc.stdout.startswith(markdown)
    rows = {r["name"]: r for r in table["rows"]}
    assert [r["name"] for r in table["rows"]] == ["m96-seed0", "tiny", "s-bundled"]
    bench_record = json.loads(bench.read_text())

    # The tiny member: its run folder, its conversion and the bench.
    tiny = rows["tiny"]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    config = json.loads((tiny_run / "config.json").read_text())
    report = json.loads((converted / "convert_report.json").read_text())
    targets = {t["target"]: t for t in report["targets"]}
    assert tiny["role"] == "member" and tiny["input_size"] == config["spec"]["input_size"] == 32
    assert tiny["epochs"] == {"float": 1, "qat": 1} and tiny["epochs_from"] == "history"
    assert tiny["train_minutes"] == metrics["train_minutes"]
    for kind in ("float", "qat"):
        assert tiny["accuracy"][kind] == _figures(metrics[kind])
    for kind in ("int8-qat", "int8"):
        assert tiny["accuracy"][kind] == _figures(targets[kind]["details"])
    assert tiny["latency_ms_p50"] == _p50(bench_record, converted / "age_gender_int8-qat.tflite")
    assert set(tiny["latency_ms_p50"]) == {"1", "2"}
    assert 0 < tiny["macs"] and 0 < tiny["params"] < tiny["macs"]
    line = _line(markdown, "tiny")
    for value in (tiny["accuracy"]["int8"]["mae"], tiny["accuracy"]["qat"]["mae"], *tiny["latency_ms_p50"].values()):
        assert f" {value:.3f} |" in line
    assert f"| {tiny['params']:,} | {tiny['macs']:,} | 1 + 1 |" in line

    # The reference as a teacher network: no history kept, no conversion; params and MACs as bundled for s.
    ref = rows["m96-seed0"]
    bundled = json.loads((S_FILE.parent / "member.json").read_text())
    ref_metrics = json.loads((REFERENCE / "metrics.json").read_text())
    assert ref["role"] == "teacher network" and ref["arch"] == bundled["arch"] == "mobilenet_v2 alpha 1.0"
    assert (ref["params"], ref["macs"], ref["input_size"]) == (bundled["params"], bundled["macs"], 96)
    assert ref["epochs"] == {"float": 24, "qat": 3} and ref["epochs_from"] == "config"
    assert ref["accuracy"]["qat"] == _figures(ref_metrics["qat"])
    assert ref["accuracy"]["int8-qat"] is None and ref["latency_ms_p50"] == {}
    line = _line(markdown, "m96-seed0")
    assert "| 24 + 3 * |" in line and f"| {ref_metrics['float']['mae']:.3f} |" in line and line.endswith("| - | - |")

    # The file with no run folder: its row from the bench alone.
    file_row = rows["s-bundled"]
    scored = next(m for m in bench_record["models"] if Path(m["file"]) == S_FILE.resolve())["accuracy"]["cpu"]
    assert file_row["accuracy"]["int8-qat"] == _figures(scored) and file_row["input_size"] == 96
    assert file_row["latency_ms_p50"] == _p50(bench_record, S_FILE) and file_row["params"] is None
    assert f"| {scored['mae']:.3f} |" in _line(markdown, "s-bundled")
    decoding = read_info(S_FILE).decoding.describe()
    assert file_row["decoding"] == decoding and f"| {decoding} |" in _line(markdown, "s-bundled")
    assert ref["decoding"] is None and tiny["decoding"] == read_info(converted / "age_gender_int8-qat.tflite") \
        .decoding.describe()

    assert table["bench"]["device"] == bench_record["device"]["name"] and table["bench"]["threads"] == [1, 2]
    assert "p50 ms, 2 threads" in markdown and f"on device {bench_record['device']['name']}" in markdown
    assert sorted(p.name for p in out.iterdir()) == [".members_table.files", "members_table.json", "members_table.md"]


@pytest.mark.parametrize("args, fragments", [
    (["--member", "tiny"], ["--member takes NAME=RUN[:CONVERTED]", "'tiny'"]),
    (["--teacher", "t={missing}"], ["--teacher t:", "is not a folder"]),
    (["--teacher", "t={empty}"], ["--teacher t:", "is not a training run folder", "no config.json"]),
    (["--member", "a={reference}:{empty}"], ["--member a:", "no convert_report.json"]),
    (["--file", "n={n_file}"], ["--file n", "give --bench"]),
    (["--file", "n={n_file}", "--bench", "{bench}"], ["has no CPU latency of age_gender_int8-qat.tflite"]),
    (["--teacher", "a={reference}", "--member", "a={reference}"], ["own name", "a given twice"]),
    (["--teacher", "a={reference}", "--bench", "{missing}"], ["--bench", "does not exist"]),
    (["--bench", "{bench}"], ["no rows"]),
])
def test_bad_rows_get_one_line_errors(args, fragments, bench, tmp_path):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "reference": REFERENCE,
             "n_file": N_FILE, "bench": bench}
    proc = run_cli("members-table", *(a.format(**paths) for a in args), "--out", tmp_path / "table")
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "table" / "members_table.md").exists()
