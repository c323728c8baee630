"""``edge-age bundle``: copy a trained, converted member into the package's family folder.

The member's facts (architecture, parameters, MACs, test-split accuracy and 1-thread
latency of its int8 files, training minutes) are read from its run folder and its
conversion report, so that ``edge-age models`` shows measured figures only.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edge_age.members import FAMILY_DIR
from edge_age.train.models import ModelSpec
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json

BUNDLED_TARGETS = ("int8-qat", "edgetpu")  # what the runtime-only install needs; the rest is one convert away


def macs(model) -> int:
    """Multiply-accumulates of one forward pass (convolutions, depthwise convolutions, dense layers)."""
    from converters.tf_setup import keras
    k = keras()
    total = 0
    for layer in _layers(model):
        if isinstance(layer, k.layers.DepthwiseConv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, k.layers.Conv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input_shape[-1] // layer.groups
        elif isinstance(layer, k.layers.Dense):
            total += int(layer.input_shape[-1]) * layer.units
    return int(total)


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _layers(layer)
        else:
            yield layer


def bench_latency(bench: Path, model: Path) -> dict:
    """p50 ms per CPU thread count of ``model`` (matched by SHA-256) in a ``bench.json``, and the device's name."""
    from firmware_host.files.paths import file_sha256
    try:
        record = json.loads(Path(bench).read_text(encoding="utf-8"))
        digest = file_sha256(model)
        names = {m["name"] for m in record["models"] if m.get("sha256") == digest}
        p50 = {str(r["threads"]): r["latency_ms"]["p50"] for r in record["latency"]
               if r["model"] in names and r["delegate"] == "cpu"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeAgeError(f"{bench} is not a bench.json of 'edge-age bench': {exc}") from None
    if not p50:
        raise EdgeAgeError(f"{bench} has no CPU latency of {Path(model).name} (sha256 {digest[:12]})")
    return {"latency_ms_p50": p50, "latency_device": record.get("device", {}).get("name")}


def bundle_member(name: str, *, run: Path, converted: Path, copy_keras: bool = True, bench: Path | None = None,
                  dest: Path = FAMILY_DIR) -> dict:
    """Copy ``run``'s model card, training history and curves, and ``converted``'s int8 files (with sidecars,
    their age decoding set to the one in ``run``'s ``device.json`` unless ``convert --fit-decoding`` fitted it on
    the file itself) into ``dest/name``; write member.json.

    ``copy_keras`` copies the Keras float and QAT models too; otherwise member.json points at them in ``run``
    when it lies in the folder that holds the package (the reference model; ``runs/members/NAME`` of a clone of
    the repository, which an installed package lacks), and the member ships none when it does not.
    ``bench`` takes the int8-qat file's CPU latency from a quiet ``edge-age bench`` run instead of the
    conversion report's single measurement.
    """
    from edge_age.train.model_io import load_model, read_device_facts
    from firmware_host.infer.model_info import write_age_decoding
    report_path = converted / "convert_report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeAgeError(f"cannot bundle {name}: {exc}") from None
    targets = {t["target"]: t for t in report["targets"] if t["status"] == "ok"}
    missing = [t for t in BUNDLED_TARGETS if t not in targets]
    if missing:
        raise EdgeAgeError(f"cannot bundle {name}: {converted} has no validated {', '.join(missing)} file")
    model = load_model(run / "model.keras")
    decoding = read_device_facts(run / "model.keras").get("age_decoding")
    spec = config["spec"]
    facts = {
        "arch": ModelSpec(**spec).describe(), "input_size": spec["input_size"],
        "params": int(model.count_params()), "macs": macs(model), "train_minutes": metrics.get("train_minutes"),
        "teacher": config.get("soft_targets") is not None, "validation": report["validation"],
        "accuracy": {kind: {k: report["keras"][kind][k] for k in ("mae", "cs5", "gender_accuracy")}
                     for kind in report["keras"]},
        "targets": {}, "files": {}, "keras": {},
    }
    folder = atomic.writable_dir(dest / name)
    staging = Path(str(folder) + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for target, entry in targets.items():
        d = entry["details"]
        facts["targets"][target] = {k: d.get(k) for k in ("mae", "cs5", "gender_accuracy", "size_kb", "latency_ms_p50")}
        if target in BUNDLED_TARGETS:
            for suffix in (".tflite", ".json"):
                shutil.copy2(converted / Path(entry["file"]).with_suffix(suffix), staging)
            if not d.get("age_decoding_fitted_on_file"):  # convert --fit-decoding's stays, with its figures
                write_age_decoding(staging / entry["file"], decoding)  # the run's, fitted after conversion or not
            facts["files"][target] = entry["file"]
    for src in ("MODEL_CARD.md", "device.json", "history_float.csv", "history_qat.csv", "curves.png"):
        if (run / src).is_file():
            shutil.copy2(run / src, staging)
    beside_package = dest.resolve().parent.parent in (run / "x").resolve().parents  # a clone's runs/ or the package
    for kind, file in (("float", "model.keras"), ("qat", "qat.h5")):
        if copy_keras:
            shutil.copy2(run / file, staging)
            facts["keras"][kind] = file
        elif beside_package:
            facts["keras"][kind] = os.path.relpath((run / file).resolve(), folder.resolve())
    if bench:
        facts.update(bench_latency(bench, staging / Path(facts["files"]["int8-qat"]).name))
    write_json(staging / "member.json", facts)
    old = Path(str(folder) + ".old")
    shutil.rmtree(old, ignore_errors=True)
    folder.replace(old)
    staging.replace(folder)
    shutil.rmtree(old, ignore_errors=True)
    return facts
