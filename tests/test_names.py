import os

from edge_age.data.names import parse_name
from tests.conftest import UTK64, UTK200


def test_every_shared_name_is_read():
    """All of utkface64 keeps its labels; in the 200x200 part only the gender-3 name is set aside."""
    assert all(parse_name(n).usable for n in os.listdir(UTK64))
    set_aside = [n for n in os.listdir(UTK200) if not parse_name(n).usable]
    assert set_aside == ["61_3_20170109150557335.jpg.chip.jpg"]
