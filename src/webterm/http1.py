"""One HTTP/1.1 request and its whole answer over a trio stream, with h11: what the
terminal server's reports and the webserver's calls to the manager share. Neither
imports httpx for it (the terminal server must stay small)."""

from __future__ import annotations

from dataclasses import dataclass

import h11
import trio

from webterm.errors import WebtermError


class ExchangeError(WebtermError):
    """No usable HTTP answer came back."""

    error_status_hint = 502


class NoAnswer(ExchangeError):
    """The connection ended before a byte of the answer: the request may be sent again
    on a new connection (an idle keep-alive connection the server had closed)."""


class BrokenAnswer(ExchangeError):
    """The answer was cut off or was not HTTP."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def exchange(
    stream: trio.abc.Stream,
    connection: h11.Connection,
    method: str,
    target: bytes | str,
    headers: list[tuple[bytes, bytes]] | list[tuple[str, str]],
    body: bytes = b"",
) -> Answer:
    """Send the request, read the answer to its end. The caller sets the deadline, and
    may reuse ``connection`` afterwards if both sides are DONE."""
    answered = False
    try:
        request = h11.Request(method=method, target=target, headers=headers)
        data = connection.send(request)
        if body:
            data += connection.send(h11.Data(data=body))
        data += connection.send(h11.EndOfMessage())
        await stream.send_all(data)
        response: h11.Response | None = None
        content = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                chunk = bytes(await stream.receive_some(65536))
                if not chunk and not answered:
                    raise NoAnswer("the connection closed before any answer")
                answered = answered or bool(chunk)
                connection.receive_data(chunk)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return Answer(response.status_code, list(response.headers), bytes(content))
            elif isinstance(event, h11.ConnectionClosed):
                raise BrokenAnswer("the connection closed mid-answer")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        if not answered:
            raise NoAnswer(str(exc) or type(exc).__name__) from exc
        raise BrokenAnswer(str(exc) or type(exc).__name__) from exc
    except h11.ProtocolError as exc:
        raise BrokenAnswer(str(exc)) from exc
