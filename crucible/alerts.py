"""Operator alerts of the Crucible: halts, kills, outages, foreign orders, the daily loss stop.

Every alert is a log line (logger ``crucible.alerts``, WARNING) and, when ``[crucible] alert_webhook`` is set, an
HTTP POST of one JSON object ``{"source": "crucible", "bench": <bench id>, "kind": <kind>, "time_ms": <venue ms>,
...data}`` (``Content-Type: application/json``) to that URL.  Posts are made by one daemon thread from a bounded
queue (:data:`QUEUE_MAX` alerts; when full the oldest waiting alert is dropped and counted) with a timeout of
``alert_timeout_seconds`` per request, so a slow or dead webhook never blocks the bar loop; a failed post is
logged once per failure and counted, never retried (the journal keeps the event itself).  Standard library only
(``urllib.request``).
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.request
from typing import Any

from forge.core.jsonsafe import dumps as json_dumps

__all__ = ["AlertSink", "QUEUE_MAX"]

log = logging.getLogger("crucible.alerts")

QUEUE_MAX = 256


class AlertSink:
    """Log and (optionally) POST alerts without blocking the caller.

    url: webhook URL ("" = log only); timeout_s: per-request timeout, seconds; bench: bench id sent with each
    alert.  Counters (observability, tests): ``sent``, ``failed``, ``dropped``; ``history`` keeps the last
    alerts raised (dicts as posted).  :meth:`close` waits up to ``timeout_s`` for the queue to drain.
    """

    def __init__(self, url: str = "", *, timeout_s: float = 3.0, bench: str = "") -> None:
        self.url = url
        self.timeout_s = float(timeout_s)
        self.bench = bench
        self.sent = self.failed = self.dropped = 0
        self.history: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def alert(self, kind: str, time_ms: int, **data: Any) -> None:
        """Raise one alert (returns at once)."""
        body = {"source": "crucible", "bench": self.bench, "kind": kind, "time_ms": int(time_ms), **data}
        self.history = (self.history + [body])[-100:]
        log.warning("ALERT %s: %s", kind, json_dumps(data, indent=None)[:400])
        if not self.url:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crucible-alerts", daemon=True)
                self._thread.start()
        while True:
            try:
                self._q.put_nowait(body)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:  # pragma: no cover - raced with the sender
                    pass

    def _run(self) -> None:
        while True:
            body = self._q.get()
            if body is None:
                return
            try:
                req = urllib.request.Request(self.url, data=json_dumps(body, indent=None).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - operator's URL
                    resp.read(1024)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - a broken webhook never stops trading
                self.failed += 1
                log.warning("alert webhook %s failed: %s", body.get("kind"), str(exc)[:200])

    def close(self) -> None:
        """Let the sender post what is queued (at most ``timeout_s`` more), then stop it."""
        t = self._thread
        if t is None:
            return
        try:
            self._q.put(None, timeout=self.timeout_s)
        except queue.Full:
            return
        t.join(self.timeout_s + 1.0)
