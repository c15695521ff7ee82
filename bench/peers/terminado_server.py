"""terminado (Jupyter's terminal backend) as a benchmark peer: a tornado app with one
bash per WebSocket. Prints "listening on PORT" when ready."""

import asyncio
import socket

import tornado.web
from terminado import TermSocket, UniqueTermManager


async def main() -> None:
    manager = UniqueTermManager(shell_command=["/bin/bash", "--norc", "--noprofile", "-i"])
    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": manager})])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import tornado.httpserver

    asyncio.run(main())
