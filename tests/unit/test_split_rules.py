"""Split files refused with a reason, and the age bins of the strata."""
import pytest

from edge_age.data.split import age_bin, read_split
from firmware_host.errors import EdgeAgeError


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n", "columns"),
    ("file,age,gender,race,group,split\nx.jpg,twenty,0,0,1,train\n", "bad value"),
    ("file,age,gender,race,group,split\nx.jpg,20,0,0,1,holdout\n", "side 'holdout'"),
    ("file,age,gender,race,group,split\n", "no rows"),
])
def test_bad_split_files(tmp_path, text, message):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(EdgeAgeError, match=message):
        read_split(path)


def test_age_bins():
    assert [age_bin(a) for a in (0, 2, 3, 9, 10, 79, 80, 116)] == [0, 0, 1, 1, 2, 8, 9, 9]
