"""The coalescing HTTP protocol: one socket write per response, and nothing lost or reordered."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from checkpoint2svc.runtime.http_protocol import (
    FLUSH_AT_BYTES,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)


class RecordingTransport:
    """Only what CoalescingTransport calls; records the writes that would be syscalls."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def run_steps(body: Any) -> RecordingTransport:
    async def main() -> RecordingTransport:
        inner = RecordingTransport()
        await body(CoalescingTransport(inner, asyncio.get_running_loop()), inner)  # type: ignore[arg-type]
        return inner

    return asyncio.run(main())


def test_writes_of_one_loop_step_leave_as_one() -> None:
    async def body(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert inner.writes == []  # held until the step ends
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)

    inner = run_steps(body)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def close(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        transport.write(b"last words")
        transport.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left to send

    closed = run_steps(close)
    assert closed.writes == [b"last words"] and closed.closed

    async def abort(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)

    aborted = run_steps(abort)
    assert aborted.writes == [] and aborted.aborted


def test_large_writes_are_not_held() -> None:
    chunk = b"x" * (FLUSH_AT_BYTES // 2)

    async def body(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        transport.write(chunk)
        assert inner.writes == []
        transport.write(chunk)  # reaches the threshold: sent now, flow control sees it
        assert inner.writes == [chunk + chunk]
        assert transport.get_write_buffer_size() == 0
        transport.write(b"tail")
        assert transport.get_write_buffer_size() == 4

    assert run_steps(body).writes == [chunk + chunk, b"tail"]  # the tail: at the next step


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def body(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        transport.write(b"late")
        inner.closed = True  # the peer went away during the step
        await asyncio.sleep(0)

    assert run_steps(body).writes == []


def test_other_transport_calls_reach_the_real_transport() -> None:
    async def body(transport: CoalescingTransport, inner: RecordingTransport) -> None:
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        assert not transport.is_closing()

    run_steps(body)


# A real uvicorn server with the protocol, over a real socket.

BIG = 3 * FLUSH_AT_BYTES + 123


async def app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(BIG).encode())]})  # fmt: skip
        for start in range(0, BIG, 10_000):
            chunk = bytes([65 + (start // 10_000) % 26]) * min(10_000, BIG - start)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    message = await receive()
    body = b"echo:" + message.get("body", b"")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="uvloop", http=CoalescingHttpToolsProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            threading.Event().wait(0.02)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def read_response(conn: socket.socket, buffer: bytearray) -> bytes:
    """One response (content-length framed) from ``conn``; surplus bytes stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        assert data, f"connection closed mid-headers: {bytes(buffer)!r}"
        buffer += data
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))  # fmt: skip
    end = len(head) + 4 + length
    while len(buffer) < end:
        data = conn.recv(65536)
        assert data, "connection closed mid-body"
        buffer += data
    response = bytes(buffer[:end])
    del buffer[:end]
    return response


def test_keep_alive_and_pipelined_requests_get_whole_responses_in_order(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        buffer = bytearray()
        for i in range(3):
            conn.sendall(b"POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % i)
            assert read_response(conn, buffer).endswith(b"\r\n\r\necho:%d" % i)
        conn.sendall(b"".join(
            b"POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n%d" % i for i in range(5)
        ))  # fmt: skip
        answers = [read_response(conn, buffer) for _ in range(5)]
        assert [a.rsplit(b"echo:", 1)[1] for a in answers] == [b"%d" % i for i in range(5)]


def test_a_response_before_close_arrives_whole(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(b"POST /e HTTP/1.0\r\ncontent-length: 2\r\n\r\nhi")
        received = b""
        while data := conn.recv(65536):
            received += data
    assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"\r\n\r\necho:hi")


def test_a_streamed_body_beyond_the_threshold_arrives_intact(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        response = read_response(conn, bytearray())
    body = response.partition(b"\r\n\r\n")[2]
    assert len(body) == BIG
    last = bytes([65 + (BIG // 10_000) % 26])
    assert body[:10_000] == b"A" * 10_000 and body[-123:] == last * 123
