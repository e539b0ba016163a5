"""One aiohttp server on 127.0.0.1 in its own thread and event loop: the loopback fakes' shared lifecycle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["start_server"]


def start_server(owner: Any, routes: Callable[[web.Application], None], name: str) -> int:
    """Serve an app whose routes ``routes(app)`` adds on a free port of 127.0.0.1, in a daemon thread named
    ``name``; sets ``owner._loop``, ``owner._thread``, ``owner._runner`` and ``owner.port`` (the server's loop
    runs until ``owner._loop.stop()``; then the runner is cleaned up and the loop closed).  returns the port.
    raises RuntimeError when the server does not start within 10 s."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    err: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            app = web.Application()
            routes(app)
            owner._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.2)
            loop.run_until_complete(owner._runner.setup())
            site = web.TCPSite(owner._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            owner.port = site._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # pragma: no cover - surfaced to the caller
            err.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(owner._runner.cleanup())
        loop.close()

    owner._loop = loop
    owner._thread = threading.Thread(target=run, name=name, daemon=True)
    owner._thread.start()
    ready.wait(10)
    if err or owner.port is None:
        raise RuntimeError(f"{name} did not start: {err}")
    return owner.port
