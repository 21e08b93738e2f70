from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from hookcast.domain.ids import UlidGenerator, is_ulid, new_id, ulid_timestamp_ms
from hookcast.domain.keys import generate_key, hash_key, mask_of, matches


def test_ulids_are_valid_time_ordered_and_carry_the_clock() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert all(is_ulid(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert before <= ulid_timestamp_ms(ids[0]) <= ulid_timestamp_ms(ids[-1]) <= after


def test_ulids_stay_monotonic_when_the_clock_stands_still_or_goes_back() -> None:
    ticks = iter([1000, 1000, 1000, 999, 1001])
    gen = UlidGenerator(clock_ms=lambda: next(ticks), randbits=lambda: 12345 << 1)
    ids = [gen.new() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [ulid_timestamp_ms(i) for i in ids] == [1000, 1000, 1000, 1000, 1001]


@given(st.text(max_size=30))
def test_is_ulid_rejects_junk(text: str) -> None:
    if is_ulid(text):
        assert len(text) == 26 and text.upper() == text


def test_keys_are_prefixed_masked_and_only_hashes_match() -> None:
    counter = iter(range(1, 1000))
    key = generate_key(lambda n: bytes([next(counter)]) * n)
    assert key.token.startswith("CO.") and mask_of(key.token) == key.mask
    assert key.key_hash == hash_key(key.token) and key.token not in key.key_hash
    assert matches(key.token, key.key_hash)
    assert not matches(key.token + "x", key.key_hash)
    assert mask_of("CO.onlytwo") is None and mask_of("XX.a.b") is None and mask_of("CO..b") is None
