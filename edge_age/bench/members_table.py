"""The table of teacher networks and members: what each is, what its training cost, how accurate each of its forms
is on the test split, and how fast its int8-qat file runs in one bench.

    edge-age members-table --teacher NAME=RUN ... --member NAME=RUN[:CONVERTED] ... --file NAME=TFLITE ...
        --bench BENCH_JSON --out FOLDER

Every figure is read from what the project already wrote: a training run folder (``config.json``: architecture
and input size; ``model.keras``: parameters and MACs; ``history_float.csv`` and ``history_qat.csv``: the epochs
run and their wall time, the train minutes; ``metrics.json``: the float and QAT models' figures on the test side, the
train minutes of a run without history), the folder of its
``edge-age convert --split`` (``convert_report.json``: the int8-qat and int8 files' figures on the test split)
and a ``bench.json`` of ``edge-age bench`` (CPU p50 of each member's int8-qat file, found by its SHA-256). A file
with no run folder (``--file``, such as a member's file from an older commit) gets its row from the bench alone:
its accuracy as the bench scored it (with ``--split``) under its sidecar's target. Writes ``members_table.md``
and ``members_table.json`` into FOLDER as one set.
"""
from __future__ import annotations

from pathlib import Path

from edge_age.report.page import md_table
from edge_age.report.train_plots import read_history, training_minutes
from edge_age.train.bundle import bench_latency, macs
from edge_age.train.models import ModelSpec
from firmware_host.errors import EdgeAgeError, literal
from firmware_host.files import atomic
from firmware_host.files.jsonio import read_json, write_json

STEM = "members_table"
KINDS = ("float", "qat", "int8-qat", "int8")  # the forms of a model, in the table's order
FIGURES = ("mae", "cs5", "gender_accuracy")
RUN_FILES = ("config.json", "metrics.json", "model.keras")  # what a run folder must hold
ROLES = {"teacher": "teacher network", "member": "member", "file": "file (bench only)"}


def parse_row(text: str, role: str) -> dict:
    """``NAME=PATH`` (a member: ``NAME=RUN[:CONVERTED]``) of the option for ``role``, as a row's name and paths."""
    option = f"--{role}"
    name, sep, paths = text.partition("=")
    form = "NAME=RUN[:CONVERTED]" if role == "member" else "NAME=TFLITE" if role == "file" else "NAME=RUN"
    if not sep or not name.strip() or not paths.strip():
        raise EdgeAgeError(f"{option} takes {form}, not {text!r}")
    first, _, converted = paths.partition(":") if role == "member" else (paths, "", "")
    return {"name": name.strip(), "role": role, "path": Path(first),
            "converted": Path(converted) if converted else None}


def _figures(scores: dict | None) -> dict | None:
    return {k: scores[k] for k in FIGURES if scores.get(k) is not None} if scores else None


def check_row(row: dict, bench: Path | None) -> None:
    """Raise the one-line error for a row whose folders or file are missing, before any model is loaded."""
    option = f"--{row['role']} {row['name']}"
    needed = [(row["path"] / f, "a training run folder of 'edge-age train'") for f in RUN_FILES] \
        if row["role"] != "file" else []
    if row["converted"]:
        needed.append((row["converted"] / "convert_report.json", "a folder of 'edge-age convert'"))
    if row["role"] == "file" and not row["path"].is_file():
        raise EdgeAgeError(f"{option}: {row['path']} does not exist")
    if row["role"] == "file" and bench is None:
        raise EdgeAgeError(f"{option} takes its figures from a bench: give --bench")
    for path, what in needed:
        if not path.parent.is_dir():
            raise EdgeAgeError(f"{option}: {path.parent} is not a folder")
        if not path.is_file():
            raise EdgeAgeError(f"{option}: {path.parent} is not {what}: it has no {path.name}")


