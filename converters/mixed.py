"""``int8-mixed``: post-training int8 with the fewest layers kept in float that bring the MAE within a budget.

Accuracy-controlled selective quantization, in the manner of OpenVINO NNCF: the candidates are the layers the
debugger ranks worst (lowest SNR first). Keeping a layer in float keeps its output tensor in float, so the layer
and the ops that read that tensor run in float (``denylisted_nodes``): a tensor whose range was stretched by an
outlier is then never rounded to 8 bits. Each step is verified by the real MAE of the file on the search faces and
kept only when it lowers the MAE by ``MIN_GAIN`` or more. Once the budget is met, each float op is tried back in
int8 and left there when the budget still holds. The search stops at the budget, when ``max_float`` ops are in
float, or after ``MAX_TRIES`` candidates; a budget it cannot meet leaves the best file found, marked over budget.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from converters.layer_error import Int8Debugger
from firmware_host.progress import track

log = logging.getLogger(__name__)
MAX_TRIES = 24     # candidates tried at most, worst first
MIN_GAIN = 0.005   # years of MAE a step must win to be kept
BASE = "(pure int8)"


@dataclass
class Step:
    """One verified file of the search."""

    layer: str             # the candidate (short name), or what the step did
    float_ops: list[str]   # the ops in float in this file (short names)
    mae: float
    kept: bool


@dataclass
class Outcome:
    """The file the search settled on and how it got there."""

    model: bytes
    kept_float: list[str]  # tensor names of the ops kept in float
    kept_names: list[str]  # the same, short names
    mae: float             # on the search faces
    target_mae: float      # the float model's MAE there plus the budget
    steps: list[Step]

    @property
    def within_budget(self) -> bool:
        return self.mae <= self.target_mae

    def to_dict(self) -> dict:
        return {"kept_float": self.kept_names, "kept_float_tensors": self.kept_float, "search_mae": self.mae,
                "search_target_mae": self.target_mae, "within_budget": self.within_budget,
                "steps": [asdict(s) for s in self.steps]}


@dataclass
class Search:
    """How to judge a candidate file: its MAE on the search faces against ``target_mae``.

    ``debugger`` may be given to share one calibration with the ``int8`` analysis; the outcome stays in ``outcome``.
    """

    score: Callable[[bytes], float]
    target_mae: float
    images: np.ndarray
    max_float: int = 8
    debugger: Int8Debugger | None = None
    outcome: Outcome | None = field(default=None, init=False)

    def run(self, source: Path, calibration) -> Outcome:
        if self.debugger is None:
            self.debugger = Int8Debugger(source, calibration, self.images)
        debugger = self.debugger
        layers = debugger.layers(description="int8 per-layer error")
        names = {layer.tensor: layer.name for layer in layers}
        kept: list[str] = []
        best_model = debugger.base
        best = self.score(best_model)
        steps = [Step(BASE, [], best, True)]
        candidates = sorted(layers, key=lambda layer: layer.rank)[:MAX_TRIES]
        for layer in track(candidates, "int8-mixed search", total=len(candidates)):
            if best <= self.target_mae:
                break
            ops = [t for t in (layer.tensor, *debugger.readers.get(layer.tensor, [])) if t not in kept]
            if not ops or len(kept) + len(ops) > self.max_float:
                continue
            trial = kept + ops
            candidate = debugger.quantized(trial)
            mae = self.score(candidate)
            better = mae <= best - MIN_GAIN
            steps.append(Step(layer.name, [names.get(t, t) for t in trial], mae, better))
            log.info("int8-mixed: %s in float -> MAE %.3f (%s)", layer.name, mae, "kept" if better else "dropped")
            if better:
                kept, best, best_model = trial, mae, candidate
        if best <= self.target_mae:
            for op in list(kept):
                trial = [t for t in kept if t != op]
                candidate = debugger.quantized(trial)
                mae = self.score(candidate)
                back = mae <= self.target_mae
                steps.append(Step(f"{names.get(op, op)} back to int8", [names.get(t, t) for t in trial], mae, back))
                if back:
                    kept, best, best_model = trial, mae, candidate
        self.outcome = Outcome(best_model, kept, [names.get(t, t) for t in kept], best, self.target_mae, steps)
        return self.outcome
