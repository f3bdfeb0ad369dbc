from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hdrh.histogram import HdrHistogram

from loadtests.openmodel import HttpClient, HttpError, run, run_open_model


def ms(histogram: HdrHistogram, p: float) -> float:
    return float(histogram.get_value_at_percentile(p)) / 1000.0


async def test_every_scheduled_arrival_is_sent_and_answered() -> None:
    async def send(_: int) -> int:
        return 202

    result = await run_open_model(send, rate=200, duration=0.5)
    assert (result.intended, result.completed, result.dropped) == (100, 100, 0)
    assert result.statuses == {202: 100}


async def test_a_stalled_request_does_not_hold_back_the_ones_after_it() -> None:
    async def send(i: int) -> int:
        await asyncio.sleep(0.3 if i == 0 else 0)
        return 200

    result = await run_open_model(send, rate=100, duration=0.5)
    assert result.completed == 50
    assert ms(result.latency_us, 100) >= 300
    assert ms(result.latency_us, 50) < 50


async def test_latency_counts_from_the_intended_start_not_the_actual_one() -> None:
    # The first send blocks the whole event loop for 100 ms (a stalled generator): the
    # arrivals due meanwhile start late, and that lateness is charged to their latency.
    async def send(i: int) -> int:
        if i == 0:
            time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is the point
        return 200

    result = await run_open_model(send, rate=100, duration=2)
    assert result.completed == 200
    assert ms(result.latency_us, 90) < 20
    assert ms(result.latency_us, 99) >= 80
    assert ms(result.schedule_lag_us, 100) >= 80


async def test_arrivals_that_find_the_pool_full_are_dropped_not_delayed() -> None:
    async def send(_: int) -> int:
        await asyncio.sleep(0.04)
        return 200

    result = await run_open_model(send, rate=100, duration=0.5, max_in_flight=1)
    assert result.intended == 50
    assert result.dropped > 25
    assert result.completed + result.dropped == result.intended


async def test_a_send_that_raises_counts_as_failed() -> None:
    async def send(i: int) -> int:
        if i % 2:
            raise ConnectionError("refused")
        return 202

    result = await run_open_model(send, rate=100, duration=0.2)
    assert result.failed == 10
    assert result.statuses == {202: 10, 0: 10}


async def test_a_cancelled_run_cancels_its_requests_in_flight() -> None:
    started: list[asyncio.Task[None] | None] = []
    all_started = asyncio.Event()

    async def send(_: int) -> int:
        started.append(asyncio.current_task())
        if len(started) == 10:
            all_started.set()
        await asyncio.sleep(60)
        return 200

    run = asyncio.create_task(run_open_model(send, rate=100, duration=0.1))
    await asyncio.wait_for(all_started.wait(), timeout=5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0)
    assert all(task is not None and task.cancelled() for task in started)


# ---------------------------------------------------------------------------- HttpClient
@pytest.fixture
async def server() -> AsyncIterator[tuple[str, set[object]]]:
    """A loopback HTTP server; yields its URL and the client ports it has seen."""
    peers: set[object] = set()
    release = asyncio.Event()

    async def hello(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"hello": request.headers.get("X-Who", "?")})

    async def create(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {"got": body.decode(), "type": request.content_type},
            status=202,
            headers={"Location": "/things/7"},
        )

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.add_routes(
        [
            web.get("/hello", hello),
            web.get("/api/hello", hello),
            web.post("/things", create),
            web.get("/slow", slow),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", peers
    release.set()
    await runner.cleanup()


async def test_the_client_sends_headers_and_bodies_and_reads_the_answer(
    server: tuple[str, set[object]],
) -> None:
    url, _ = server
    async with HttpClient(url + "/") as client:
        got = await client.get("/hello", headers={"X-Who": "alice"})
        assert (got.status, got.json()) == (200, {"hello": "alice"})

        created = await client.post("/things", json={"n": 1})
        assert created.status == 202
        assert created.headers["location"] == "/things/7"  # names are case-insensitive
        assert created.json() == {"got": '{"n": 1}', "type": "application/json"}

        raw = await client.request(
            "POST", "/things", content=b"{oops", headers={"Content-Type": "application/json"}
        )
        assert raw.json()["got"] == "{oops"

    async with HttpClient(url + "/api") as under_a_path:
        assert (await under_a_path.get("/hello")).status == 200


async def test_the_open_model_reuses_kept_alive_connections(
    server: tuple[str, set[object]],
) -> None:
    url, peers = server
    async with HttpClient(url, max_connections=8) as client:

        async def send(_: int) -> int:
            return (await client.get("/hello")).status

        result = await run_open_model(send, rate=400, duration=0.5)
    assert result.statuses == {200: 200}
    assert len(peers) <= 8


async def test_a_request_without_an_answer_raises_http_error(
    server: tuple[str, set[object]],
) -> None:
    url, _ = server
    async with HttpClient(url, timeout=0.2) as client:
        with pytest.raises(HttpError, match="GET /slow"):
            await client.get("/slow")
    async with HttpClient("http://127.0.0.1:1") as client:
        with pytest.raises(HttpError):
            await client.get("/")


async def test_several_base_urls_take_the_requests_in_turn(
    server: tuple[str, set[object]],
) -> None:
    url, _ = server
    other = web.Application()
    seen: list[str] = []

    async def hello(_: web.Request) -> web.Response:
        seen.append("other")
        return web.json_response({"hello": "other"})

    other.add_routes([web.get("/hello", hello)])
    runner = web.AppRunner(other)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        second = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with HttpClient(f"{url}, {second}/") as client:
            answers = [(await client.get("/hello")).json()["hello"] for _ in range(4)]
    finally:
        await runner.cleanup()
    assert answers == ["?", "other", "?", "other"]  # a gateway each, in turn
    assert len(seen) == 2


async def test_the_client_is_only_usable_inside_async_with() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await HttpClient("http://127.0.0.1:1").get("/")


def test_run_drives_the_generator_on_uvloop() -> None:
    async def loop_module() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    assert run(loop_module()).startswith("uvloop")
