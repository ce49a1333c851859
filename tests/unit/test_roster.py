"""Roster files: good ones parse, every kind of bad one is refused whole, naming the line."""

import pytest

from d2lhub.grading.roster import RosterError, parse

HEADER = "username,first name,last name,email,role\n"
GOOD = HEADER + "alice,Alice,A,alice@example.org,student\nbob,Bob,B,,ta\n"

# Bad files, each with the line and a word of the reason the error must carry.
BAD = {
    "empty": (b"", "line 1", "empty"),
    "missing column": (b"username,first name,last name,role\nalice,A,B,student\n", "line 1", "email"),
    "duplicate": ((GOOD + "alice,Al,A,a2@example.org,student\n").encode(), "line 4", "line 2"),
    "bad role": ((HEADER + "alice,A,B,a@example.org,professor\n").encode(), "line 2", "role"),
    "bad characters": ((HEADER + "ok,A,B,,student\nAl!ce,A,B,,student\n").encode(), "line 3", "username"),
    "markup in name": ((HEADER + "carol,<script>,B,,student\n").encode(), "line 2", "first_name"),
    "wrong encoding": ((HEADER + "alice,Al,A,,student\nbob,B\xe9b,B,,student\n").encode("latin-1"), "line 3", "UTF-8"),
    "short row": ((HEADER + "alice,Alice,A,student\n").encode(), "line 2", "fields"),
    "header only": (HEADER.encode(), "line 2", "no people"),
}


def test_good_file_parses_with_bom_and_case_insensitive_header():
    rows = parse(("\ufeff" + GOOD.replace("first name", "First_Name")).encode())
    assert [(r.username, r.first_name, r.role) for r in rows] == [("alice", "Alice", "student"), ("bob", "Bob", "ta")]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_refused_with_line(case):
    data, line, word = BAD[case]
    with pytest.raises(RosterError) as error:
        parse(data, "class.csv")
    message = str(error.value)
    assert f"class.csv: {line}:" in message and word in message, message


def test_every_bad_line_is_reported_at_once():
    data = (HEADER + "alice,A,B,,student\nBAD,A,B,,student\ncarol,C,D,,wizard\n").encode()
    with pytest.raises(RosterError) as error:
        parse(data)
    assert "line 3" in str(error.value) and "line 4" in str(error.value)
