"""The runtime's own log lines (LiteRT's XNNPACK line, TensorFlow's absl/CUDA lines) are hidden by default and come
back with ``edge-age --verbose``. Real CLI runs on a real face with the bundled model."""
from __future__ import annotations

from tests.conftest import UTK64, UTK200, copy_slice, run_cli, sample_names

NOISE = ("XNNPACK", "cuda", "absl", "oneDNN")


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(word.lower() in line.lower() for word in NOISE)]


def test_predict_is_quiet_unless_verbose(tmp_path):
    image = sorted(UTK200.iterdir())[0]
    proc = run_cli("predict", image, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 of 1 images with a face" in proc.stdout and not noise(proc.stderr), proc.stderr
    proc = run_cli("--verbose", "predict", image, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in proc.stderr


def test_a_tensorflow_command_is_quiet_unless_verbose(tmp_path, monkeypatch):
    """evaluate of the bundled Keras reference model imports TensorFlow and runs ops with it."""
    from edge_age.train.models import reference_model
    data = copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 4))
    labels = tmp_path / "labels.csv"
    labels.write_text("file,age,gender\n" + "".join(f"{p.name},{p.name.split('_')[0]},{p.name.split('_')[1]}\n"
                                                    for p in sorted(data.iterdir())))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the test session sets it; a user's shell does not
    args = ("evaluate", reference_model("float"), "--data", data, "--labels", labels)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "n=4" in proc.stdout and not noise(proc.stderr), proc.stderr
    proc = run_cli("-v", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any("cuda" in line.lower() for line in noise(proc.stderr)), proc.stderr
