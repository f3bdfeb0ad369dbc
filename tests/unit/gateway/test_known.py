"""KnownIds: a bounded, least-recently-used memory of ids known to exist."""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.known import KnownIds


def test_an_added_id_is_known_and_another_is_not() -> None:
    known = KnownIds(10)
    seen = uuid4()

    known.add(seen)

    assert known.knows(seen)
    assert not known.knows(uuid4())


def test_past_capacity_the_least_recently_used_id_is_forgotten() -> None:
    known = KnownIds(2)
    a, b, c = uuid4(), uuid4(), uuid4()
    known.add(a)
    known.add(b)
    assert known.knows(a)  # a is now more recently used than b

    known.add(c)

    assert (known.knows(a), known.knows(b), known.knows(c)) == (True, False, True)
    assert len(known) == 2


def test_adding_a_known_id_again_keeps_one_entry() -> None:
    known = KnownIds(5)
    seen = uuid4()

    known.add(seen)
    known.add(seen)

    assert len(known) == 1


def test_capacity_zero_remembers_nothing() -> None:
    known = KnownIds(0)
    seen = uuid4()

    known.add(seen)

    assert not known.knows(seen)


def test_a_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        KnownIds(-1)
