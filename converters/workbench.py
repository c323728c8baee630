"""The quantization workbench of one ``edge-age convert`` run: the float reference files, each integer file's
per-layer error (``converters.layer_error``), float against quantized at the output, and the int8-mixed search
(``converters.mixed``)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from converters.layer_error import DEBUGGER, INTERPRETER, Int8Debugger, age_agreement, compare_files, float_twin, worst
from converters.mixed import Search
from converters.sources import Sources, export_saved_model
from converters.targets import float32

log = logging.getLogger(__name__)
REFERENCES = {"float": "the float model as a float32 file",
              "qat": "the QAT model's weights without fake quantization, as a float32 file"}
METHODS = {DEBUGGER: "QuantizationDebugger: each op beside its float twin on the same dequantized inputs "
                     "(the error the op adds by itself), on the int8 recipe rebuilt under the debugger",
           INTERPRETER: "interpreter: each op's output against the same op in the float reference file "
                        "(the error accumulated up to that op)"}


class Workbench:
    """What the integer targets of a run share: debug images, float references, the int8 debugger."""

    def __init__(self, sources: Sources, calibration: Callable, images: np.ndarray, staging: Path, *,
                 search_images: np.ndarray, search_ages: np.ndarray, float_search_mae: float, budget: float,
                 max_float: int):
        self.sources, self.calibration, self.images, self.staging = sources, calibration, images, staging
        self.search_images, self.search_ages = search_images, search_ages
        self.float_search_mae, self.budget, self.max_float = float_search_mae, budget, max_float
        self._references: dict[str, Path] = {}
        self._debugger: Int8Debugger | None = None

    def debugger(self) -> Int8Debugger:
        if self._debugger is None:
            self._debugger = Int8Debugger(self.sources["float"], self.calibration, self.images)
        return self._debugger

    def reference(self, source: str) -> Path:
        """The float32 file a target made from ``source`` ("float" or "qat") is compared with."""
        if source not in self._references:
            models = self.sources.models
            exported = (self.sources["float"] if source == "float" else
                        export_saved_model(float_twin(models["qat"], models["float"]), self.staging / "source_twin"))
            path = self.staging / f"reference_{source}.tflite"
            path.write_bytes(float32(exported))
            self._references[source] = path
        return self._references[source]

    def search(self) -> Search:
        """The int8-mixed search: MAE on the search faces within ``budget`` years of the float model's."""
        return Search(self._search_mae, self.float_search_mae + self.budget, self.images, max_float=self.max_float,
                      debugger=self.debugger())

    def _search_mae(self, model: bytes) -> float:
        from firmware_host.infer.predictor import predict_tflite
        path = self.staging / "search.tflite"
        path.write_bytes(model)
        return float(np.mean(np.abs(predict_tflite(path, self.search_images)[0] - self.search_ages)))

    def analyse(self, name: str, source: str, path: Path, kept_float: list[str] | None = None, *,
                corrected: bool = False) -> dict:
        """Per-layer error of the file ``path`` of target ``name`` and its agreement with the float reference. The
        debugger's method describes int8-mixed and an uncorrected int8 file (the files it rebuilds); a
        bias-corrected file is not one of them, so it is compared op by op with the float reference file."""
        from firmware_host.infer.predictor import predict_tflite
        if name == "int8-mixed" or name == "int8" and not corrected:
            method = DEBUGGER
            layers = self.debugger().layers(kept_float or (), description=f"{name} per-layer error")
        else:
            method = INTERPRETER
            layers = compare_files(path, self.reference(source), self.images, description=f"{name} per-layer error")
        reference = self.reference(source)
        agreement = age_agreement(predict_tflite(reference, self.images), predict_tflite(path, self.images))
        top = worst(layers)
        if top:
            log.info("%s: worst layer %s (SNR %.1f dB)", name, top[0].name, top[0].snr_db)
        return {"layer_method": method, "layer_method_text": METHODS[method], "layer_reference": REFERENCES[source],
                "layers": [layer.to_dict() for layer in layers], "worst_layers": [layer.name for layer in top],
                "output": agreement}
