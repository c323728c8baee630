"""What machine a measurement ran on: CPU, OS, runtime versions and, on a Raspberry Pi, heat and throttling."""
from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

THERMAL_ZONES = Path("/sys/class/thermal")
CPUFREQ = Path("/sys/devices/system/cpu")
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
    return (fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor()
            or platform.machine())


def board() -> str | None:
    """The board's model string on Arm boards (e.g. 'Raspberry Pi 5 Model B Rev 1.0'), else None."""
    try:
        return PI_MODEL.read_text().strip("\x00\n ")
    except OSError:
        return None


def _vcgencmd(*args: str) -> str | None:
    """The output of Raspberry Pi's ``vcgencmd``; None where it does not exist or fails."""
    try:
        return subprocess.run(["vcgencmd", *args], check=False, capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _milli_readings(paths) -> list[float]:
    """The integer in each sysfs file divided by 1000 (milli-degrees to °C, kHz to MHz); unreadable files skipped."""
    values = []
    for path in paths:
        try:
            values.append(int(path.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return values


def temperature_c() -> float | None:
    """The hottest plausible thermal zone in °C (on a Pi, the SoC), else ``vcgencmd measure_temp``, else None."""
    readings = [t for t in _milli_readings(THERMAL_ZONES.glob("thermal_zone*/temp"))
                if -40.0 < t < 150.0]  # absent sensors read 0, -273 or garbage
    if readings:
        return max(readings)
    out = _vcgencmd("measure_temp") or ""  # "temp=48.3'C"
    try:
        return float(out.split("=")[1].split("'")[0])
    except (IndexError, ValueError):
        return None


def cpu_mhz() -> float | None:
    """The mean current clock of the CPU cores in MHz (cpufreq's ``scaling_cur_freq``), else None."""
    clocks = _milli_readings(CPUFREQ.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))
    return round(sum(clocks) / len(clocks), 1) if clocks else None


def throttling() -> dict | None:
    """Raspberry Pi throttling flags from ``vcgencmd get_throttled``; None where vcgencmd does not exist."""
    try:
        value = int((_vcgencmd("get_throttled") or "").strip().split("=")[1], 16)
    except (IndexError, ValueError):
        return None
    return {"raw": hex(value), "flags": [name for bit, name in THROTTLE_FLAGS.items() if value >> bit & 1]}


def thermal_state() -> dict:
    """Temperature and throttling now (both None where the machine does not report them)."""
    return {"temperature_c": temperature_c(), "throttling": throttling()}


class ThermalLog:
    """Temperature, CPU clock and throttling flags every ``interval_s`` seconds, on a thread, until stopped.

    Each sample's ``t_s`` counts from construction; readings the machine does not expose are None.
    """

    def __init__(self, interval_s: float):
        self.interval_s, self.start = interval_s, time.monotonic()
        self.samples: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="thermal", daemon=True)
        self.thread.start()

    def sample(self) -> None:
        self.samples.append({"t_s": round(time.monotonic() - self.start, 3), "temperature_c": temperature_c(),
                             "cpu_mhz": cpu_mhz(), "throttling": throttling()})

    def _run(self) -> None:
        self.sample()
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def stop(self) -> list[dict]:
        """Stop sampling, take a last sample, and return them all."""
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sample()
        return self.samples


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
