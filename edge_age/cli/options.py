"""Options shared by several commands."""
from __future__ import annotations

import typer

from firmware_host.detect.detectors import AUTO_ORDER, DETECTOR_TABLE
from firmware_host.infer.interpreter import DELEGATE_TABLE
from firmware_host.pipeline.defaults import DETECT_SIZE

SkipBadLabelsOpt = typer.Option(False, "--skip-bad-labels", help="Skip and count bad rows of --labels (age outside "
                                "0..116, gender not 0/1/empty, a file listed twice) instead of stopping at the first.")


DataArg = typer.Argument(None, help="Folder or .tar/.tar.gz/.zip of face crops [default: $EDGE_AGE_DATA].",
                         show_default=False)


ChipsArg = typer.Argument(None, help="Folder of face chips (not an archive) [default: $EDGE_AGE_DATA].",
                          show_default=False)


ModelOpt = typer.Option(None, "--model", "-m", help="A .tflite from 'edge-age convert' (its .json sidecar beside it), "
                        "or a member of the family: m, s or n ('edge-age models') [default: s].")


DelegateOpt = typer.Option("cpu", help=f"{', '.join(DELEGATE_TABLE)} (cpu: LiteRT's XNNPACK).")


DelegateLibraryOpt = typer.Option(None, help="Delegate library [gpu: $EDGE_AGE_GPU_DELEGATE; edgetpu: "
                                             "libedgetpu.so.1].")


DeviceOpt = typer.Option(None, help="Edge TPU to use: usb, usb:N or pci:N [default: the first found].")


DETECTOR_HELP = (f"auto (the first of {', '.join(AUTO_ORDER)} whose model is found, else haar), "
                 f"{', '.join(DETECTOR_TABLE)}.")
DetectorOpt = typer.Option("auto", help=DETECTOR_HELP)


DetectorModelOpt = typer.Option(None, help="Detector model [" + "; ".join(
    f"{spec.name}: ${spec.env}" for spec in DETECTOR_TABLE.values() if spec.env) + "].")


DetectSizeOpt = typer.Option(DETECT_SIZE, help="Longer side, in pixels, of the frame the detector sees (0 = the full "
                             "frame); boxes and landmarks are mapped back, faces are cropped at full resolution.")
