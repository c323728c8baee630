"""`edge-age bench` and `edge-age report` on real TFLite files, a tiny real ONNX model and real faces."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jsonschema
import numpy as np
import pytest

from edge_age.report.bench_page import SCHEMA_FILE, pareto_front
from tests.conftest import ROOT, assert_user_error, ctrl_c_enabled, run_cli

BENCH_ARGS = ("--threads", "1", "--runs", "5", "--warmup", "1", "--rounds", "2")
BLOCKED = ("tensorflow", "tf_keras", "keras", "matplotlib", "onnxruntime")


def validate(bench: dict) -> None:
    jsonschema.validate(bench, json.loads(SCHEMA_FILE.read_text()), cls=jsonschema.Draft202012Validator)


def tiny_onnx(folder, size: int = 32):
    """A real ONNX age/gender model built with onnx.helper (mean colour, then two dense heads), with its
    preprocessing JSON beside it; returns the .onnx path and the weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = {"w_age": rng.normal(0, 2, (3, 101)), "b_age": rng.normal(0, 1, 101),
               "w_gender": rng.normal(0, 2, (3, 1)), "b_gender": np.zeros(1)}
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"]),
             helper.make_node("Gemm", ["features", "w_age", "b_age"], ["age_logits"]),
             helper.make_node("Gemm", ["features", "w_gender", "b_gender"], ["gender_logit"]),
             helper.make_node("Sigmoid", ["gender_logit"], ["gender"])]
    graph = helper.make_graph(
        nodes, "tiny_age", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("age_logits", TensorProto.FLOAT, ["N", 101])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "onnx_baseline.onnx"
    onnx.save(model, str(path))
    spec = {"input_size": size, "color_order": "BGR", "layout": "NCHW", "mean": [127.5] * 3, "std": [127.5] * 3,
            "age": {"output": "age_logits", "decode": "softmax_expectation"},
            "gender": {"output": "gender", "decode": "probability", "positive": "female"}}
    path.with_suffix(".json").write_text(json.dumps(spec))
    return path, weights


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def bench_run(converted, onnx_model, faces, split, tmp_path_factory):
    """One real bench: float32 and int8 TFLite files and the ONNX baseline, on the test side of a real split."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_cli("bench", converted / "age_gender_float32.tflite", converted / "age_gender_int8.tflite",
                   onnx_model[0], "--data", faces, "--split", split, *BENCH_ARGS, "--name", "host", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, json.loads((out / "bench.json").read_text())


def test_bench_json_follows_the_schema(bench_run, split):
    _, _, bench = bench_run
    validate(bench)
    assert bench["status"] == "complete" and bench["device"]["name"] == "host"
    assert {"cpu", "cores", "os", "python", "packages", "thermal_before", "thermal_after"} <= set(bench["device"])
    assert bench["device"]["packages"]["ai-edge-litert"]
    names = [m["name"] for m in bench["models"]]
    assert names == ["age_gender_float32", "age_gender_int8", "onnx_baseline"]
    assert [m["target"] for m in bench["models"]] == ["float32", "int8", None]
    test_side = sum(1 for line in split.read_text().splitlines() if line.endswith(",test"))
    for model in bench["models"]:
        acc = model["accuracy"]["cpu"]
        assert acc["n"] == test_side and acc["mae"] > 0 and 0 <= acc["cs5"] <= 1 and "gender_accuracy" in acc
        assert set(acc["breakdown"]) == {"age_group", "gender", "race"}
        assert sum(acc["error_by_age"]["n"]) == test_side
    rows = {r["model"]: r for r in bench["latency"]}
    assert set(rows) == set(names) and not bench["skipped"]
    for _name, row in rows.items():
        # 2 rounds of 5
        assert (row["delegate"], row["threads"], row["runs"], len(row["samples_ms"])) == ("cpu", 1, 10, 10)
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert len(row["windows"]) >= 2 and sum(w["n"] for w in row["windows"]) == 10  # a window or more per round
        assert row["peak_rss_mb"] > row["start_rss_mb"] > 0
    for name in names[:2]:
        cov = rows[name]["coverage"]
        assert rows[name]["runtime"]["name"] == "ai-edge-litert"
        assert cov["ops"] > 0 and cov["delegated"] + sum(cov["not_delegated"].values()) == cov["ops"]
    assert rows["onnx_baseline"]["coverage"] is None and rows["onnx_baseline"]["runtime"]["name"] == "onnxruntime"
    front = [(r["latency_ms"]["p50"],
              next(m for m in bench["models"] if m["name"] == r["model"])["accuracy"]["cpu"]["mae"])
             for r in bench["latency"]]
    expected = [r["model"] for r, on in zip(bench["latency"], pareto_front(front)) if on]
    assert [p["model"] for p in bench["pareto_front"]] == expected and expected


def test_bench_pages(bench_run):
    out, proc, bench = bench_run
    md = (out / "bench.md").read_text()
    p50 = {r["model"]: r["latency_ms"]["p50"] for r in bench["latency"]}
    int8_row = next(line for line in md.splitlines() if line.startswith("| age_gender_int8 |"))
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    column = next(i for i, h in enumerate(header.split(" | ")) if h.startswith("p50 ÷"))
    assert header.split(" | ")[column] == "p50 ÷ age_gender_float32"
    ratio = int8_row.split(" | ")[column]
    assert ratio == f"{p50['age_gender_int8'] / p50['age_gender_float32']:.2f}"
    assert int8_row in proc.stdout
    assert "Runtimes: ai-edge-litert " in md and ", onnxruntime " in md
    for title in ("Device", "Accuracy and latency", "Accuracy by age group", "Accuracy by gender", "Accuracy by race"):
        assert f"## {title}" in md
    page = (out / "bench.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "src='http" not in page
    for png in ("tradeoff", "latency", "error_by_age"):
        assert (out / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_accuracy_matches_evaluate(bench_run, converted, faces, split):
    from edge_age.eval.evaluation import evaluate_file
    _, _, bench = bench_run
    result, _ = evaluate_file(converted / "age_gender_int8.tflite", faces, split)
    acc = bench["models"][1]["accuracy"]["cpu"]
    assert acc["mae"] == pytest.approx(result["mae"], abs=1e-9)
    assert acc["gender_accuracy"] == pytest.approx(result["gender_accuracy"])


def test_onnx_baseline_decodes_like_numpy(onnx_model, faces):
    """BGR, NCHW, mean/std and softmax expectation, against the same network written in numpy."""
    from edge_age.bench.baselines import predict, read_baseline
    from edge_age.data.faceset import load_faces
    path, w = onnx_model
    images = np.asarray(load_faces(faces, size=32).images[:20])
    age, female = predict(read_baseline(path), images)
    features = ((images[..., ::-1].astype(np.float64) - 127.5) / 127.5).mean(axis=(1, 2))
    logits = features @ w["w_age"] + w["b_age"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected_age = (p / p.sum(axis=1, keepdims=True)) @ np.arange(101)
    expected_female = 1 / (1 + np.exp(-(features @ w["w_gender"] + w["b_gender"])[:, 0]))
    assert np.allclose(age, expected_age, atol=1e-3) and np.allclose(female, expected_female, atol=1e-5)


def _other_device(bench: dict, path, name: str, slower: float) -> None:
    """The same bench as if made on a slower device without the data (latency only)."""
    other = json.loads(json.dumps(bench))
    other["device"]["name"] = name
    other["settings"]["faces"] = other["settings"]["faces_count"] = None
    for model in other["models"]:
        model["accuracy"] = {}
    for row in other["latency"]:
        row["latency_ms"] = {k: v * slower for k, v in row["latency_ms"].items()}
        row["samples_ms"] = [v * slower for v in row["samples_ms"]]
    path.write_text(json.dumps(other))


def test_report_merges_two_devices(bench_run, tmp_path):
    out, _, bench = bench_run
    _other_device(bench, tmp_path / "pi5.json", "pi5", 7.0)
    proc = run_cli("report", out / "bench.json", tmp_path / "pi5.json", "--out", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert "host p50 ms" in header and "pi5 p50 ms" in header
    front = {p["model"] for p in bench["pareto_front"]}
    for model in bench["models"]:
        row = next(line for line in md.splitlines() if line.startswith(f"| {model['name']} |"))
        p50 = next(r["latency_ms"]["p50"] for r in bench["latency"] if r["model"] == model["name"])
        assert f"{p50:.3f} (cpu ×1)" in row and f"{p50 * 7:.3f} (cpu ×1)" in row
        assert row.count("★") == (2 if model["name"] in front else 0)  # pi5's front placed by host's accuracy
        assert f"| {model['accuracy']['cpu']['mae']:.2f} |" in row
    assert row in proc.stdout
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "pi5" in page and "src='http" not in page


@pytest.mark.parametrize("case, fragment", [
    ("text", "is not a bench file: it is not JSON"),
    ("other-json", "is not a bench file: it has no \"schema\""),
    ("version", "is a bench file of schema version 3; this edge-age reads versions 1, 2"),
    ("damaged", "is a damaged bench file: it has no latency"),
])
def test_report_refuses_other_files(bench_run, converted, tmp_path, case, fragment):
    bench = bench_run[2]
    path = tmp_path / f"{case}.json"
    if case == "text":
        path.write_bytes(b"\x89PNG not json")
    elif case == "other-json":
        shutil.copy(converted / "convert_report.json", path)
    else:
        path.write_text(json.dumps({**bench, "schema_version": 3} if case == "version"
                                   else {k: v for k, v in bench.items() if k != "latency"}))
    proc = run_cli("report", bench_run[0] / "bench.json", path, "--out", tmp_path / "report")
    assert_user_error(proc, str(path), fragment)
    assert not (tmp_path / "report" / "report.md").exists()


def test_bench_refuses_bad_input(converted, onnx_model, faces, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    lonely = tmp_path / "alone" / "model.onnx"
    lonely.parent.mkdir()
    shutil.copy(onnx_model[0], lonely)
    empty = tmp_path / "empty"
    empty.mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    model = converted / "age_gender_int8.tflite"
    cases = [
        ([notes], "is not a model: bench takes .tflite files"),
        ([fake], "fake.tflite is not a TFLite model"),
        ([lonely], "needs its preprocessing in"),
        ([tmp_path / "missing.tflite"], "does not exist"),
        ([empty], "holds no .tflite or .onnx file"),
        ([model, "--out", blocker / "sub"], "cannot write to folder"),
        ([model, "--delegate", "edgetpu"], "edgetpu delegate library"),
        ([model, "--delegate", "npu"], "unknown delegate 'npu'"),
        ([model, "--threads", "0"], "--threads takes thread counts"),
        ([model, "--limit", "10"], "--limit counts the faces"),
        ([model, "--data", faces, "--split", notes], "columns"),
        ([model, "--data", empty], "no image files"),
    ]
    for args, fragment in cases:
        if "--out" not in args:
            args = [*args, "--out", tmp_path / "out"]
        assert_user_error(run_cli("bench", *BENCH_ARGS, *args), fragment)


def test_bench_runs_without_tensorflow_or_matplotlib(converted, onnx_model, faces, split, tmp_path):
    """The device install: no TensorFlow, no matplotlib, no onnxruntime; pages without plots, with a note."""
    blocked = tmp_path / "blocked"
    for name in BLOCKED:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this device')\n")
    env = {"PYTHONPATH": str(blocked)}
    out = tmp_path / "out"
    proc = run_cli("bench", converted / "age_gender_int8.tflite", "--data", faces, "--split", split, "--limit", "10",
                   *BENCH_ARGS, "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((out / "bench.json").read_text())
    assert bench["status"] == "complete" and bench["models"][0]["accuracy"]["cpu"]["n"] == 10
    assert not any((out / f"{png}.png").exists() for png in ("tradeoff", "latency", "error_by_age"))
    page = (out / "bench.html").read_text()
    assert "data:image" not in page and "pip install &#x27;edge-age[report]&#x27;" in page
    assert "pip install 'edge-age[report]'" in (out / "bench.md").read_text()
    assert_user_error(run_cli("bench", onnx_model[0], *BENCH_ARGS, "--out", out, env=env),
                      "ONNX baselines need onnxruntime")


def test_interrupted_bench_keeps_what_it_measured(converted, tmp_path):
    models = [converted / f"age_gender_{t}.tflite" for t in ("float32", "float16", "int8")]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edge_age", "bench", *map(str, models), "--threads", "1,2",
                             "--runs", "20000", "--warmup", "1", "--rounds", "1", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_enabled)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "bench.json").is_file() and json.loads((out / "bench.json").read_text())["latency"]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "edge-age: bench interrupted" in stderr and "Traceback" not in stderr
    bench = json.loads((out / "bench.json").read_text())
    validate(bench)
    assert bench["status"] == "interrupted" and 1 <= len(bench["latency"]) < 6 and bench["finished"]
    assert "INTERRUPTED" in (out / "bench.md").read_text() and (out / "bench.html").is_file()
    assert not [p for p in os.listdir(out) if p.startswith(".") and p != ".bench.files"]


def test_files_of_one_name_in_several_folders_get_names_that_tell_them_apart(tmp_path):
    """runs/members/{n,s}/convert/age_gender_int8-qat.tflite: the names take as many parent folders as differ."""
    from edge_age.bench.run import find_models
    from edge_age.members import member
    files = []
    for name in ("n", "s"):
        folder = tmp_path / "members" / name / "convert"
        folder.mkdir(parents=True)
        for suffix in (".tflite", ".json"):
            shutil.copy(member(name).tflite().with_suffix(suffix), folder / f"age_gender_int8-qat{suffix}")
        files.append(folder / "age_gender_int8-qat.tflite")
    shutil.copy(member("m").tflite(), tmp_path / "other.tflite")
    shutil.copy(member("m").tflite().with_suffix(".json"), tmp_path / "other.json")
    names = [m.name for m in find_models([*files, tmp_path / "other.tflite"])]
    assert names == ["n/convert/age_gender_int8-qat", "s/convert/age_gender_int8-qat", "other"]