def run_facts(run: Path) -> dict:
    """Architecture, input size, parameters, MACs, epochs run, train minutes and the float and QAT models' figures
    of one ``edge-age train`` run folder. A run that kept no per-epoch history counts its configured epochs
    (``epochs_from``: ``config``)."""
    from edge_age.train.model_io import load_model
    config = read_json(run / "config.json", "training config")
    metrics = read_json(run / "metrics.json", "training metrics")
    try:
        spec = ModelSpec(**config["spec"])
    except (KeyError, TypeError) as exc:
        raise EdgeAgeError(f"{run / 'config.json'} holds no model spec of 'edge-age train': {exc}") from None
    model = load_model(run / "model.keras")
    history = read_history(run)
    if history:
        epochs = {phase: len(history.get(phase, [])) for phase in ("float", "qat")}
    else:
        epochs = {"float": config.get("epochs"), "qat": config.get("qat_epochs")}
    return {"arch": spec.describe(), "input_size": spec.input_size, "params": int(model.count_params()),
            "macs": macs(model), "epochs": epochs, "epochs_from": "history" if history else "config",
            "train_minutes": training_minutes(history) or metrics.get("train_minutes"),
            "evaluated_on": metrics.get("evaluated_on"),
            "accuracy": {kind: _figures(metrics.get(kind)) for kind in ("float", "qat")}}


def converted_facts(converted: Path) -> dict:
    """The int8-qat and int8 files of one ``edge-age convert`` folder: their figures and paths (ok targets only)."""
    report = read_json(converted / "convert_report.json", "the conversion report")
    try:
        targets = {t["target"]: t for t in report["targets"] if t["status"] == "ok"}
    except (KeyError, TypeError) as exc:
        raise EdgeAgeError(f"{converted / 'convert_report.json'} is not a report of 'edge-age convert': "
                           f"{exc}") from None
    return {"validation": report.get("validation"),
            "accuracy": {k: _figures(targets[k].get("details")) for k in ("int8-qat", "int8") if k in targets},
            "files": {k: converted / targets[k]["file"] for k in ("int8-qat", "int8") if k in targets}}


def _bench_accuracy(bench: Path, file: Path) -> dict | None:
    """The CPU accuracy the bench measured for ``file`` (matched by SHA-256), if it scored faces."""
    from firmware_host.files.paths import file_sha256
    digest = file_sha256(file)
    record = read_json(bench, "the bench record")
    return next((_figures(m["accuracy"].get("cpu")) for m in record["models"] if m.get("sha256") == digest), None)


def table_row(row: dict, bench: Path | None) -> dict:
    """One row's facts: from its run folder (teachers and members), conversion (members) and the bench."""
    from firmware_host.infer.model_info import read_info
    out = {"name": row["name"], "role": ROLES[row["role"]], "run": None, "converted": None, "file": None,
           "arch": None, "input_size": None, "params": None, "macs": None, "epochs": {"float": None, "qat": None},
           "epochs_from": None, "train_minutes": None, "evaluated_on": None, "accuracy": {k: None for k in KINDS},
           "decoding": None, "latency_ms_p50": {}}
    if row["role"] == "file":
        file = row["path"]
        info = read_info(file)
        out.update(file=str(file), input_size=info.input_size, evaluated_on="bench")
        out["accuracy"][info.target] = _bench_accuracy(bench, file)
    else:
        facts = run_facts(row["path"])
        out["accuracy"].update(facts.pop("accuracy"))
        out.update(run=str(row["path"]), **facts)
    if row["converted"]:
        converted = converted_facts(row["converted"])
        out["converted"] = str(row["converted"])
        out["accuracy"].update(converted["accuracy"])
        file = converted["files"].get("int8-qat")
        if file is None:
            raise EdgeAgeError(f"--member {row['name']}: {row['converted']} has no int8-qat file")
        out["file"] = str(file)
    if out["file"]:
        out["decoding"] = read_info(out["file"]).decoding.describe()
    if bench is not None and out["file"]:
        out["latency_ms_p50"] = bench_latency(bench, Path(out["file"]))["latency_ms_p50"]
    return out


def bench_device(bench: Path) -> dict:
    """The bench's device, thread counts and start time, for the note under the table."""
    if not bench.is_file():
        raise EdgeAgeError(f"{{}} {literal(bench)} does not exist", option="--bench", parameter="bench")
    record = read_json(bench, "the bench record")
    if not isinstance(record, dict) or record.get("schema") != "edge-age-bench":
        raise EdgeAgeError(f"{bench} is not a bench.json of 'edge-age bench'")
    device, settings = record.get("device") or {}, record.get("settings") or {}
    return {"bench": str(bench), "device": device.get("name"), "cpu": device.get("cpu"), "cores": device.get("cores"),
            "threads": settings.get("threads") or [], "started": record.get("started"),
            "runs": settings.get("runs"), "rounds": settings.get("rounds"), "faces": settings.get("faces")}


