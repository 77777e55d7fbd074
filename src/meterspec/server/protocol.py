"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on the header section (MS-HTTP-008): a
client that opens a connection, or starts a request, and does not finish its headers within
the deadline is answered 408 and disconnected. uvicorn bounds the body only through the
application (meterspec.server.app.read_body) and the idle time between requests, so without
this a client sending one header byte a minute (slowloris) would hold a connection forever.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from meterspec.server.problems import MEDIA_TYPE, HttpError


def _late() -> bytes:
    error = HttpError.single(408, "request-timeout", "the request's header section did not "
                             "arrive in time", "MS-HTTP-008")
    body = error.document()
    return (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: {MEDIA_TYPE}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def _environment_seconds() -> float:
    """The deadline `meterspec serve --workers N` hands its workers (meterspec.server.app's
    ENVIRONMENT), else 30 seconds."""
    document = json.loads(os.environ.get("METERSPEC_SERVE", "{}"))
    return float(document.get("body_seconds", 30.0))


class HeaderDeadline(H11Protocol):
    """H11Protocol whose requests must complete their header section within `seconds`."""

    seconds = _environment_seconds()
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._between_requests():
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if not self._between_requests():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        cycle = getattr(self, "cycle", None)
        return cycle is None or bool(getattr(cycle, "response_complete", False))

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self._between_requests() or self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(_late())
        self.transport.close()


def with_deadline(seconds: float) -> type[HeaderDeadline]:
    """The protocol class with this deadline (uvicorn takes a class)."""
    return type("HeaderDeadlineProtocol", (HeaderDeadline,), {"seconds": seconds})
