"""A TCP forwarder between the manager and the stand-in, for faults that live in the
network rather than in the API server: a connection that goes silent without a FIN (a
dead NAT entry: :meth:`Forwarder.freeze`), an address the server's certificate does not
name (``tls-server-name``), and an HTTP CONNECT proxy (``proxy-url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial

import trio


@dataclass(eq=False)
class Link:
    """One forwarded connection. ``frozen``: nothing more passes either way, and
    nothing is closed: a half-open socket as the client sees it."""

    watch: bool = False  # it carried a watch request
    frozen: bool = False
    thawed: trio.Event = field(default_factory=trio.Event)


class Forwarder:
    def __init__(self, target: tuple[str, int], *, connect_proxy: bool = False) -> None:
        self.target = target
        self.connect_proxy = connect_proxy
        self.links: list[Link] = []
        self.connects: list[bytes] = []  # CONNECT request lines seen

    def freeze(self, *, watches_only: bool = True) -> int:
        """Stop every current connection (those that carried a watch) dead."""
        frozen = 0
        for link in self.links:
            if link.watch or not watches_only:
                link.frozen = True
                frozen += 1
        return frozen

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> None:
        while True:
            data = await source.receive_some(65536)
            if not data:
                break
            if b"watch=1" in data:
                link.watch = True
            if link.frozen:
                await trio.sleep_forever()
            await sink.send_all(data)
        await sink.send_eof()

    async def _handle(self, client: trio.SocketStream) -> None:
        link = Link()
        self.links.append(link)
        async with client:
            if self.connect_proxy:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await client.receive_some(4096)
                    if not chunk:
                        return
                    head += chunk
                request_line = head.split(b"\r\n", 1)[0]
                self.connects.append(request_line)
                method, authority, _ = request_line.split(b" ", 2)
                assert method == b"CONNECT", request_line
                host, _, port = authority.decode().rpartition(":")
                server = await trio.open_tcp_stream(host.strip("[]"), int(port))
                await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                server = await trio.open_tcp_stream(*self.target)
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, link)
                nursery.start_soon(self._pump, server, client, link)


@asynccontextmanager
async def forwarder(
    target: tuple[str, int], *, host: str = "127.0.0.1", connect_proxy: bool = False
) -> AsyncIterator[tuple[Forwarder, int]]:
    """A running :class:`Forwarder` on ``host``; yields it and its port."""
    fwd = Forwarder(target, connect_proxy=connect_proxy)

    async def serve(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await fwd._handle(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host=host))
        port = listeners[0].socket.getsockname()[1]
        yield fwd, port
        nursery.cancel_scope.cancel()
