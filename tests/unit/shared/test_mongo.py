"""shared.mongo: the one place that says what a duplicate key looks like."""

from __future__ import annotations

import pytest

from shared.mongo import is_duplicate_key


@pytest.mark.parametrize("code", [11000, 11001, 12582])
def test_a_unique_index_refusing_a_write_is_a_duplicate_key(code: int) -> None:
    assert is_duplicate_key({"index": 0, "code": code, "errmsg": "E11000 duplicate key"})


@pytest.mark.parametrize("error", [{"index": 0, "code": 121}, {"index": 0}])
def test_any_other_write_error_is_not(error: dict[str, object]) -> None:
    assert not is_duplicate_key(error)
