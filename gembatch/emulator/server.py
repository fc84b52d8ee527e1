"""The HTTP layer: a threaded HTTP/1.1 keep-alive server on the standard library.

Per request: read the body fully (keep-alive depends on it), record it in the stats, apply
latency, check the API key, ask the fault injector, run the endpoint, and answer with a
Content-Length (JSON in one write; downloads streamed from disk with ``sendfile``).
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from gembatch.emulator import control
from gembatch.emulator.api import Request, Response, error_response, match
from gembatch.emulator.wire import ERROR_INFO_TYPE, ApiError

if TYPE_CHECKING:
    from gembatch.emulator.app import Emulator

_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_INVALID_KEY_DETAILS = [
    {
        "@type": ERROR_INFO_TYPE,
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]


class _LimitedReader:
    """The request body as a stream that never reads past Content-Length."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw = raw
        self.left = length

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self._raw.read(size)
        self.left -= len(data)
        return data

    def drain(self) -> None:
        while self.left > 0 and self.read(1 << 20):
            pass


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # many clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup we neither need nor
        # want on a machine without network.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so a stopped emulator answers nothing more."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body must not wait for a delayed ACK
    server_version = "gembatch-emulator"
    sys_version = ""
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests go to the stats log, which never holds the API key."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Clients of this API always send a Content-Length; refuse rather than misparse.
            self.close_connection = True
            self._send(error_response(ApiError(411, "Content-Length is required.")))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(error_response(ApiError(400, "Invalid Content-Length.")))
            return
        stream = _LimitedReader(self.rfile, length)
        host = self.headers.get("Host")
        public_url = f"http://{host}" if host else emulator.base_url

        if path.startswith(control.PREFIX):
            body = stream.read()
            request = Request(method, path, query, self.headers, body, stream, 0, public_url)
            try:
                response = control.handle(emulator, request)
            except ApiError as exc:
                response = error_response(exc)
            except (KeyError, TypeError, ValueError) as exc:
                response = error_response(ApiError(400, f"Bad control request: {exc}"))
            self._send(response)
            return

        endpoint, handler, params = match(method, path, query)
        streamed = endpoint == "files.upload_data"
        body = b"" if streamed else stream.read()
        request = Request(
            method, path, query, self.headers, body, stream, length, public_url, params
        )
        fault: str | None = None
        faults = emulator.faults
        try:
            if endpoint != "unknown":
                delay = faults.latency_for(endpoint)
                if delay > 0:
                    time.sleep(delay)
            if not streamed:  # upload chunks carry no key: the upload URL is the credential
                self._authorize(query)
            if faults.take_hangup(endpoint, carried_out=False):
                self._hang_up(method, path, endpoint, stream)
                return
            injected = faults.before(endpoint)
            if injected is not None:
                fault = injected[1]
                raise injected[0]
            response = emulator.api.handle(handler, request)
            if faults.take_hangup(endpoint, carried_out=True):
                self._hang_up(method, path, endpoint, stream)
                return
            injected = faults.after(endpoint)
            if injected is not None:
                fault = injected[1]
                response = error_response(injected[0])
        except ApiError as exc:
            response = error_response(exc)
            if streamed and fault is None:
                # A rejected chunk is final; without this header the SDK re-sends it 3 times.
                response.headers["X-Goog-Upload-Status"] = "final"
        except Exception as exc:  # a bug in the emulator: answer like the service would
            traceback.print_exc(file=sys.stderr)
            response = error_response(ApiError(500, f"Emulator error: {type(exc).__name__}"))
        stream.drain()

        drop = None
        if response.file is not None:
            drop = emulator.faults.take_drop(endpoint)
            if drop is not None:
                fault = "drop"
        emulator.stats_.record(method, path, endpoint, response.status, fault)
        self._send(response, drop)

    def _hang_up(self, method: str, path: str, endpoint: str, stream: _LimitedReader) -> None:
        """Close the connection without a status line: the client sees it dropped."""
        stream.drain()
        self.server.emulator.stats_.record(method, path, endpoint, 0, "hangup")
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _authorize(self, query: dict[str, str]) -> None:
        key = self.headers.get("x-goog-api-key") or query.get("key")
        if not key:
            raise ApiError(403, _UNREGISTERED, status="PERMISSION_DENIED")
        expected = self.server.emulator.config.api_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(
                400, "API key not valid. Please pass a valid API key.", details=_INVALID_KEY_DETAILS
            )

    def _send(self, response: Response, drop_after: int | None = None) -> None:
        source: BinaryIO | None = None
        if response.file is not None:
            try:
                source = open(response.file[0], "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:  # deleted between lookup and download
                response = error_response(ApiError(404, "File not found."))
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            if source is None or response.file is None:
                self.send_header("Content-Length", str(len(response.body)))
                # Headers and body in one write: one segment on the wire for small answers.
                self._headers_buffer.append(b"\r\n" + response.body)  # type: ignore[attr-defined]
                self.flush_headers()
                return
            size = response.file[1]
            self.send_header("Content-Length", str(size))
            self.end_headers()
            count = size if drop_after is None else min(drop_after, size)
            if count:
                self.connection.sendfile(source, 0, count)  # zero-copy, flat memory
            if drop_after is not None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if source is not None:
                source.close()
