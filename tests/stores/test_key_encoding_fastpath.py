"""The fast paths of encode_key write exactly what json.dumps writes, so stores stay readable."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from lendml.stores.base import decode_values, encode_key, encode_values


@given(st.one_of(st.integers(), st.text(), st.booleans()))
def test_encode_key_matches_json(key):
    assert encode_key(key) == json.dumps(key)


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    )
)
def test_values_round_trip(values):
    assert decode_values(encode_values(values)) == values
    assert decode_values(encode_values(values, compact=True).encode()) == values


def test_integers_beyond_64_bits_and_infinities_decode_exactly():
    values = {"big": -(2**63) - 1, "huge": 10**30, "inf": float("inf"), "s": "1234567890123456789"}
    back = decode_values(encode_values(values))
    assert back == values and type(back["big"]) is int and type(back["huge"]) is int
