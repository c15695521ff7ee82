"""What the browser dials for a terminal. Pure: no I/O.

``proxy`` mode: this webserver's own ``/terminals/{name}/ws`` on the host the page was
loaded from (``wss`` when the browser sees https). ``nodeport`` mode: the terminal's own
port, on ``--public-host`` if set, else on the address the manager gave."""

from __future__ import annotations

from webterm.config import AddressMode


def terminal_url(
    *,
    address_mode: AddressMode,
    public_host: str | None,
    name: str,
    address: str,
    host: str | None,
    secure: bool,
) -> str:
    """The WebSocket URL for terminal ``name`` listening at ``address`` (``host:port``);
    ``host`` is the page's own validated host, needed in proxy mode."""
    if address_mode == "nodeport":
        terminal_host, _, port = address.rpartition(":")
        if public_host:
            terminal_host = public_host
        if ":" in terminal_host and not terminal_host.startswith("["):
            terminal_host = f"[{terminal_host}]"
        return f"ws://{terminal_host}:{port}/ws"
    scheme = "wss" if secure else "ws"
    return f"{scheme}://{host}/terminals/{name}/ws"


__all__ = ["terminal_url"]
