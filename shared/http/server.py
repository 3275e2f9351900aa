"""The HTTP server of every service: uvicorn with httptools, refusing oversized or malformed
request heads itself, as problem+json, before the application sees them.

httptools has no limit on a request head: it concatenates a header's pieces as they arrive
until the line ends, so a 200 MB header was read whole (quadratically, for minutes) and stalled
every other client of the process. The protocol here counts the head's bytes as they arrive and
refuses, once it passes a limit, with 431 (414 for the request target) and closes the
connection without reading the rest. A head httptools cannot parse (`Content-Length: -1`, two
Content-Lengths, a bad request line) is answered 400 problem+json instead of uvicorn's plain
text.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import uuid
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from shared.http.problems import PROBLEM_BASE, PROBLEM_JSON
from shared.settings import ServiceSettings

access_log = logging.getLogger("itsm.access")

# After a refusal the connection is half-closed and what the client still sends is read and
# dropped for a moment, up to a bound: closing at once with unread data makes the kernel reset
# the connection, and a client still sending may then never read the answer (RFC 9112 §9.6).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024


class _HeadRefused(Exception):
    """Raised from a parser callback: the head passed a limit."""

    def __init__(self, status: int, field: str, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.status = status
        self.field = field
        self.detail = detail
        self.limit = limit


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request-head limits and problem+json refusals.

    Subclassed per process by `http_protocol()`, which sets the two limits.
    """

    max_header_bytes = 8192  # one header (name and value), or the request target
    max_head_bytes = 32768  # request line and every header

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True
        # The current request's head, two ways: the target and complete headers (exact), and
        # whole reads that ended inside the head (which sees a header that never ends).
        self._head_bytes = 0
        self._read_in_head = 0
        self._began_in_read = False
        self._dropped: int | None = None  # after a refusal: bytes read and dropped

    def on_message_begin(self) -> None:
        """A request begins: its head is counted from here."""
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._read_in_head = 0
        self._began_in_read = True

    def on_url(self, url: bytes) -> None:
        """A piece of the request target (several for a target split across reads)."""
        super().on_url(url)
        self._head_bytes += len(url)
        if len(self.url) > self.max_header_bytes:
            limit = self.max_header_bytes
            raise _HeadRefused(414, "target", f"the request target exceeds {limit} bytes", limit)

    def on_header(self, name: bytes, value: bytes) -> None:
        """A complete header (httptools holds it until its line ends; the total bounds that)."""
        if len(name) + len(value) > self.max_header_bytes:
            limit = self.max_header_bytes
            header = name.decode("latin-1")[:100]
            raise _HeadRefused(431, header, f"the {header} header exceeds {limit} bytes", limit)
        self._head_bytes += len(name) + len(value) + 4  # ": " and the line's end
        if self._head_bytes > self.max_head_bytes:
            raise self._head_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete: what follows is the body, which the app's limits cover."""
        self._reading_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; refuse a head that passed a limit or could not be parsed."""
        if self._dropped is not None:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        self._began_in_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse_head(exc.__context__)
            else:
                self._refuse_malformed(exc)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self._refuse_malformed(exc)
        else:
            if self._reading_head and not self._began_in_read:
                # The head is still open after a read that lay wholly inside it: count the read,
                # so that a header that never ends is refused once the total passes the limit,
                # not read whole. (The read in which the request began may also hold the end of
                # a pipelined one: it is left out, which lets one read more through at most.)
                self._read_in_head += len(data)
                if self._read_in_head > self.max_head_bytes:
                    self._refuse_head(self._head_too_large())

    def _head_too_large(self) -> _HeadRefused:
        limit = self.max_head_bytes
        detail = f"the request line and headers exceed {limit} bytes"
        return _HeadRefused(431, "headers", detail, limit)

    def _refuse_head(self, refusal: _HeadRefused) -> None:
        title = http.HTTPStatus(refusal.status).phrase
        self._answer_and_close(
            refusal.status,
            {
                "type": PROBLEM_BASE
                + ("uri-too-long" if refusal.status == 414 else "headers-too-large"),
                "title": title,
                "status": refusal.status,
                "detail": refusal.detail,
                "errors": [
                    {
                        "in": "header" if refusal.status == 431 else "target",
                        "field": refusal.field,
                        "detail": f"larger than {refusal.limit} bytes",
                    }
                ],
                "max_bytes": refusal.limit,
            },
        )

    def _refuse_malformed(self, exc: httptools.HttpParserError) -> None:
        # llhttp's reasons are fixed ASCII phrases ("Invalid character in Content-Length").
        reason = str(exc).strip() or type(exc).__name__
        self._answer_and_close(
            400,
            {
                "type": PROBLEM_BASE + "malformed-request",
                "title": "Bad Request",
                "status": 400,
                "detail": f"malformed HTTP request: {reason}",
            },
        )

    def _answer_and_close(self, status: int, problem: dict[str, Any]) -> None:
        """Write a problem+json answer and close: the rest of the request is never parsed."""
        cid = str(uuid.uuid4())
        if self.cycle is not None and not self.cycle.response_complete:
            # The app is still answering an earlier, pipelined request on this connection: ours
            # cannot go out without mixing the two. End the connection.
            self.transport.close()
        else:
            body = json.dumps(problem).encode()
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: ",
                PROBLEM_JSON.encode(),
                b"\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\nx-correlation-id: ",
                cid.encode(),
                b"\r\nconnection: close\r\n\r\n",
                body,
            ]
            self.transport.write(b"".join(head))
            self._dropped = 0
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        # The app never saw this request: the access log line is written here.
        access_log.info(
            "request",
            extra={
                "correlation_id": cid,
                "method": _method_of(self.parser),
                "route": "unmatched",
                "status": status,
                "duration_ms": None,
                "tenant": None,
                "subject": None,
                "detail": problem["detail"],
            },
        )


def _method_of(parser: httptools.HttpRequestParser) -> str | None:
    try:
        return parser.get_method().decode("ascii")
    except Exception:  # no request line yet, or not one httptools understood
        return None


def http_protocol(header_bytes: int, head_bytes: int) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with this process's request-head limits."""

    class WithLimits(LimitedHttpToolsProtocol):
        max_header_bytes = header_bytes
        max_head_bytes = head_bytes

    return WithLimits


def server_config(app: ASGIApp, settings: ServiceSettings, port: int) -> uvicorn.Config:
    """uvicorn's configuration of a service or relay process: uvloop, httptools with the
    request-head limits, the platform's logging (uvicorn's own access log off: ours is JSON)."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=port,
        log_config=None,
        lifespan="on",
        loop="uvloop",  # both are dependencies; explicit, so that a broken install fails loudly
        http=http_protocol(settings.http_max_header_bytes, settings.http_max_headers_total_bytes),
        access_log=False,
        timeout_graceful_shutdown=10,
    )
