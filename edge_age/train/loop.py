"""``edge-age train``: float training, then quantization-aware fine-tuning, resumable.

A run folder holds ``config.json``, ``history.csv``, ``curves.png``, the best float
model ``model.keras``, the QAT model ``qat.h5`` (HDF5: a QAT ``.keras`` does not
load back), ``metrics.json`` and ``MODEL_CARD.md``. ``backup/`` keeps the state of
an unfinished phase so that ``--resume`` continues from the last finished epoch.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from converters.tf_setup import keras, tensorflow
from edge_age.data.faceset import data_path, load_faces, native_size
from edge_age.data.pipeline import TEACHER_TARGETS, make_dataset
from edge_age.data.soft_targets import SoftTargets, read_soft_targets
from edge_age.data.split import Split, read_split
from edge_age.train.losses import age_loss_and_metric, gender_accuracy, ldl_loss
from edge_age.train.model_io import load_model, quantize, save_model, start_model, write_device_facts
from edge_age.train.models import ModelSpec
from edge_age.train.optimizers import AveragedValidation, averaged_weights, make_optimizer
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json
from firmware_host.files.paths import file_sha256
from firmware_host.infer.contract import head_of, output_key
from firmware_host.logs import STATUS

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (written to ``config.json``)."""

    spec: ModelSpec = field(default_factory=ModelSpec)
    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    sigma: float = 2.0
    augment: float = 1.0
    weights: str | None = None
    qat_epochs: int = 0
    qat_lr: float = 1e-4
    patience: int = 8
    seed: int = 0
    strategy: str = "default"
    soft_targets: str | None = None   # a teacher's soft_targets.npz: distil from it
    teacher_weight: float = 0.5       # share of the teacher's distribution in the age loss
    gender_teacher_weight: float = 0.5  # share of the teacher's P(female) in the gender target
    temperature: float = 1.0
    teacher_target: str = "plain"     # plain, or recentred: the teacher's distribution moved onto the label's mean
    expectation_weight: float = 0.0   # weight of |expected age - label age| beside the KL term (DLDL-v2)
    weight_decay: float = 0.0         # AdamW's decoupled weight decay; 0 = Adam
    ema: float = 0.0                  # decay of the weights' moving average, validated and saved; 0 = off
    mixup: float = 0.0                # alpha of mixup's Beta(alpha, alpha) weights; 0 = off

    def to_dict(self) -> dict:
        return {**asdict(self), "spec": self.spec.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{**d, "spec": ModelSpec(**d["spec"])})

    def check(self) -> TrainConfig:
        if not (0.0 <= self.teacher_weight <= 1.0 and 0.0 <= self.gender_teacher_weight <= 1.0):
            raise EdgeAgeError("the teacher weights must lie in 0..1")
        if not self.temperature > 0:
            raise EdgeAgeError(f"the temperature must be positive, not {self.temperature}")
        if self.teacher_target not in TEACHER_TARGETS:
            raise EdgeAgeError(f"unknown teacher target {literal(self.teacher_target)}; choose from "
                               f"{', '.join(TEACHER_TARGETS)}")
        if self.teacher_target != "plain" and not self.soft_targets:
            raise EdgeAgeError(f"a {self.teacher_target} teacher target needs a teacher: pass {{}}",
                               option="--soft-targets", parameter="soft_targets")
        if self.spec.head != "ldl" and (self.soft_targets or self.expectation_weight):
            raise EdgeAgeError("distillation and the expectation term need the ldl age head")
        for name in ("expectation_weight", "weight_decay", "mixup"):
            if not getattr(self, name) >= 0:
                raise EdgeAgeError(f"{{}} must not be negative, not {getattr(self, name)}",
                                   option="--" + name.replace("_", "-"), parameter=name)
        if not 0 <= self.ema < 1:
            raise EdgeAgeError(f"{{}} is the decay of the weights' moving average, in 0..1 (0 = off), not {self.ema}",
                               option="--ema", parameter="ema")
        return self


@dataclass
class Arrays:
    """One side of the split as arrays."""

    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    races: np.ndarray
    files: list[str]


def split_arrays(data, split: Split, size: int) -> tuple[dict[str, Arrays], str]:
    """Images and labels of each side of ``split`` read from ``data`` through the cache, and the data fingerprint."""
    faces = load_faces(data, size=size)
    index = faces.index()
    missing = [r.file for r in split.rows if r.file not in index]
    if missing:
        raise EdgeAgeError(f"the split file does not match {faces.root}: {len(missing)} of its files are not there "
                           f"(first: {missing[0]})")
    out = {}
    for side in ("train", "val", "test"):
        rows = split.side(side)
        idx = np.array([index[r.file] for r in rows], dtype=np.int64)
        out[side] = Arrays(np.asarray(faces.images[idx]) if len(idx) else np.zeros((0, size, size, 3), np.uint8),
                           np.array([r.age for r in rows]), np.array([r.gender for r in rows]),
                           np.array([r.race for r in rows]), [r.file for r in rows])
    return out, faces.fingerprint


