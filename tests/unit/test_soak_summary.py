"""The soak's verdict on hand-made samples: RSS compared as peaks, the shutdown left out, open files by their floor."""
from __future__ import annotations

from edge_age.bench.soak import Viewer, summary


def samples(rss, files, every=30.0):
    return [{"t_s": i * every, "rss_mib": r, "open_files": f} for i, (r, f) in enumerate(zip(rss, files))]


def test_a_sawtooth_with_a_flat_top_passes_and_the_shutdown_is_left_out():
    rss = [130, 142, 134, 142] * 10 + [118]  # frame buffers come and go; the last sample is the shutdown
    files = [7] * 20 + [13] + [7] * 19 + [3]  # a video reopened at a loop shows once
    result = summary(samples(rss, files), {"status": "finished"}, Viewer("x"), seconds=1200)
    assert result["passed"] and result["rss_growth_mib"] == 0 and result["open_files_max"] == 13


def test_growth_and_a_rising_floor_of_open_files_fail():
    rss = [130 + i * 0.5 for i in range(40)]
    growing = summary(samples(rss, [7] * 40), {"status": "finished"}, Viewer("x"), seconds=1200)
    assert not growing["passed"] and growing["rss_growth_mib"] >= 5
    leaking = summary(samples([140] * 40, [7] * 20 + [8] * 20), {"status": "finished"}, Viewer("x"), seconds=1200)
    assert not leaking["passed"] and leaking["open_files_floor_last"] == 8
