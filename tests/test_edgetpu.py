"""Graph reading and Edge TPU readiness on real .tflite files of a tiny MobileNetV2, and the compiler wrapper."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import stat
import subprocess
import sys
import textwrap

import pytest

from converters.edgetpu import (
    DATA_TYPE,
    MAPPED,
    check,
    compile_edgetpu,
)
from firmware_host.errors import EdgeAgeError
from firmware_host.infer.graph import EIGHT_BIT, activations, integer_only, io_types, op_counts, read_ops
from tests.conftest import ROOT

INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "LOGISTIC", "QUANTIZE", "SOFTMAX"}


@pytest.fixture(scope="module")
def tiny(converted) -> dict:
    """The tiny trained model as int8-qat, edgetpu and float32 files, made by `edge-age convert`."""
    return {name: converted / f"age_gender_{name}.tflite" for name in ("int8-qat", "edgetpu", "float32")}


@pytest.mark.parametrize("name", ["int8-qat", "edgetpu"])
def test_int8_graphs_are_integer_only(tiny, name):
    ops = read_ops(tiny[name])
    assert set(op_counts(ops)) <= INT8_OPS
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "LOGISTIC"} <= set(op_counts(ops))
    assert integer_only(ops)
    assert {t.dtype for t in activations(ops)} <= EIGHT_BIT
    assert all(t.dtype in EIGHT_BIT | {"int32"} for op in ops for t in op.inputs if t.constant)


def test_op_counts_add_up(tiny):
    ops = read_ops(tiny["int8-qat"])
    assert sum(op_counts(ops).values()) == len(ops)
    assert [op.index for op in ops] == list(range(len(ops)))
    assert "DELEGATE" not in op_counts(ops)  # the XNNPACK node is not part of the file


def test_edgetpu_file_takes_uint8_and_maps_fully(tiny):
    inputs, outputs = io_types(tiny["edgetpu"])
    assert [t.dtype for t in inputs] == ["uint8"]
    assert inputs[0].shape == (1, 32, 32, 3)
    assert inputs[0].scale == pytest.approx(2 / 255, rel=0.01)  # raw pixels 0..255 for a [-1, 1] model
    assert {t.dtype for t in outputs} == {"uint8"}
    result = check(tiny["edgetpu"])
    assert result.all_mapped and result.first_unmapped is None
    assert {s for _, _, s in result.summary()} == {MAPPED}
    assert "| CONV_2D | 35 | Mapped to Edge TPU |" in result.to_markdown()


def test_int8_qat_file_is_int8_at_both_ends(tiny):
    inputs, outputs = io_types(tiny["int8-qat"])
    assert {t.dtype for t in (*inputs, *outputs)} == {"int8"}
    assert all(t.scale > 0 for t in (*inputs, *outputs))
    assert check(tiny["int8-qat"]).all_mapped


def test_float_file_is_cut_at_the_first_op(tiny):
    ops = read_ops(tiny["float32"])
    assert not integer_only(ops)
    assert io_types(tiny["float32"])[0][0].scale == 0
    result = check(tiny["float32"])
    assert not result.all_mapped
    assert result.first_unmapped == 0
    assert result.ops[0].reason == DATA_TYPE and "float32" in result.ops[0].detail
    report = result.to_dict()
    assert report["all_mapped"] is False and report["first_unmapped"] == 0
    assert sum(row["count"] for row in report["summary"]) == len(ops)


def test_graph_module_needs_no_tensorflow(tiny):
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf_keras"):
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        from firmware_host.infer.graph import op_counts, read_ops
        from converters.edgetpu import check
        print(op_counts(read_ops(sys.argv[1]))["CONV_2D"], check(sys.argv[1]).all_mapped)
        assert not any(m.split(".")[0] in ("tensorflow", "tf_keras") for m in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(tiny["edgetpu"])], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["35", "True"]


def _stand_in(folder, body: str):
    """An executable named edgetpu_compiler in ``folder`` (argv: -s -o OUT MODEL)."""
    folder.mkdir(exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_compile_without_compiler_gives_the_command(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = compile_edgetpu(tiny["edgetpu"], tmp_path / "out")
    assert not result.compiled and result.model is None
    assert result.command.startswith("edgetpu_compiler -s -o ")
    assert str(tiny["edgetpu"]) in result.command
    assert not (tmp_path / "out").exists()


def test_compile_with_stand_in(tiny, tmp_path, monkeypatch):
    bin_dir = _stand_in(tmp_path / "bin", """
        stem=$(basename "$4" .tflite)
        echo "Edge TPU Compiler version 16.0 (stand-in)"
        cp "$4" "$3/${stem}_edgetpu.tflite"
        echo "Model compiled successfully" >&2
    """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = compile_edgetpu(tiny["edgetpu"], tmp_path / "out")
    assert result.compiled
    stem = tiny["edgetpu"].stem
    assert result.model == tmp_path / "out" / f"{stem}_edgetpu.tflite"
    assert result.model.read_bytes() == tiny["edgetpu"].read_bytes()
    assert result.log == tmp_path / "out" / f"{stem}_edgetpu.log"
    assert result.log.read_text().splitlines() == ["Edge TPU Compiler version 16.0 (stand-in)",
                                                   "Model compiled successfully"]


def test_compile_failure_raises_with_the_last_line(tiny, tmp_path, monkeypatch):
    bin_dir = _stand_in(tmp_path / "bin", """
        echo "Edge TPU Compiler version 16.0 (stand-in)"
        echo "Compilation failed: stand-in refuses" >&2
        exit 1
    """)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(EdgeAgeError, match="Compilation failed: stand-in refuses"):
        compile_edgetpu(tiny["edgetpu"], tmp_path / "out")
    assert (tmp_path / "out" / f"{tiny['edgetpu'].stem}_edgetpu.log").is_file()
