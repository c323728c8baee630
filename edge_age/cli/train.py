"""``edge-age train``, ``teacher``, ``models`` and ``bundle``: a model, the family's teacher,
the bundled members."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from firmware_host.errors import EdgeAgeError


def train(
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path = typer.Option(..., help="Split CSV from 'edge-age data split'."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    preset: str | None = typer.Option(None, help="Start from a preset: reference, tiny, or a family member m, s or n."),
    arch: str | None = typer.Option(None, help="mobilenet_v2, mobilenet_v3_small or mobilenet_v3_large."),
    alpha: float | None = typer.Option(None, help="Width multiplier."),
    input_size: int | None = typer.Option(None, help="Input size in pixels (square)."),
    minimalistic: bool | None = typer.Option(None, help="MobileNetV3 minimalistic (no SE, no hard-swish)."),
    head: str | None = typer.Option(None, help="Age head: ldl (label distribution) or regression."),
    cut: str | None = typer.Option(None, help="End the backbone at this layer, pooled (e.g. block_13_expand_relu: "
                                              "MobileNetV2 at stride 16, its ImageNet weights kept) [the whole "
                                              "backbone]."),
    epochs: int | None = typer.Option(None),
    batch: int | None = typer.Option(None),
    lr: float | None = typer.Option(None, help="Peak learning rate (cosine schedule with warm-up)."),
    sigma: float | None = typer.Option(None, help="Spread of the Gaussian age targets, in years."),
    weights: Path | None = typer.Option(None, help="ImageNet no-top .h5 for the backbone, or a trained model "
                                                   "(.keras) of the same architecture to start from; none = from "
                                                   "scratch."),
    augment: float | None = typer.Option(None, help="Augmentation strength (0 = none)."),
    qat_epochs: int | None = typer.Option(None, help="Quantization-aware fine-tuning epochs after float training."),
    qat_lr: float | None = typer.Option(None, help="Peak learning rate of the QAT fine-tuning."),
    patience: int | None = typer.Option(None, help="Early stopping patience on validation MAE, in epochs."),
    seed: int | None = typer.Option(None),
    strategy: str | None = typer.Option(None, help="default, mirrored or multi-worker (TF_CONFIG)."),
    soft_targets: Path | None = typer.Option(None, help="Distil from a teacher's soft_targets.npz ('edge-age "
                                                        "teacher')."),
    teacher_weight: float | None = typer.Option(None, help="Share of the teacher's age distribution in the age loss "
                                                           "[0.5]."),
    gender_teacher_weight: float | None = typer.Option(None, help="Share of the teacher's P(female) in the gender "
                                                                  "target [0.5]."),
    temperature: float | None = typer.Option(None, help="Distillation temperature [1.0]."),
    teacher_target: str | None = typer.Option(None, help="The teacher's distribution as it is (plain) or moved so "
                                                         "that its mean is the label age (recentred) [plain]."),
    expectation_weight: float | None = typer.Option(None, help="Weight of |expected age - label age| beside the "
                                                               "KL term (DLDL-v2) [0 = off]."),
    weight_decay: float | None = typer.Option(None, help="AdamW's decoupled weight decay (not on biases and "
                                                         "batch-norm) [0 = Adam]."),
    ema: float | None = typer.Option(None, help="Decay of a moving average of the weights, e.g. 0.999: the average "
                                                "is validated and saved [0 = off]."),
    mixup: float | None = typer.Option(None, help="Mixup alpha: faces, age and gender targets mixed by "
                                                  "Beta(alpha, alpha) weights [0 = off]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch."),
) -> None:
    """Train the age/gender model (float, then quantization-aware) and evaluate it on the test side."""
    from dataclasses import replace

    from edge_age.train.loop import PRESETS, TrainConfig
    from edge_age.train.loop import train as run_training
    from edge_age.train.models import ModelSpec

    if preset and preset not in PRESETS:
        raise EdgeAgeError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    config = TrainConfig(**PRESETS.get(preset or "", {}))
    given = {k: v for k, v in dict(arch=arch, alpha=alpha, input_size=input_size, minimalistic=minimalistic,
                                      head=head, cut=cut).items() if v is not None}
    spec = replace(config.spec, **given) if given else config.spec
    options = {k: v for k, v in dict(epochs=epochs, batch=batch, lr=lr, sigma=sigma, augment=augment,
                                     qat_epochs=qat_epochs, qat_lr=qat_lr, patience=patience, seed=seed,
                                     strategy=strategy,
                                     weights=str(weights) if weights else None,
                                     soft_targets=str(soft_targets) if soft_targets else None,
                                     teacher_weight=teacher_weight, gender_teacher_weight=gender_teacher_weight,
                                     temperature=temperature, teacher_target=teacher_target,
                                     expectation_weight=expectation_weight, weight_decay=weight_decay, ema=ema,
                                     mixup=mixup).items() if v is not None}
    config = replace(config, spec=ModelSpec(**spec.to_dict()).check(), **options)
    metrics = run_training(data, split, out, config, resume=resume)
    for phase in ("float", "qat"):
        if phase in metrics:
            m = metrics[phase]
            typer.echo(f"{phase}: test MAE {m['mae']:.2f}, CS@5 {m['cs5']:.1%}, "
                       f"gender {m.get('gender_accuracy', float('nan')):.1%} (n={m['n']})")
    typer.echo(f"wrote {out} in {metrics['train_minutes']} min")


def teacher(
    members: list[Path] = typer.Argument(..., help="Float .keras/.h5 models to average (each also on the mirror "
                                                   "image)."),
    data: Path | None = typer.Option(None, "--data", help="Face crops [default: $EDGE_AGE_DATA]."),
    split: Path = typer.Option(..., help="Split CSV: soft targets for its train and val sides."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for teacher.keras, soft_targets.npz, teacher.json."),
) -> None:
    """Build the teacher ensemble and store its soft targets for distillation ('edge-age train --soft-targets')."""
    from edge_age.train.teacher import make_teacher
    meta = make_teacher(members, data=data, split_path=split, out=out)
    typer.echo(f"wrote {out}/teacher.keras and soft targets of {meta['faces']} faces ({', '.join(meta['sides'])})")


def models(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list (name, default: "
                               "whether run and predict use it, files: target -> path, figures)."),
    measure: bool = typer.Option(False, "--measure", help="Also time each member's int8-qat file here (p50 of 200 "
                                 "faces, batch 1, 1 thread, after 20 untimed; two invokes a face when it averages "
                                 "the mirror image)."),
) -> None:
    """The bundled model family: each member's size, accuracy on the test split and latency; usable by name."""
    from edge_age.members import DEFAULT_MEMBER, members
    from edge_age.report.page import md_table

    family = members()
    here = _measure_here(family) if measure else {}
    if json_out:
        typer.echo(json.dumps([{**m.summary(), **({"latency_ms_p50_here": here[m.name]} if measure else {})}
                               for m in family], indent=1))
        return
    rows = []
    for m in family:
        f, t = m.facts, m.facts.get("targets", {}).get("int8-qat", {})
        p50 = f.get("latency_ms_p50", {}).get("1", t.get("latency_ms_p50", float("nan")))
        rows.append([m.name + (" (default)" if m.name == DEFAULT_MEMBER else ""), f["arch"], f["input_size"],
                     f"{f['params'] / 1e6:.2f} M", f"{f['macs'] / 1e6:.0f} M", f"{t.get('size_kb', 0):.0f} KB",
                     f"{t.get('mae', float('nan')):.2f}", f"{t.get('cs5', float('nan')):.1%}",
                     f"{t.get('gender_accuracy', float('nan')):.1%}", f"{p50:.2f}",
                     *([f"{here[m.name]:.2f}"] if measure else [])])
    typer.echo(md_table(["name", "architecture", "input", "params", "MACs", "int8 file", "MAE", "CS@5", "gender",
                         "p50 ms (1 thread, build machine)", *(["p50 ms here"] if measure else [])], rows))
    typer.echo("Figures: int8-qat file on the test split; use a name wherever a model goes, e.g. 'edge-age run -m n'.")
    typer.echo(_where_measured(family))
    if measure:
        from firmware_host.infer.system_info import describe
        system = describe()
        typer.echo(f"'p50 ms here': this machine ({system['cpu'] or system['machine']}, {system['cores']} cores), "
                   f"ai-edge-litert {system['packages'].get('ai-edge-litert', '?')}, batch 1, 1 thread, XNNPACK.")


