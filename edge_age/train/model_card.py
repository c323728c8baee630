"""``MODEL_CARD.md``: what a trained model is, what it was trained on, how well it does."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edge_age.report.page import md_table
from edge_age.train.model_io import is_trained_model
from firmware_host.files import atomic

PACKAGES = ("edge-age", "tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "opencv-python-headless")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _metrics_rows(metrics: dict) -> list[list]:
    rows = []
    for phase in ("float", "qat"):
        m = metrics.get(phase)
        if m:
            rows.append([phase, m["n"], f"{m['mae']:.2f}", f"{m['cs5']:.1%}", f"{m['epsilon_error']:.3f}",
                         f"{m.get('gender_accuracy', float('nan')):.1%}", f"{m.get('gender_auc', float('nan')):.3f}"])
    return rows


def _breakdown_rows(m: dict) -> list[list]:
    rows = []
    for kind, groups in m["breakdown"].items():
        for name, g in groups.items():
            rows.append([kind, name, g["n"], f"{g['mae']:.2f}", f"{g['cs5']:.1%}",
                         f"{g['gender_accuracy']:.1%}" if "gender_accuracy" in g else "-"])
    return rows


def recipe_table(config) -> str:
    """The training recipe in words: loss, targets, optimizer, weight averaging, mixup."""
    loss = (f"KL divergence to a Gaussian label distribution of sigma {config.sigma} years"
            if config.spec.head == "ldl" else "Huber loss (delta 5 years) on the age")
    if config.soft_targets:
        target = "re-centred on the label age" if config.teacher_target == "recentred" else "as it is"
        loss += (f", mixed with the teacher's distribution ({target}) at weight {config.teacher_weight} and "
                 f"temperature {config.temperature}; gender target {config.gender_teacher_weight} teacher")
    if config.expectation_weight:
        loss += f"; plus {config.expectation_weight} x L1 of the expected age against the label age"
    optimizer = f"AdamW, weight decay {config.weight_decay}" if config.weight_decay else "Adam"
    averaging = f"moving average of the weights (decay {config.ema}) validated and saved" if config.ema else "none"
    mixup = f"Beta({config.mixup}, {config.mixup})" if config.mixup else "none"
    start = (f"the trained model `{Path(config.weights).name}`" if is_trained_model(config.weights)
             else f"ImageNet backbone `{Path(config.weights).name}`" if config.weights else "random weights")
    rows = [["start", start], ["age loss", loss], ["optimizer", optimizer], ["weight averaging", averaging],
            ["mixup", mixup]]
    return md_table(["recipe", "value"], rows)


def write_model_card(run: Path, config, metrics: dict, data, *, split_path: Path, fingerprint: str) -> Path:
    """Write ``run/MODEL_CARD.md`` from the run's config and metrics."""
    spec = config.spec
    best = metrics.get("qat") or metrics["float"]
    lines = [
        f"# Model card: {spec.describe()}, {spec.input_size}x{spec.input_size}, {spec.head} age head\n",
        "Face age (expected value of a distribution over 0..116 years) and gender (sigmoid) from an aligned "
        "RGB face crop, scaled to [-1, 1] outside the graph. For research and on-device benchmarking; "
        "not for decisions about people.\n",
        "## Data\n",
        md_table(["what", "value"], [["dataset", f"`{Path(str(data)).name}`"], ["data fingerprint", fingerprint[:16]],
                                     ["split file", f"`{split_path.name}`"],
                                     ["split sha256", metrics["split_sha256"][:16]]]),
        "## Recipe\n",
        recipe_table(config),
        "## Hyper-parameters\n",
        md_table(["name", "value"], [[k, v] for k, v in config.to_dict().items() if k != "spec"]
                 + [[f"spec.{k}", v] for k, v in spec.to_dict().items()]),
        "## Test metrics\n",
        md_table(["model", "n", "MAE", "CS@5", "epsilon", "gender acc.", "gender AUC"], _metrics_rows(metrics)),
        f"Training time: {metrics['train_minutes']} min (the epochs' wall time, float and QAT, over every process).\n",
        "## By age group, gender and race (" + ("QAT" if "qat" in metrics else "float") + " model)\n",
        md_table(["by", "group", "n", "MAE", "CS@5", "gender acc."], _breakdown_rows(best)),
        "## Versions\n",
        md_table(["package", "version"], [[k, v] for k, v in versions().items()]),
        "## Limits\n",
        "UTKFace labels are partly noisy (duplicate images with conflicting labels exist; see `edge-age data audit`); "
        "ages over 80 are rare, so errors there are large; race labels are coarse and self-reported by nobody.\n",
    ]
    return atomic.write_text(run / "MODEL_CARD.md", "\n".join(lines))
