"""A tampering HTTPS proxy between a station and an S3 server, for tests (issue 9).

It stands where a faulty network card, a broken middlebox or an attacker would: it terminates TLS on
127.0.0.1 with a throwaway certificate (``tests.tls``; clients trust it through ``AWS_CA_BUNDLE``),
forwards every request to an upstream S3 server (moto's HTTP server, Ceph RGW) and relays the answer.
The ``Host`` header goes upstream unchanged, so signatures made for the proxy's address verify there.

While a fault is armed it applies to every exchange it matches, and ``applied`` counts it, so a test
can show the fault really happened:

- ``upload-body``: one byte of the body of every PutObject and UploadPart request flipped;
- ``upload-etag``: the ``ETag`` header of every answer to PutObject and UploadPart altered;
- ``upload-checksum``: the ``x-amz-checksum-sha256`` header of those answers altered (added, where
  the server sent none);
- ``complete-etag``: the ``ETag`` in the XML answer to CompleteMultipartUpload altered;
- ``complete-etag-empty``: that ``ETag`` emptied (as Ceph RGW 16 answers);
- ``listing-etag``: every ``ETag`` in the XML answer to ListObjectVersions altered;
- ``listing-etag-empty``: those emptied.

Everything else passes through as it came: bodies of a known length (up to a part, buffered so a
stale upstream connection can be retried), chunked request bodies still chunked, answers streamed
(a large GET never sits in memory), keep-alive on both sides.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.tls import TlsFiles

FAULTS = (
    "upload-body",
    "upload-etag",
    "upload-checksum",
    "complete-etag",
    "complete-etag-empty",
    "listing-etag",
    "listing-etag-empty",
)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    # the proxy has already answered "100 Continue" and holds the whole body
    "expect",
}
_COPY_SIZE = 256 * 1024
_XML_ETAG = re.compile(rb"<ETag>(.*?)</ETag>", re.DOTALL)


def altered(value: str) -> str:
    """The same text with its first digit or ``a``-``f`` changed (an ETag's first hex digit, not a
    letter of ``&quot;`` around it); an empty value becomes ``0``."""
    for index, char in enumerate(value):
        if char in "0123456789abcdef":
            replacement = "1" if char == "0" else "0"
            return value[:index] + replacement + value[index + 1 :]
    return value + "0"


def flip_one_byte(body: bytes) -> bytes:
    """The body with the lowest bit of its middle byte flipped."""
    if not body:
        return body
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


def _operation(method: str, target: str, headers: Any) -> str:
    """Which S3 operation a request is, as far as the faults care."""
    parts = urlsplit(target)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query, keep_blank_values=True)
    names = set(query) - {"x-id"}
    if method == "PUT" and len(segments) >= 2 and "x-amz-copy-source" not in headers:
        if {"partNumber", "uploadId"} <= names:
            return "UploadPart"
        if not names:
            return "PutObject"
    if method == "POST" and len(segments) >= 2 and "uploadId" in names:
        return "CompleteMultipartUpload"
    if method == "GET" and len(segments) == 1 and "versions" in names:
        return "ListObjectVersions"
    return "other"


class TamperingProxy:
    """``with TamperingProxy(upstream, tls) as proxy:``, then point boto3 at ``proxy.url``."""

    def __init__(self, upstream: str, tls: TlsFiles, *, upstream_ca: Path | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {upstream!r} is not an http(s) URL")
        self.upstream = upstream
        self.ca_bundle = tls.certificate
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream_tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._upstream_tls = ssl.create_default_context(cafile=str(upstream_ca) if upstream_ca else None)
        self._faults: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.applied: Counter[str] = Counter()
        """How many exchanges each fault changed."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.certificate), str(tls.key))
        self._server = _Server(("127.0.0.1", 0), _Handler, proxy=self, tls=context)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tampering-proxy", daemon=True
        )

    # -- faults ------------------------------------------------------------------------------------

    def arm(self, *faults: str) -> None:
        """Apply these faults (and no others) from now on."""
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        with self._lock:
            self._faults = frozenset(faults)

    def disarm(self) -> None:
        self.arm()

    def armed(self, fault: str) -> bool:
        return fault in self._faults

    def count(self, fault: str) -> None:
        with self._lock:
            self.applied[fault] += 1

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> TamperingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> TamperingProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def upstream_connection(self) -> http.client.HTTPConnection:
        if self._upstream_tls is not None:
            return http.client.HTTPSConnection(
                self._upstream_host, self._upstream_port, timeout=120, context=self._upstream_tls
            )
        return http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=120)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, *, proxy: TamperingProxy, tls: ssl.SSLContext):
        super().__init__(address, handler)
        self.proxy = proxy
        self.tls = tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-exchange; the test sees its own side of it

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        # the handshake happens in the connection's own thread, not in the accepting one
        return self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True
            raise
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if getattr(self, "_upstream", None) is not None:
                assert self._upstream is not None
                self._upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read failures, not access logs

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    # -- one exchange ------------------------------------------------------------------------------

    def _relay(self) -> None:
        proxy = self.server.proxy
        operation = _operation(self.command, self.path, {k.lower() for k in self.headers})
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body = (
            self._read_chunked() if chunked else self.rfile.read(int(self.headers.get("Content-Length", 0)))
        )
        if operation in ("PutObject", "UploadPart") and proxy.armed("upload-body") and body:
            body = flip_one_byte(body)
            proxy.count("upload-body")
        headers = [(name, value) for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        answer = self._send_upstream(headers, body, chunked)
        try:
            self._answer(operation, answer)
        finally:
            answer.close()

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers: none that S3 requests carry at the HTTP level
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send_upstream(
        self, headers: list[tuple[str, str]], body: bytes, chunked: bool
    ) -> http.client.HTTPResponse:
        # A kept-alive upstream connection the server has closed fails on first use: retry once on a
        # new one (the body is held, so the request can be sent again).
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = self.server.proxy.upstream_connection()
            try:
                self._upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    self._upstream.putheader(name, value)
                self._upstream.endheaders()
                if chunked:
                    if body:
                        self._upstream.send(b"%x\r\n%s\r\n" % (len(body), body))
                    self._upstream.send(b"0\r\n\r\n")
                elif body:
                    self._upstream.send(body)
                return self._upstream.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _answer(self, operation: str, answer: http.client.HTTPResponse) -> None:
        proxy = self.server.proxy
        headers = [(name, value) for name, value in answer.getheaders() if name.lower() not in _HOP_BY_HOP]
        if operation in ("PutObject", "UploadPart") and answer.status == 200:
            headers = self._tampered_headers(headers)
        xml_faults = {
            "CompleteMultipartUpload": ("complete-etag", "complete-etag-empty"),
            "ListObjectVersions": ("listing-etag", "listing-etag-empty"),
        }.get(operation, ())
        armed = [fault for fault in xml_faults if proxy.armed(fault)]
        if armed and answer.status == 200:
            body = self._tampered_xml(answer.read(), armed[0])
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
            self._send_head(answer, headers)
            self.wfile.write(body)
            return
        no_body = self.command == "HEAD" or answer.status in (204, 304) or 100 <= answer.status < 200
        length = answer.getheader("Content-Length")
        if no_body:
            self._send_head(answer, headers)
        elif length is not None:
            self._send_head(answer, headers)
            self._copy(answer)
        else:  # chunked (or ended by closing): relayed chunked, as it comes
            self._send_head(answer, [*headers, ("Transfer-Encoding", "chunked")])
            while data := answer.read1(_COPY_SIZE):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_head(self, answer: http.client.HTTPResponse, headers: Iterable[tuple[str, str]]) -> None:
        self.send_response_only(answer.status, answer.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _copy(self, answer: http.client.HTTPResponse) -> None:
        while data := answer.read(_COPY_SIZE):
            self.wfile.write(data)

    def _tampered_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        proxy = self.server.proxy
        changed: list[tuple[str, str]] = []
        for name, value in headers:
            lower = name.lower()
            if lower == "etag" and proxy.armed("upload-etag"):
                value = altered(value)
                proxy.count("upload-etag")
            elif lower == "x-amz-checksum-sha256" and proxy.armed("upload-checksum"):
                value = altered(value)
                proxy.count("upload-checksum")
            changed.append((name, value))
        if proxy.armed("upload-checksum") and not any(
            n.lower() == "x-amz-checksum-sha256" for n, _ in headers
        ):
            # a server that keeps no checksum (Ceph RGW 16) made to claim one: a forged account
            changed.append(("x-amz-checksum-sha256", base64.b64encode(b"\0" * 32).decode("ascii")))
            proxy.count("upload-checksum")
        return changed

    def _tampered_xml(self, body: bytes, fault: str) -> bytes:
        empty = fault.endswith("-empty")

        def tamper(match: re.Match[bytes]) -> bytes:
            self.server.proxy.count(fault)
            if empty:
                return b"<ETag></ETag>"
            return b"<ETag>" + altered(match.group(1).decode()).encode() + b"</ETag>"

        return _XML_ETAG.sub(tamper, body)
