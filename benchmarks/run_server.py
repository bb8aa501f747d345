"""Run any WSGI app on werkzeug's threaded server, gunicorn or waitress, configured as
``private-channels serve`` configures them, so that the side-by-side harness compares
apps, not server settings.

::

    python benchmarks/run_server.py --server waitress --port 9000 limit_app:app

On waitress it runs private-channels' own ``waitress_server`` where that is importable
(the limit's case); otherwise it uses only the standard library and the server's own
package, so the harness also runs it in the throwaway environments of the peers
(pypiserver).  It prints
``listening on PORT`` once the socket is bound.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import sys

WAITRESS_THREADS = 8  # as private_channels.serving.WAITRESS_THREADS
GUNICORN_THREADS = 8  # as private_channels.serving.gunicorn_arguments: threaded workers


def load(spec: str):  # type: ignore[no-untyped-def]
    module, _, attribute = spec.partition(":")
    app = importlib.import_module(module)
    for part in attribute.removesuffix("()").split("."):
        app = getattr(app, part)
    return app() if attribute.endswith("()") else app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("waitress", "werkzeug", "gunicorn"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("app", help="module:attribute, or module:factory() to call it")
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", args.port))
    if args.server == "gunicorn":
        sock.set_inheritable(True)
        print(f"listening on {args.port}", flush=True)
        os.execv(  # noqa: S606
            sys.executable,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(args.workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(GUNICORN_THREADS),
                "--bind",
                f"fd://{sock.fileno()}",
                args.app,  # gunicorn calls "module:factory()" itself
            ],
        )
    app = load(args.app)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    if args.server == "waitress":
        try:
            # The very server `serve` runs (its keep-alive after a 304 included), where
            # private-channels is importable: the limit's case.
            from private_channels.serving import waitress_server
        except ImportError:  # a peer's throwaway environment: waitress as configured there
            from waitress.server import create_server

            server = create_server(
                app, sockets=[sock], threads=WAITRESS_THREADS, max_request_body_size=2 << 30,
                clear_untrusted_proxy_headers=False, asyncore_use_poll=True,
            )  # fmt: skip
        else:
            server = waitress_server(app, sock, max_request_body=2 << 30, threads=WAITRESS_THREADS)
        print(f"listening on {args.port}", flush=True)
        server.run()
        return
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: object, **kwargs: object) -> None:
            pass

    werkzeug = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=Quiet, fd=sock.fileno()
    )
    print(f"listening on {args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        werkzeug.serve_forever()


if __name__ == "__main__":
    main()
