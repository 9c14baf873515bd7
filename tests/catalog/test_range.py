"""config.http: single byte ranges as RFC 9110 defines them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.http import parse_byte_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-50", (950, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the file is the whole file
        ("bytes=900-5000", (900, 999)),  # clipped to the end
        ("BYTES = 5 - 9", (5, 9)),
        ("bytes=999-999", (999, 999)),
        ("bytes=1000-", False),  # starts past the end: 416
        ("bytes=-0", False),
        ("", None),
        ("bytes=", None),
        ("bytes=-", None),
        ("bytes=9-5", None),  # invalid: ignored
        ("bytes=0-1,5-9", None),  # several ranges: ignored, whole file
        ("items=0-9", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_byte_range(header, expected):
    assert parse_byte_range(header, 1000) == expected


@given(size=st.integers(1, 10_000), first=st.integers(0, 20_000), length=st.integers(1, 20_000))
def test_a_satisfiable_range_always_lies_inside_the_file(size, first, length):
    result = parse_byte_range(f"bytes={first}-{first + length - 1}", size)
    if first >= size:
        assert result is False
    else:
        start, end = result
        assert start == first and 0 <= start <= end < size and end == min(first + length - 1, size - 1)
