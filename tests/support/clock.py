"""A clock the test moves by hand, so timestamps and durations are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class FakeClock:
    """One instant, read two ways.

    Calling the clock gives an aware ``datetime`` (what the services' ``clock=`` takes);
    ``monotonic()`` gives the float seconds since ``start`` (what ``time.monotonic``-style
    clocks give: the rate limiter, load shapes, the recorder). ``advance`` and ``set`` move
    both. With ``tick`` every datetime reading first moves the clock on by that many
    seconds, so successive timestamps differ and are predictable.
    """

    def __init__(self, start: datetime = EPOCH, *, tick: float = 0.0) -> None:
        self.start = start
        self.now = start
        self.tick = timedelta(seconds=tick)

    def __call__(self) -> datetime:
        self.now += self.tick
        return self.now

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set(self, seconds: float) -> None:
        """Put the clock ``seconds`` after its start (earlier than now, too)."""
        self.now = self.start + timedelta(seconds=seconds)
