"""What machine a measurement ran on: CPU, OS, runtime versions and, on a Raspberry Pi, heat and throttling."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
PI_MODEL = Path("/proc/device-tree/model")
# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
THROTTLE_FLAGS = {0: "under-voltage", 1: "arm-frequency-capped", 2: "throttled", 3: "soft-temperature-limit",
                  16: "under-voltage-occurred", 17: "arm-frequency-capping-occurred", 18: "throttling-occurred",
                  19: "soft-temperature-limit-occurred"}
PACKAGES = ("edge-age", "ai-edge-litert", "tflite-runtime", "numpy", "opencv-python-headless", "opencv-python")


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 'model name', Arm 'Model' or 'Hardware'), else platform's."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
    except OSError:
        fields = {}
    return fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor() or platform.machine()


def board() -> str | None:
    """The board's model string on Arm boards (e.g. 'Raspberry Pi 5 Model B Rev 1.0'), else None."""
    try:
        return PI_MODEL.read_text().strip("\x00\n ")
    except OSError:
        return None


def temperature_c() -> float | None:
    """SoC temperature in °C from the first thermal zone, when there is one."""
    try:
        return int(THERMAL_ZONE.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def throttling() -> dict | None:
    """Raspberry Pi throttling flags from ``vcgencmd get_throttled``; None where vcgencmd does not exist."""
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], check=False, capture_output=True, text=True, timeout=2).stdout
        value = int(out.strip().split("=")[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
    return {"raw": hex(value), "flags": [name for bit, name in THROTTLE_FLAGS.items() if value >> bit & 1]}


def thermal_state() -> dict:
    """Temperature and throttling now (both None where the machine does not report them)."""
    return {"temperature_c": temperature_c(), "throttling": throttling()}


def versions() -> dict[str, str]:
    """Installed versions of the packages a measurement depends on."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def describe() -> dict:
    """The machine and software, for reports."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(), "board": board(),
            "os": platform.platform(), "python": platform.python_version(), "packages": versions(),
            "hostname": platform.node()}
