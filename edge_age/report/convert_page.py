"""The conversion report: ``convert_report.json``, ``convert_report.md`` and a self-contained ``convert_report.html``
with plots (SNR per layer of each integer file, float against quantized age), written as one set."""
from __future__ import annotations

from itertools import cycle
from pathlib import Path

from edge_age.report.bench_page import can_plot
from edge_age.report.bench_plots import COLORS
from edge_age.report.page import Section, md_table, pyplot, save_figure, spread_labels, to_html, to_markdown
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json

STEM = "convert_report"
HEADER = ["target", "status", "KB", "activations", "MAE", "ΔMAE", "CS@5", "gender", "|Δage|", "gender agree",
          "p50 ms (1 thread)", "note"]
DELTA_AGE = ("|Δage|: the mean over the validation faces of |age from the file − age from the Keras model it was "
             "converted from| (the float model; the QAT model for int8-qat and edgetpu), in years. ΔMAE: the file's "
             "MAE minus the float model's. gender agree: the share of faces whose gender decision matches the Keras "
             "model's.")
QUANTIZATION_ERROR = ("Age error from quantization: per debug face, |age from the file − age from its float reference "
                      "file|, in years (the end of what the per-layer tables follow). For a QAT file the reference is "
                      "its own weights without fake quantization, so this is not |Δage|, which compares with the QAT "
                      "Keras model.")
DECODING = ("How each file reads an age from its outputs, as its sidecar's age_decoding says: the Keras model's "
            "decoding from device.json, or, with convert --fit-decoding, one fitted on the 8-bit file's own outputs "
            "on the split's validation side. The figures above are read so.")
WORST = 10
NO_PLOTS = "No plots: matplotlib is not installed here (pip install 'edge-age[report]')."


def _fmt(d: dict, key: str, spec: str) -> str:
    return format(d[key], spec) if d.get(key) is not None else "-"


def _row(r: dict) -> list:
    d = r["details"]
    activations = "+".join(d["activations"]) if d.get("activations") else "-"
    return [r["target"], r["status"], _fmt(d, "size_kb", ".0f"), activations, _fmt(d, "mae", ".2f"),
            _fmt(d, "mae_delta_to_float", "+.2f"), _fmt(d, "cs5", ".1%"), _fmt(d, "gender_accuracy", ".1%"),
            _fmt(d, "mean_abs_age_diff", ".3f"), _fmt(d, "gender_agreement", ".1%"), _fmt(d, "latency_ms_p50", ".2f"),
            r["reason"] or ""]


def table(report: dict) -> str:
    """The summary table of every target, in Markdown."""
    return md_table(HEADER, [_row(r) for r in report["targets"]])


def _analysed(report: dict) -> list[dict]:
    return [r for r in report["targets"] if r["details"].get("layers")]


def _layer_rows(d: dict) -> tuple[list, list]:
    added = d["layer_method"] == "interpreter"
    header = ["rank", "layer", "op", "SNR dB", "median channel SNR dB", "RMSE / range", "cosine"] + (
        ["SNR of the error it adds, dB"] if added else [])
    rows = [[l["rank"], l["name"], l["op"], f"{l['snr_db']:.1f}", f"{l['channel_snr_db']:.1f}", f"{l['rmse']:.2e}",
             f"{l['cosine']:.5f}"] + ([f"{l['added_snr_db']:.1f}"] if added else [])
            for l in sorted(d["layers"], key=lambda l: l["rank"])[:WORST]]
    return header, rows


def _mixed_section(r: dict) -> Section:
    d = r["details"]
    cost = d["vs_int8"]
    verdict = ("within the budget" if d["within_budget"] else
               "OVER BUDGET: the best file found is kept")
    text = (f"{len(d['kept_float'])} layers kept in float ({', '.join(d['kept_float']) or 'none'}): MAE "
            f"{d['search_mae']:.3f} on the search faces against float + budget {d['search_target_mae']:.3f}, "
            f"{verdict}. On the report's validation faces: MAE {_fmt(d, 'mae', '.3f')} "
            f"({_fmt(d, 'mae_delta_to_float', '+.3f')} against float). Cost against pure int8: latency "
            f"×{cost['latency_ratio']:.2f} (int8 {cost['int8_latency_ms_p50']:.3f} ms, 1 thread), size "
            f"×{cost['size_ratio']:.2f}. Each step below is a file whose MAE was measured.")
    rows = [[i, s["layer"], ", ".join(s["float_ops"]) or "-", f"{s['mae']:.3f}", "yes" if s["kept"] else "no"]
            for i, s in enumerate(d["steps"])]
    return Section("int8-mixed: layers kept in float", text, ["step", "candidate", "ops in float", "MAE", "kept"], rows)


