"""The quantization workbench of `edge-age convert`: per-layer error of every integer file, int16x8, int8-mixed
within a budget, the self-contained HTML report, on real tiny models and real faces."""
import json
import math
import re

import pytest

from converters.tf_setup import tensorflow
from firmware_host.infer.graph import activation_types, io_types, read_ops
from tests.conftest import assert_user_error, run_cli
from tests.planted import PLANTED, build, own_answers_split

LAYER_KEYS = {"name", "op", "rmse", "snr_db", "cosine", "channel_snr_db", "rank", "index"}


@pytest.fixture(scope="module")
def planted(faces, tmp_path_factory):
    """The small model with a planted fault, and a split labelled with its own float answers."""
    folder = tmp_path_factory.mktemp("planted")
    model = build(folder / "model.keras")
    return folder / "model.keras", own_answers_split(model, faces, folder / "split.csv")


def convert_planted(planted, faces, out, *args):
    model, split = planted
    return run_cli("convert", model, "--data", faces, "--split", split, "--calib", "40", "--debug-images", "16",
                   "--threshold", "100", "--out", out, *args)


@pytest.fixture(scope="module")
def workbench(planted, faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("workbench")
    proc = convert_planted(planted, faces, out, "--targets", "int8,int16x8,int8-mixed", "--budget", "0.3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def targets(folder) -> dict:
    report = json.loads((folder / "convert_report.json").read_text())
    return {r["target"]: r for r in report["targets"]}


def check_layers(folder, expected: set[str]) -> None:
    """Every integer file of a convert run carries finite per-layer measures in graph order, ranked, and its
    float-against-quantized agreement; the float files carry none."""
    checked = set()
    for name, row in targets(folder).items():
        d = row["details"]
        if name not in ("int8", "int8-qat", "edgetpu", "int16x8", "int8-mixed"):
            assert "layers" not in d, name
            continue
        rebuilt = name == "int8-mixed" or name == "int8" and not d["bias_correction"]["applied"]  # the debugger's files
        assert d["layer_method"] == ("debugger" if rebuilt else "interpreter"), name
        assert d["layers"] and all(LAYER_KEYS <= set(layer) for layer in d["layers"]), name
        assert [layer["index"] for layer in d["layers"]] == sorted(layer["index"] for layer in d["layers"])
        assert sorted(layer["rank"] for layer in d["layers"]) == list(range(1, len(d["layers"]) + 1))
        for layer in d["layers"]:
            assert all(math.isfinite(layer[k]) for k in ("rmse", "snr_db", "cosine", "channel_snr_db")), layer
        assert d["worst_layers"][0] == next(layer["name"] for layer in d["layers"] if layer["rank"] == 1)
        out = d["output"]
        assert out["images"] == len(out["age_float"]) == len(out["age_quantized"]) > 0
        assert 0 <= out["mean_quantization_error"] <= out["max_quantization_error"] and out["gender_flips"] >= 0
        checked.add(name)
    assert checked == expected


def test_new_integer_targets_have_their_layers(workbench):
    check_layers(workbench, {"int8", "int16x8", "int8-mixed"})


def test_qat_files_have_their_layers(converted):
    """int8-qat and edgetpu, compared with the QAT weights in float, op by op, through the interpreter."""
    check_layers(converted, {"int8", "int8-qat", "edgetpu"})
    for name in ("int8-qat", "edgetpu"):
        assert "without fake quantization" in targets(converted)[name]["details"]["layer_reference"]


def test_the_planted_fault_is_ranked_first_and_kept_in_float(workbench):
    found = targets(workbench)
    int8, mixed = found["int8"]["details"], found["int8-mixed"]["details"]
    assert int8["worst_layers"][0].startswith(PLANTED)
    assert int8["mae_delta_to_float"] > 1.0  # the fault costs years in int8
    assert mixed["within_budget"] and found["int8-mixed"]["reason"] == ""
    assert 1 <= len(mixed["kept_float"]) <= 3 and any(n.startswith(PLANTED) for n in mixed["kept_float"])
    assert mixed["search_mae"] <= mixed["search_target_mae"] and mixed["mae_delta_to_float"] < 0.5
    assert {"latency_ratio", "size_ratio", "int8_latency_ms_p50"} <= set(mixed["vs_int8"])
    assert not mixed["edgetpu"]["all_mapped"]  # float layers never map to the Edge TPU
    assert PLANTED not in {layer["name"].split("/")[0] for layer in mixed["layers"]}  # measured only where quantized


def test_int16x8_has_16_bit_activations(workbench):
    path = workbench / "age_gender_int16x8.tflite"
    assert set(activation_types(read_ops(path))) == {"int16"}
    inputs, outputs = io_types(path)
    assert inputs[0].dtype == "int16" and {o.dtype for o in outputs} == {"int16"}
    d = targets(workbench)["int16x8"]["details"]
    assert d["xnnpack"]["delegated"] == 0 and d["xnnpack"]["ops"] > 0  # reference kernels run it
    assert "mae" in d and "latency_ms_p50" in d
    # bias correction, on by default: the five convolutions have a bias (the dense heads come out without one), and
    # the converter's one zero bias tensor shared by the stem and the depthwise layer is split, each corrected
    correction = d["bias_correction"]
    assert correction["applied"] and correction["layers"] == 5 and correction["weighted_layers"] == 7, correction
    tensorflow()  # quietly, before its lite tools
    from tensorflow.lite.tools.flatbuffer_utils import read_model_from_bytearray
    model = read_model_from_bytearray(bytearray(path.read_bytes()))
    biases = [int(op.inputs[2]) for op in model.subgraphs[0].operators if len(op.inputs) > 2 and op.inputs[2] >= 0]
    assert len(biases) == len(set(biases)) == 5, biases
    stem, depthwise = (model.buffers[model.subgraphs[0].tensors[b].buffer].data for b in biases[:2])
    assert stem is not None and depthwise is not None and bytes(stem) != bytes(depthwise)


def test_int8_is_bias_corrected_unless_told_not_to(workbench, planted, faces, tmp_path):
    """Corrected (the default), int8 is compared op by op with the float file, as the file it ships; with
    --no-bias-correction it is the debugger's own int8 recipe and measured by the debugger."""
    corrected = targets(workbench)["int8"]["details"]
    assert corrected["bias_correction"] == {"applied": True, "layers": 5, "weighted_layers": 7}
    assert corrected["layer_method"] == "interpreter"
    proc = convert_planted(planted, faces, tmp_path, "--targets", "int8", "--no-bias-correction")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = targets(tmp_path)["int8"]["details"]
    assert plain["bias_correction"] == {"applied": False} and plain["layer_method"] == "debugger"
    assert "Bias correction: off (--no-bias-correction)." in (tmp_path / "convert_report.md").read_text()
    assert "Bias correction: 5 of 7 weighted layers" in (workbench / "convert_report.md").read_text()


def test_the_report_is_one_self_contained_set(workbench):
    page = (workbench / "convert_report.html").read_text()
    assert not re.search(r"https?://", page)
    assert page.count("src='data:image/png;base64,") == 2
    md = (workbench / "convert_report.md").read_text()
    for text in ("Per-layer error: int8 ", "int8-mixed: layers kept in float", "Edge TPU compatibility: int8-mixed",
                 "int16x8: 16-bit activations", "convert_snr.png", "Float against quantized"):
        assert text in md
    assert not [p.name for p in workbench.iterdir() if p.name.startswith(".staging")]  # no staging left behind


def test_an_unreachable_budget_keeps_the_best_file_and_says_so(planted, faces, tmp_path):
    """Budget 0 with at most one layer in float: the fault needs two, so the search cannot meet it."""
    proc = convert_planted(planted, faces, tmp_path, "--targets", "int8-mixed", "--budget", "0", "--max-float", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stdout.splitlines() if line.startswith("int8-mixed: over budget")]
    assert len(notes) == 1
    row = targets(tmp_path)["int8-mixed"]
    assert row["status"] == "ok" and row["reason"].startswith("over budget")
    assert row["details"]["within_budget"] is False and len(row["details"]["kept_float"]) <= 1
    assert (tmp_path / "age_gender_int8-mixed.tflite").is_file()


def test_bad_workbench_options(planted, faces, tmp_path):
    for args, message in ((["--budget", "-0.1"], "--budget"), (["--max-float", "-1"], "--max-float"),
                          (["--debug-images", "1000"], "--debug-images 1000 is more than the 40 validation faces")):
        assert_user_error(convert_planted(planted, faces, tmp_path, "--targets", "int8-mixed", *args), message)