def _strategy(name: str):
    tf = tensorflow()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not tf.config.list_physical_devices("GPU"):  # two logical CPUs, so that there is something to mirror
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            except RuntimeError:
                pass  # already initialised: use what exists
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise EdgeAgeError(f"unknown strategy {name!r}; choose default, mirrored or multi-worker")


def output_keys(model) -> list[str]:
    """Keys of the model's outputs: its dict keys, else its output names (which QAT prefixes with ``quant_``)."""
    return list(model.output) if isinstance(model.output, dict) else list(model.output_names)


def compile_model(model, config: TrainConfig, lr) -> None:
    """Compile with the age and gender losses (distilling when the config has soft targets) and the recipe's
    optimizer, keyed by the outputs."""
    names = output_keys(model)
    age_name, gender_name = output_key(names, "age"), output_key(names, "gender")
    loss, metric = age_loss_and_metric(config.spec.head)
    if config.spec.head == "ldl":
        loss = ldl_loss(config.teacher_weight if config.soft_targets else 0.0, config.temperature,
                        expectation_weight=config.expectation_weight)
    model.compile(optimizer=make_optimizer(lr, weight_decay=config.weight_decay, ema=config.ema),
                  loss={age_name: loss, gender_name: "binary_crossentropy"},
                  weighted_metrics={age_name: [metric], gender_name: [gender_accuracy()]})


def rekey(ds, output_names):
    """Rename the pipeline's ``age``/``gender`` keys to the model's output keys."""
    mapping = {head_of(n): n for n in output_names}
    if all(k == v for k, v in mapping.items()):
        return ds
    return ds.map(lambda x, y, w: (x, {mapping[k]: v for k, v in y.items()}, {mapping[k]: v for k, v in w.items()}))


class BestWeights:
    """Keras callback factory: keep the weights of the epoch with the lowest validation MAE, atomically (the
    moving average of the weights when the optimizer keeps one: what was validated)."""

    def __new__(cls, path: Path):
        k = keras()

        class _Best(k.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best = np.inf
                if path.with_suffix(".json").is_file():
                    self.best = json.loads(path.with_suffix(".json").read_text())["val_mae"]

            def on_epoch_end(self, epoch, logs=None):
                val = val_mae(logs or {})
                if val is not None and val < self.best:
                    self.best = val
                    with atomic.atomic_path(path) as tmp, averaged_weights(self.model):
                        self.model.save_weights(str(tmp))
                    write_json(path.with_suffix(".json"), {"epoch": epoch + 1, "val_mae": val}, indent=None)

        return _Best()


class EpochSeconds:
    """Keras callback factory: the wall time of each epoch (training and validation) as ``seconds`` in its logs."""

    def __new__(cls):
        k = keras()

        class _Seconds(k.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    logs["seconds"] = round(time.perf_counter() - self.started, 2)

        return _Seconds()


def val_mae(logs: dict) -> float | None:
    keys = [k for k in logs if k.startswith("val_") and "mae_years" in k]
    return float(logs[keys[0]]) if keys else None


def _fit(model, config: TrainConfig, arrays, run: Path, phase: str, *, epochs: int, lr: float, strategy,
         teacher: SoftTargets | None = None):
    """One training phase with backup/resume, best-weights checkpoint, early stopping and a CSV log."""
    k = keras()

    def dataset(side: str, hard_labels: bool = False, **options):
        """Validation scores against the labels alone (the distillation loss then reduces to its label term)."""
        a = arrays[side]
        soft = dict(teacher=teacher.rows(a.files), gender_weight=config.gender_teacher_weight,
                    temperature=config.temperature, teacher_target=config.teacher_target) \
            if teacher and not hard_labels else {}
        return rekey(make_dataset(a.images, a.ages, a.genders, sigma=config.sigma, max_age=config.spec.max_age,
                                  label_age_column=config.expectation_weight > 0, **soft, **options),
                     output_keys(model))

    train = dataset("train", batch_size=config.batch, training=True, augment=config.augment, seed=config.seed,
                    mixup=config.mixup)
    val = dataset("val", batch_size=256, hard_labels=True)
    steps = max(int(np.ceil(len(arrays["train"].ages) / config.batch)) * epochs, 1)
    warmup = steps // 20 if phase == "float" else 0
    schedule = k.optimizers.schedules.CosineDecay(lr if not warmup else 0.0, steps - warmup, alpha=0.01,
                                                  warmup_target=lr if warmup else None, warmup_steps=warmup)
    with strategy.scope():
        compile_model(model, config, schedule)
    metric = age_loss_and_metric(config.spec.head)[1].__name__
    monitor = f"val_{output_key(model.output_names, 'age')}_{metric}"  # logs use output names
    callbacks = [
        k.callbacks.BackupAndRestore(str(run / "backup" / phase), delete_checkpoint=True),
        AveragedValidation(),
        EpochSeconds(),
        BestWeights(run / f"best_{phase}.h5"),
        k.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, mode="min"),
        k.callbacks.CSVLogger(str(run / f"history_{phase}.csv"), append=True),
        k.callbacks.TerminateOnNaN(),
    ]
    model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks,
              verbose=1 if sys.stdout.isatty() else 2)
    model.load_weights(str(run / f"best_{phase}.h5"))


