"""A tiny stand-in container process: serves ``GET /healthz`` on --host:--port and
prints the line ``webterm pty`` prints once it listens (:func:`webterm.pty.listening_line`).

Run as a script (``python fakepod.py --host 127.10.0.1 --port 7681``). Options make
it misbehave on purpose: ``--ignore-sigterm`` (so the kubelet must SIGKILL it after
the grace period), ``--exit-after S`` / ``--exit-code N`` (a container that ends by
itself), ``--unhealthy`` (answers /healthz with 503)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webterm.pty import listening_line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--unhealthy", action="store_true")
    args, _ = parser.parse_known_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/healthz" and not args.unhealthy else 503
            if self.path != "/healthz":
                status = 404
            body = b"ok\n" if status == 200 else b"no\n"
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        if signum == signal.SIGTERM and args.ignore_sigterm:
            print("fakepod: ignoring SIGTERM", file=sys.stderr, flush=True)
            return
        print(f"fakepod: signal {signum}, exiting", file=sys.stderr, flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_after is not None:
        timer = threading.Timer(args.exit_after, server.shutdown)
        timer.daemon = True
        timer.start()
    host, port = str(server.server_address[0]), server.server_address[1]
    print(listening_line(host, port), flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    sys.exit(args.exit_code)


if __name__ == "__main__":
    main()