def members_table(rows: list[dict], *, bench: Path | None = None) -> dict:
    """The table's facts: one entry per row (``parse_row``), in order, and the bench it was timed in."""
    names = [r["name"] for r in rows]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise EdgeAgeError(f"each row needs its own name: {', '.join(doubled)} given twice")
    if not rows:
        raise EdgeAgeError("no rows: give --teacher, --member or --file")
    for row in rows:
        check_row(row, bench)
    return {"split": "test", "bench": bench_device(bench) if bench else None,
            "rows": [table_row(r, bench) for r in rows]}


def _fig(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def members_markdown(table: dict) -> str:
    """The table as Markdown, with where each figure comes from under it."""
    bench = table["bench"]
    threads = bench["threads"] if bench else []
    header = ["name", "role", "architecture", "input", "params", "MACs", "epochs (float + QAT)", "train min"]
    header += [f"{kind} {fig}" for kind in KINDS for fig in ("MAE", "CS@5", "gender")]
    header += ["int8 files' decoding"] + [f"p50 ms, {t} thread{'s' if t > 1 else ''}" for t in threads]
    lines, configured = [], False
    for r in table["rows"]:
        epochs = "-" if r["epochs"]["float"] is None else f"{r['epochs']['float']} + {r['epochs']['qat'] or 0}"
        if r["epochs_from"] == "config":
            epochs, configured = epochs + " *", True
        cells = [r["name"], r["role"], r["arch"] or "-", _fig(r["input_size"], "d"), _fig(r["params"], ","),
                 _fig(r["macs"], ","), epochs, _fig(r["train_minutes"], ".1f")]
        for kind in KINDS:
            a = r["accuracy"][kind] or {}
            cells += [_fig(a.get("mae"), ".3f"), _fig(a.get("cs5"), ".1%"), _fig(a.get("gender_accuracy"), ".1%")]
        cells += [r["decoding"] or "-"] + [_fig(r["latency_ms_p50"].get(str(t)), ".3f") for t in threads]
        lines.append(cells)
    notes = ["Accuracy on the test split of the project's split: float and QAT from each run's `metrics.json`, "
             "int8-qat and int8 from its `convert_report.json` (`edge-age convert --split`); a file with no run "
             "folder has the accuracy `edge-age bench --split` measured, under its sidecar's target. Float and QAT "
             "ages are the mean of the distribution, one run per face; the int8 files' ages are read as their "
             "sidecar's decoding says (mirror-averaged: the face and its mirror image, two runs per face, in the "
             "accuracy and in the latency). "
             "Parameters and MACs (convolutions and dense layers, one face) from `model.keras`, epochs from the "
             "rows of `history_float.csv` and `history_qat.csv`, train minutes the sum of their epochs' wall time "
             "(every process of a resumed run; `metrics.json`'s without history). "
             "\"-\": not made or not measured."]
    if configured:
        notes.append("\\* The run folder kept no per-epoch history: the epochs its `config.json` set (early "
                     "stopping may have ended it sooner).")
    if bench:
        notes.append(f"p50: CPU (XNNPACK) latency of one face with each int8-qat file, batch 1, from one bench "
                     f"(`{bench['bench']}`, started {bench['started']}) on device {bench['device']} "
                     f"({bench['cpu']}, {bench['cores']} cores): {bench['runs']} timed runs per thread count in "
                     f"each of {bench['rounds']} round(s). The bench scored {bench['faces'] or 'no faces'}.")
    return "\n".join(["# Teacher networks and members\n", md_table(header, lines), *(n + "\n" for n in notes)])


def write_members_table(rows: list[dict], out: Path, *, bench: Path | None = None) -> Path:
    """``members_table.md`` and ``members_table.json`` in ``out``, written as one set; the Markdown's path."""
    table = members_table(rows, bench=bench)
    text = members_markdown(table)
    with atomic.file_set(atomic.writable_dir(out), STEM) as staging:
        write_json(staging / f"{STEM}.json", table)
        atomic.write_text(staging / f"{STEM}.md", text)
    return Path(out) / f"{STEM}.md"
