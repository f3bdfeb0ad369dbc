"""An open-model (arrival-rate) load generator that does not suffer coordinated omission.

Requests start on a fixed schedule whether or not earlier ones have answered, into a bounded
pool; an arrival that finds the pool full is counted as dropped, not delayed. Latency is
measured from the *intended* start time, so a stalled server shows up as latency instead of
silently lowering the offered load (Gil Tene's "coordinated omission"). Locust's users are a
closed model and its response-time buckets are rounded, hence this module and HdrHistogram.

:class:`HttpClient` is the one HTTP client the generator's users share (``bookify load
--open`` and ``bookify bench``), and :func:`run` runs a generator on uvloop; each was chosen
by measurement (``bookify bench generator``), as their docstrings say.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httptools
from hdrh.histogram import HdrHistogram

from loadtests.data import base_urls

# Microseconds, 1 µs .. 10 min at 3 significant digits.
LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


# ---------------------------------------------------------------------------- the HTTP client
class HttpError(Exception):
    """A request that got no HTTP answer: refused, reset, timed out, unreadable."""


class Headers(Mapping[str, str]):
    """An answer's header fields, looked up case-insensitively (the last of a repeated name)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # keys lower-cased

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, read in full (the generator's answers are small)."""

    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time (no pipelining); answers are
    parsed by httptools (llhttp, uvicorn's parser) as they arrive."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[Reply] | None = None
        self.closed = False
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            self._fail(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # httptools' side
    def on_message_begin(self) -> None:
        self._headers, self._body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)  # chunked bodies arrive de-chunked

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.close()
        reply = Reply(self.parser.get_status_code(), Headers(self._headers), b"".join(self._body))
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(reply)


class _Origin:
    """One base URL: where to connect, what to put before paths, and its idle connections."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL")
        self.tls = url.scheme == "https"
        default_port = 443 if self.tls else 80
        self.host, self.port = url.hostname, url.port or default_port
        self.host_field = url.netloc.rsplit("@", 1)[-1].encode("latin-1")
        self.path_prefix = url.path.rstrip("/")
        self.idle: list[_Connection] = []


class HttpClient:
    """A keep-alive HTTP/1.1 client for one base URL, for use as ``async with``.

    Paths are appended to the base URL, as httpx does: ``http://h/api`` + ``/v1/x`` is
    ``http://h/api/v1/x``. At most ``max_connections`` connections; a request that finds
    them all busy waits for one (inside its own latency). ``timeout`` bounds each request,
    connecting included. Several comma-separated base URLs (gateway replicas) take the
    requests in turn, over one pool.

    Written here on asyncio's transports and httptools rather than taken from a library,
    because the generator's own cost per request is what limits it: this client makes about
    twice aiohttp's requests per CPU-second, and many times httpx's, with a far smaller
    scheduling lag (see docs/PERFORMANCE.md#the-load-generators-http-client-and-loop). It
    speaks only what the generator needs: a request, then its answer, with a Content-Length or
    chunked body. An answer delimited by closing the connection fails as :class:`HttpError`,
    and so would one to a HEAD request, which the generator never sends.
    """

    def __init__(self, base_url: str, *, max_connections: int = 512, timeout: float = 30.0):
        self._origins = [_Origin(url) for url in base_urls(base_url)]
        self._turn = itertools.cycle(self._origins)
        self.max_connections = max_connections
        self.timeout = timeout
        self._slots: asyncio.Semaphore | None = None
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def __aenter__(self) -> HttpClient:
        self._slots = asyncio.Semaphore(self.max_connections)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        for origin in self._origins:
            origin.idle.clear()
        self._slots = None

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
        if self._slots is None:
            raise RuntimeError("use the client as `async with HttpClient(...) as client`")
        origin = next(self._turn)
        if json is not None:
            content = _json_bytes(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        message = _request_message(method, origin, path, headers, content)
        try:
            async with self._slots, asyncio.timeout(self.timeout):
                connection = await self._connection(origin)
                answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
                connection.answer = answer
                connection.transport.write(message)  # type: ignore[union-attr]
                try:
                    reply = await answer
                except BaseException:  # no answer, or not all of it: the connection is spent
                    connection.close()
                    self._open.discard(connection)
                    raise
                connection.answer = None
                if connection.closed:
                    self._open.discard(connection)
                else:
                    origin.idle.append(connection)
                return reply
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _connection(self, origin: _Origin) -> _Connection:
        """An idle kept-alive connection to ``origin``, or a new one."""
        while origin.idle:
            connection = origin.idle.pop()  # the most recently used: the least likely closed
            if not connection.closed:
                return connection
            self._open.discard(connection)
        if origin.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, origin.host, origin.port, ssl=self._tls if origin.tls else None
        )
        self._open.add(connection)
        return connection

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


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _request_message(
    method: str,
    origin: _Origin,
    path: str,
    headers: Mapping[str, str] | None,
    content: bytes | None,
) -> bytes:
    lines = [f"{method} {origin.path_prefix}{path} HTTP/1.1".encode("latin-1")]
    lines.append(b"Host: " + origin.host_field)
    if headers:
        lines.extend(f"{name}: {value}".encode("latin-1") for name, value in headers.items())
    if content is not None:
        lines.append(b"Content-Length: %d" % len(content))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (content or b"")


# ---------------------------------------------------------------------------- the event loop
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop, the generator's event loop.

    Chosen by measurement: more requests per CPU-second and a smaller scheduling lag than on
    asyncio's own loop (see docs/PERFORMANCE.md#the-load-generators-http-client-and-loop).
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