def _prepare_run(run: Path, config: TrainConfig, resume: bool) -> TrainConfig:
    run = atomic.writable_dir(run)
    saved = run / "config.json"
    if resume:
        if not saved.is_file():
            raise EdgeAgeError(f"nothing to resume in {run}: no config.json")
        return TrainConfig.from_dict(json.loads(saved.read_text()))
    if saved.is_file():
        raise EdgeAgeError(f"{literal(run)} already holds a run: pass {{}} to "
                           f"continue it, or choose another {{}}",
                           option=("--resume", "--out"), parameter=("resume=True", "out"))
    return config


def _start_weights(run: Path, config: TrainConfig, resume: bool) -> str | None:
    """The pretrained weights the model is built with: none when a resumed run restores its own (its float model,
    or a backup of a finished float epoch); a run killed before its first epoch ended starts over from them."""
    restored = (run / "model.keras").is_file() or any((run / "backup" / "float").rglob("checkpoint"))
    return None if resume and restored else config.weights


PRESETS = {
    "reference": dict(spec=ModelSpec("mobilenet_v2", 1.0, 96), epochs=24, qat_epochs=3, lr=1e-3, qat_lr=3e-5),
    "tiny": dict(spec=ModelSpec("mobilenet_v2", 0.35, 32), epochs=1, batch=16, qat_epochs=1, patience=2),
    # the family's students (MobileNetV2 1.0 keeps its ImageNet weights at every input size); m is the reference
    "s": dict(spec=ModelSpec("mobilenet_v2", 1.0, 64), epochs=10, qat_epochs=2, lr=1e-3, qat_lr=3e-5),
    "n": dict(spec=ModelSpec("mobilenet_v2", 1.0, 48), epochs=12, qat_epochs=2, lr=1e-3, qat_lr=3e-5),
}


def train(data, split_path: Path, run: Path, config: TrainConfig, resume: bool = False) -> dict:
    """Train (float, then QAT when ``config.qat_epochs``), evaluate on the test side, write the run folder."""
    from edge_age.eval.correction import fit_after_training
    from edge_age.eval.evaluation import evaluate_arrays
    from edge_age.report.train_plots import read_history, training_curves, training_minutes
    from edge_age.train.model_card import write_model_card

    data = data_path(data)  # $EDGE_AGE_DATA when not given: the model card names what was read
    split = read_split(split_path)
    config = _prepare_run(run, config.check(), resume)
    arrays, fingerprint = split_arrays(data, split, config.spec.input_size)
    if not len(arrays["train"].ages) or not len(arrays["val"].ages):
        raise EdgeAgeError("the split has no train or no validation images")
    teacher = (read_soft_targets(Path(config.soft_targets), data_fingerprint=fingerprint,
                                 split_sha256=file_sha256(split_path)) if config.soft_targets else None)
    keras().utils.set_random_seed(config.seed)
    started = time.time()
    metrics: dict = {}
    strategy = _strategy(config.strategy)
    metrics["replicas"] = int(strategy.num_replicas_in_sync)
    log.info("strategy %s: %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync, extra=STATUS)
    with strategy.scope():
        model = start_model(config.spec, _start_weights(run, config, resume))
    write_json(run / "config.json", config.to_dict())
    write_device_facts(run, config.spec, native_size(data))
    if not (run / "model.keras").is_file():
        _fit(model, config, arrays, run, "float", epochs=config.epochs, lr=config.lr, strategy=strategy,
             teacher=teacher)
        save_model(model, run / "model.keras")
    model = load_model(run / "model.keras")
    held_out = "test" if len(arrays["test"].ages) else "val"
    metrics["evaluated_on"] = held_out
    metrics["float"] = evaluate_arrays(model, arrays[held_out])
    metrics["validation"] = {"float": evaluate_arrays(model, arrays["val"])}  # what choices are made on
    if config.qat_epochs > 0:
        with strategy.scope():
            qat = quantize(model)
        if not (run / "qat.h5").is_file():
            _fit(qat, config, arrays, run, "qat", epochs=config.qat_epochs, lr=config.qat_lr, strategy=strategy,
                 teacher=teacher)
            save_model(qat, run / "qat.h5")
        qat = load_model(run / "qat.h5")
        metrics["qat"] = evaluate_arrays(qat, arrays[held_out])
        metrics["validation"]["qat"] = evaluate_arrays(qat, arrays["val"])
    metrics["train_minutes"] = training_minutes(read_history(run)) or round((time.time() - started) / 60, 2)
    metrics["split_sha256"] = file_sha256(split_path)
    write_json(run / "metrics.json", metrics)
    training_curves(run)
    write_model_card(run, config, metrics, data, split_path=split_path, fingerprint=fingerprint)
    shutil.rmtree(run / "backup", ignore_errors=True)
    fit_after_training(run / "model.keras", model, arrays["val"], split_path)
    return metrics