def _where_measured(family) -> str:
    """Where the bundled latencies come from, as far as member.json records it."""
    machines = ", ".join(sorted({f"'{m.facts['latency_device']}'" if m.facts.get("latency_device")
                                 else "unnamed" for m in family}))
    return (f"Latency: p50 per face (two invokes for a mirror-averaged member), batch 1, 1 thread, on the machine "
            f"that built the family ({machines}; date and LiteRT version not recorded): other CPUs differ, "
            "'edge-age models --measure' times them here.")


def _measure_here(family) -> dict[str, float]:
    """p50 ms of each member's int8-qat file on this machine, batch 1, 1 thread."""
    import numpy as np

    from firmware_host.infer.interpreter import make_interpreter
    from firmware_host.infer.model_info import sidecar_decoding
    from firmware_host.pipeline.latency import measure
    from firmware_host.progress import track

    return {m.name: float(np.median(measure(make_interpreter(m.tflite(), threads=1), runs=200, warmup=20,
                                            invokes=sidecar_decoding(m.tflite()).runs_per_face)) * 1000)
            for m in track(family, "timing", total=len(family))}


def bundle(
    name: str = typer.Argument(..., help="The member's name (m, s or n)."),
    run_dir: Path = typer.Option(..., "--run", help="Its training run folder."),
    converted: Path = typer.Option(..., "--converted", help="Its 'edge-age convert --split' output folder."),
    copy_keras: bool = typer.Option(False, help="Copy the Keras float and QAT models into the package too."),
    bench_json: Path | None = typer.Option(None, "--bench", help="Take the CPU latency from this bench.json."),
) -> None:
    """Install a trained, converted member into the package's family folder (maintainers: 'make members-bundle')."""
    from edge_age.train.bundle import bundle_member

    facts = bundle_member(name, run=run_dir, converted=converted, copy_keras=copy_keras, bench=bench_json)
    typer.echo(f"bundled {name}: {', '.join(facts['files'])}")
