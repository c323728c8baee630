"""Library errors and their hint: the library names the setting as its argument, the CLI as its flag."""
from firmware_host.errors import EdgeAgeError, literal, user_message


def test_a_hint_is_worded_as_the_argument_or_as_the_flag():
    exc = EdgeAgeError(f"{literal('a{b}.csv')}, line 3: bad age ({{}} skips such rows)", option="--skip-bad-labels",
                       parameter="skip_bad")
    assert str(exc) == "a{b}.csv, line 3: bad age (skip_bad skips such rows)"
    assert user_message(exc) == "a{b}.csv, line 3: bad age (--skip-bad-labels skips such rows)"


def test_without_a_hint_the_message_is_left_alone():
    exc = EdgeAgeError("a {literal} brace")
    assert str(exc) == user_message(exc) == "a {literal} brace"


def test_an_os_error_names_the_file():
    missing = FileNotFoundError(2, "No such file or directory", "x.csv")
    assert user_message(missing) == "x.csv: No such file or directory"
