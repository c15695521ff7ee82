"""The line `webterm pty` prints once it listens, and its one parser."""

from __future__ import annotations

import pytest

from webterm.pty import LISTENING_PREFIX, listening_line, parse_listening_line


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", 7681), ("10.1.2.3", 0), ("::1", 65535)])
def test_the_line_round_trips(host: str, port: int) -> None:
    assert parse_listening_line(listening_line(host, port) + "\n") == (host, port)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "fakeserver listening on http://127.0.0.1:80",
        LISTENING_PREFIX + "127.0.0.1",
        LISTENING_PREFIX + "127.0.0.1:http",
        LISTENING_PREFIX + ":7681",
        "Traceback (most recent call last):",
    ],
)
def test_any_other_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="listening line"):
        parse_listening_line(line)
