"""UTKFace file names: the conventional form, the deviations recovered, the names set aside."""

import pytest

from edge_age.data.names import parse_name


def test_conventional_name():
    lab = parse_name("26_1_2_20170116174525125.jpg.chip.jpg")
    assert (lab.age, lab.gender, lab.race, lab.timestamp) == (26, 1, 2, "20170116174525125")
    assert lab.usable and not lab.malformed
    assert lab.minute == "201701161745"


@pytest.mark.parametrize("name, labels, issue", [
    ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1), "space before the extension"),
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0), "missing dot before the extension"),
    ("39_1_20170116174525125.jpg.chip.jpg", (39, 1, -1), "missing race field"),
    ("14_0_0_2017011022340900.jpg.chip.jpg", (14, 0, 0), "time stamp of 16 digits"),
    ("28_1_2_201701161846515488.jpg.chip.jpg", (28, 1, 2), "time stamp of 18 digits"),
    ("30_1_7_20170116174525125.jpg", (30, 1, -1), "race 7 outside 0..4"),
])
def test_recovered_deviations(name, labels, issue):
    lab = parse_name(name)
    assert (lab.age, lab.gender, lab.race) == labels
    assert lab.usable and lab.malformed
    assert issue in lab.issues


@pytest.mark.parametrize("name, reason", [
    ("61_3_20170109150557335.jpg.chip.jpg", "gender '3'"),
    ("holiday.jpg", "no age_gender_ prefix"),
    ("130_0_0_20170109150557335.jpg.chip.jpg", "age 130"),
])
def test_set_aside(name, reason):
    lab = parse_name(name)
    assert not lab.usable
    assert reason in lab.reason
