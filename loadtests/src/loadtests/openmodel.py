"""An open-model (arrival-rate) load generator that does not suffer coordinated omission.

Requests start on a fixed schedule whether or not earlier ones have answered, into a bounded
pool; an arrival that finds the pool full is counted as dropped, not delayed. Latency is
measured from the *intended* start time, so a stalled server shows up as latency instead of
silently lowering the offered load (Gil Tene's "coordinated omission"). Locust's users are a
closed model and its response-time buckets are rounded, hence this module and HdrHistogram.

:class:`HttpClient` is the one HTTP client the generator's users share (``bookify load
--open`` and ``bookify bench``): aiohttp, chosen by measurement (``bookify bench generator``)
because httpx spent three quarters of the generator's CPU choosing a pooled connection
(httpcore checks every connection's socket on every request) and managed ~300 requests per
CPU-second, where aiohttp manages well over ten times that. :func:`run` runs a generator on
uvloop, chosen the same way.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    import aiohttp

# Microseconds, 1 µs .. 10 min at 3 significant digits.
LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


# ---------------------------------------------------------------------------- the HTTP client
class HttpError(Exception):
    """A request that got no HTTP answer: refused, reset, timed out, unreadable."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, read in full (the generator's answers are small); ``headers`` look
    names up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient:
    """A keep-alive HTTP/1.1 client for one base URL (aiohttp), for use as ``async with``.

    Paths are appended to the base URL, as httpx does: ``http://h/api`` + ``/v1/x`` is
    ``http://h/api/v1/x``. At most ``max_connections`` connections; a request that finds
    them all busy waits for one (inside its own latency). ``timeout`` bounds each request,
    connecting included. Several comma-separated base URLs (gateway replicas) take the
    requests in turn, over one pool.
    """

    def __init__(self, base_url: str, *, max_connections: int = 512, timeout: float = 30.0):
        self.base_urls = [url.strip().rstrip("/") for url in base_url.split(",") if url.strip()]
        self.base_url = self.base_urls[0]
        self._turn = itertools.cycle(self.base_urls)
        self.max_connections = max_connections
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._errors: tuple[type[BaseException], ...] = ()

    async def __aenter__(self) -> HttpClient:
        import aiohttp  # here, not at the top: Locust's processes import this module too

        self._errors = (aiohttp.ClientError, TimeoutError, OSError)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=None),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> Reply:
        """``path`` is relative to the base URL; ``json`` or ``content`` is the body."""
        if self._session is None:
            raise RuntimeError("use the client as `async with HttpClient(...) as client`")
        try:
            async with self._session.request(
                method, next(self._turn) + path, headers=headers, json=json, data=content
            ) as response:
                return Reply(response.status, response.headers, await response.read())
        except self._errors as exc:
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def warm_up(self, path: str, connections: int = 16) -> None:
        """Open ``connections`` kept-alive connections (GET ``path``, answers ignored) before a
        schedule starts, so that its first arrivals do not each open one of their own: at
        2,000 arrivals/s that pile-up alone costs tens of milliseconds of lag."""
        count = min(connections, self.max_connections)
        for _ in range(2):  # the second round runs on the kept-alive connections
            await asyncio.gather(*(self.get(path) for _ in range(count)), return_exceptions=True)

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def post(
        self, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        return await self.request("POST", path, json=json, headers=headers)


# ---------------------------------------------------------------------------- the event loop
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop, the generator's event loop.

    Chosen by measurement (`bookify bench generator`, 2,000 arrivals/s): on asyncio's own loop
    the generator made 3,426 requests per CPU-second with a scheduling lag p99 of 27.5 ms; on
    uvloop, 3,648-4,787 with 10-22 ms (five runs).
    """
    import uvloop  # here, not at the top: Locust's processes import this module too

    return uvloop.run(main)


# ---------------------------------------------------------------------------- the schedule
@dataclass
class OpenModelResult:
    rate: float
    duration: float
    intended: int = 0
    completed: int = 0
    dropped: int = 0
    failed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latency_us: HdrHistogram = field(default_factory=new_histogram)
    schedule_lag_us: HdrHistogram = field(default_factory=new_histogram)
    elapsed: float = 0.0

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0


async def run_open_model(
    send: Callable[[int], Awaitable[int]],
    *,
    rate: float,
    duration: float,
    max_in_flight: int = 512,
) -> OpenModelResult:
    """Call ``send(i)`` ``rate`` times a second for ``duration`` seconds; ``send`` returns a status.

    ``latency_us`` counts from each arrival's intended start to its answer;
    ``schedule_lag_us`` from its intended start to the moment ``send`` is called (or it is
    dropped), which is when its request goes out, not merely when it was handed to the loop.
    A ``send`` that raises counts as failed (status 0). Waits for in-flight requests at the
    end; cancelled, it cancels them. Objects alive at the start are moved out of the cyclic
    garbage collector's reach (``gc.freeze``): a full collection over a big process (numpy,
    scipy, pydantic...) pauses the loop for tens of milliseconds, which would show up as
    scheduling lag and as latency.
    """
    gc.freeze()
    result = OpenModelResult(rate=rate, duration=duration)
    total = int(rate * duration)
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    latency, lag = result.latency_us, result.schedule_lag_us

    async def one(i: int, intended: float) -> None:
        lag.record_value(max(1, int((loop.time() - intended) * 1e6)))
        status = 0
        try:
            status = await send(i)
        except Exception:
            result.failed += 1
        result.statuses[status] += 1
        result.completed += 1
        latency.record_value(max(1, int((loop.time() - intended) * 1e6)))

    try:
        for i in range(total):
            intended = start + i / rate
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                lag.record_value(max(1, int((loop.time() - intended) * 1e6)))
                result.dropped += 1
                continue
            task = loop.create_task(one(i, intended))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        result.intended = total
        if in_flight:
            await asyncio.wait(in_flight)
    finally:
        for task in in_flight:
            task.cancel()
    result.elapsed = loop.time() - start
    return result