def _bias_correction(c: dict) -> str:
    if not c.get("applied"):
        return "Bias correction: off (--no-bias-correction)."
    return (f"Bias correction: {c['layers']} of {c['weighted_layers']} weighted layers had their bias corrected for "
            "their int8 weights' mean error on the calibration images.")


def _int16x8_section(r: dict) -> Section:
    d = r["details"]
    x = d.get("xnnpack", {})
    text = (f"Delegates: XNNPACK took {x.get('delegated', '-')} of {x.get('ops', '-')} ops (it has no 16x8 kernels), "
            "so LiteRT's reference kernels run it on the CPU; neither the GPU delegate nor the Edge TPU runs 16-bit "
            f"activations. p50 {_fmt(d, 'latency_ms_p50', '.2f')} ms with 1 thread. "
            f"Validated on {d.get('validated_on', 'every validation face')}: MAE {_fmt(d, 'mae', '.3f')}, "
            f"{_fmt(d, 'mae_delta_to_float', '+.3f')} against the float model on the same faces. "
            f"{_bias_correction(d.get('bias_correction', {}))}")
    return Section("int16x8: 16-bit activations, 8-bit weights", text)


def _edgetpu_sections(report: dict) -> list[Section]:
    sections = []
    for r in report["targets"]:
        d = r["details"]
        if "edgetpu" not in d:
            continue
        compat = d["edgetpu"]
        rows = [[s["op"], s["count"], s["status"]] for s in compat["summary"]]
        if "edgetpu_compiler" in d:
            compiler = d["edgetpu_compiler"]
            text = (f"{r['file']}: compiled to {compiler['model']}, log {compiler['log']}." if compiler["compiled"] else
                    f"{r['file']}: edgetpu_compiler is not on PATH here; on a machine that has it run: "
                    f"{compiler['command']}")
        else:
            cut = compat["first_unmapped"]
            left = sum(1 for op in compat["ops"] if cut is not None and op["index"] >= cut)
            text = (f"{r['file']} is not an Edge TPU file: its float layers cannot map. The compiler would map the ops "
                    f"before op {cut} and leave {left} of {len(compat['ops'])} ops to the CPU." if cut is not None
                    else f"{r['file']}: every op would map.")
        sections.append(Section(f"Edge TPU compatibility: {r['target']}", text, ["Operator", "Count", "Status"], rows))
    return sections


def sections(report: dict, out: Path) -> list[Section]:
    """The sections of the Markdown and HTML pages; plots are drawn into ``out`` when matplotlib is there."""
    w = report.get("workbench", {})
    keras_rows = [[k, m["n"], f"{m['mae']:.2f}", f"{m['cs5']:.1%}", f"{m.get('gender_accuracy', float('nan')):.1%}"]
                  for k, m in report["keras"].items()]
    s = [Section("Settings", f"Validation: {report['validation']}; calibration: {report['calibration']}; rejection "
                             f"threshold: MAE more than {report['threshold_years']} years above the float model. "
                             f"Per-layer error on {w.get('debug_images', 0)} validation faces; int8-mixed budget "
                             f"{w.get('budget_years')} years, at most {w.get('max_float')} layers in float, searched "
                             "on "
                             f"{w.get('search_faces', '-')}."),
         Section("Keras models", "" if keras_rows else "none", ["model", "n", "MAE", "CS@5", "gender"] if keras_rows
                 else None, keras_rows),
         Section("TFLite files", DELTA_AGE, HEADER, [_row(r) for r in report["targets"]])]
    decodings = [[r["target"], r["details"]["age_decoding"], "this file's outputs, validation side"
                  if r["details"].get("age_decoding_fitted_on_file") else "the Keras model's (device.json)"]
                 for r in report["targets"] if r["details"].get("age_decoding")]
    if decodings:
        s.append(Section("Age decoding", DECODING, ["target", "decoding", "fitted on"], decodings))
    analysed = _analysed(report)
    if analysed:
        s.append(Section("Float against quantized, at the output", QUANTIZATION_ERROR,
                         ["target", "reference", "images", "age error from quantization, mean",
                          "age error from quantization, worst", "gender flips"],
                         [[r["target"], r["details"]["layer_reference"], r["details"]["output"]["images"],
                           f"{r['details']['output']['mean_quantization_error']:.3f}",
                           f"{r['details']['output']['max_quantization_error']:.3f}",
                           r["details"]["output"]["gender_flips"]] for r in analysed]))
        for r in analysed:
            d = r["details"]
            header, rows = _layer_rows(d)
            correction = f" {_bias_correction(d['bias_correction'])}" if r["target"] == "int8" and \
                "bias_correction" in d else ""
            s.append(Section(f"Per-layer error: {r['target']} (the worst {min(WORST, len(d['layers']))} of "
                             f"{len(d['layers'])} layers)",
                             f"Method: {d['layer_method_text']}. Reference: {d['layer_reference']}.{correction}",
                             header, rows))
    for r in report["targets"]:
        if r["target"] == "int8-mixed" and "steps" in r["details"]:
            s.append(_mixed_section(r))
        if r["target"] == "int16x8" and r["details"].get("activations"):
            s.append(_int16x8_section(r))
    s += _edgetpu_sections(report)
    if analysed:
        s.append(Section("Plots", "", plots=[snr_plot(analysed, out / "convert_snr.png"),
                                             age_plot(analysed, out / "convert_age_diff.png")])
                 if can_plot() else Section("Plots", NO_PLOTS))
    return s


