from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

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

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one", b",two", b",three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def bye(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        response = web.Response(text="bye")
        response.force_close()
        return response

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
            web.get("/chunked", chunked),
            web.get("/bye", bye),
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
        assert created.json()["type"] == "application/json"
        assert json.loads(created.json()["got"]) == {"n": 1}

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


async def test_a_chunked_answer_is_read_in_full(server: tuple[str, set[object]]) -> None:
    url, _ = server
    async with HttpClient(url) as client:
        reply = await client.get("/chunked")
    assert (reply.status, reply.body) == (200, b"one,two,three")
    assert reply.headers["Transfer-Encoding"] == "chunked"


async def test_a_connection_closed_after_its_answer_is_not_used_again(
    server: tuple[str, set[object]],
) -> None:
    url, peers = server
    async with HttpClient(url, max_connections=1) as client:
        assert (await client.get("/hello", headers={"Connection": "close"})).status == 200
        assert (await client.get("/bye")).status == 200  # answered with Connection: close
        assert (await client.get("/hello")).status == 200
    assert len(peers) == 3


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    """A server may close a kept-alive connection while it idles (uvicorn does after 5 s);
    the next request opens a new one instead of failing on the old."""
    closed = asyncio.Event()
    connections = 0

    async def answer_then_close(writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive, then
        await writer.drain()

    async with await raw_server(answer_then_close, closed) as raw:
        port = raw.sockets[0].getsockname()[1]
        async with HttpClient(f"http://127.0.0.1:{port}", max_connections=1) as client:
            assert (await client.get("/")).body == b"ok"
            await closed.wait()
            idle = client._origins[0].idle
            async with asyncio.timeout(5):  # until the client's loop has seen the close
                while not idle[0].closed:  # noqa: ASYNC110 (the client has no event for it)
                    await asyncio.sleep(0.001)
            assert (await client.get("/")).body == b"ok"
    assert connections == 2


async def test_a_request_that_timed_out_hangs_up_its_connection() -> None:
    """Its answer may still come: the connection is closed, never reused or left open."""
    hung_up = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if await reader.read() == b"":  # the client closed its side
            hung_up.set()
        writer.close()

    async with await asyncio.start_server(handle, "127.0.0.1", 0) as silent:
        port = silent.sockets[0].getsockname()[1]
        async with HttpClient(f"http://127.0.0.1:{port}", max_connections=1, timeout=0.2) as client:
            with pytest.raises(HttpError, match="TimeoutError"):
                await client.get("/")
            async with asyncio.timeout(5):
                await hung_up.wait()


async def raw_server(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]], closed: asyncio.Event | None = None
) -> asyncio.Server:
    """A TCP server that reads one request's head, lets ``answer`` write anything, then closes
    the connection (and sets ``closed``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await answer(writer)
        writer.close()
        await writer.wait_closed()
        if closed is not None:
            closed.set()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "HttpParserError"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "ConnectionResetError"),
        (b"", "ConnectionResetError"),
    ],
    ids=["not-http", "cut-short", "closed-unanswered"],
)
async def test_an_answer_that_is_not_whole_http_raises_http_error(
    answer: bytes, error: str
) -> None:
    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()

    async with await raw_server(send) as raw:
        port = raw.sockets[0].getsockname()[1]
        async with HttpClient(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(HttpError, match=error):
                await client.get("/")


async def test_https_is_spoken_and_the_certificate_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"hello": "tls"})

    app = web.Application()
    app.add_routes([web.get("/hello", hello)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    port = runner.addresses[0][1]
    try:
        async with HttpClient(f"https://localhost:{port}") as client:
            with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get("/hello")  # not signed by a CA the client trusts
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default trust, for this test
        async with HttpClient(f"https://localhost:{port}") as client:
            assert (await client.get("/hello")).json() == {"hello": "tls"}
    finally:
        await runner.cleanup()


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


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