def snr_plot(rows: list[dict], path: Path) -> Path:
    """SNR per layer in graph order, one panel per integer file: bars for the tensor's SNR, dots for the median
    channel's, the three worst named, the layers a mixed file keeps in float marked."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.4 * len(rows)), sharex=True, squeeze=False)
    labels = []
    for ax, color, r in zip(axes[:, 0], cycle(COLORS), rows):
        layers = r["details"]["layers"]
        index = [l["index"] for l in layers]
        ax.bar(index, [l["snr_db"] for l in layers], color=color, width=0.8, alpha=0.75, label="tensor")
        ax.scatter(index, [l["channel_snr_db"] for l in layers], color="k", s=9, zorder=3, label="median channel")
        top = max(max(l["snr_db"] for l in layers), 1.0)
        middle = (min(index) + max(index)) / 2
        labels += [ax.annotate(f"#{l['rank']} {l['name'][:28]}", (l["index"], min(l["snr_db"], l["channel_snr_db"])),
                               fontsize=7, xytext=(3 if l["index"] < middle else -3, 3), textcoords="offset points",
                               ha="left" if l["index"] < middle else "right", color="#a00")
                   for l in sorted(layers, key=lambda l: l["rank"])[:3]]
        for i in sorted(set(range(max(index) + 1)) - set(index)) if r["details"].get("kept_float") else ():
            ax.text(i, top * 0.05, "float", rotation=90, fontsize=7, ha="center", va="bottom", color="#555")
        kind = "added by each op" if r["details"]["layer_method"] == "debugger" else "accumulated"
        ax.set_title(f"{r['target']}: SNR per layer ({kind})", fontsize=9)
        ax.set_ylim(top=top * 1.3)
        ax.set_ylabel("SNR (dB)")
        ax.grid(True, axis="y", alpha=0.25)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("layer, in graph order")
    fig.tight_layout()
    spread_labels(fig, labels)
    return save_figure(fig, path)


def age_plot(rows: list[dict], path: Path) -> Path:
    """Quantized minus float age against the float age, per image, one colour per file."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for color, r in zip(cycle(COLORS), rows):
        o = r["details"]["output"]
        ax.scatter(o["age_float"], [q - f for q, f in zip(o["age_quantized"], o["age_float"])], s=10, alpha=0.7,
                   color=color, label=f"{r['target']} (mean {o['mean_quantization_error']:.3f})")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="float age (years)", ylabel="quantized − float (years)", title="Float against quantized age")
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_reports(report: dict, out: Path) -> None:
    """convert_report.json, .md, .html and their plots, replacing the previous ones as one set."""
    with atomic.file_set(out, STEM) as staging:
        title = "Conversion report"
        page = sections(report, staging)
        atomic.write_text(staging / f"{STEM}.md", to_markdown(title, page))
        atomic.write_text(staging / f"{STEM}.html", to_html(title, page))
        write_json(staging / f"{STEM}.json", report)
