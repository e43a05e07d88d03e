"""Request guards: body size refused while streaming (real socket), rate limit, processing timeout."""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.api.guards import request_limit

from ..server import running_server
from .badinput_corpus import encode, photo

LIMIT = 1024 * 1024  # max_request_bytes of the live server below


@pytest.fixture(scope="module")
def live_url(settings):
    env = {"LOOKALIKE_MAX_UPLOAD_BYTES": str(LIMIT // 2), "LOOKALIKE_MAX_REQUEST_BYTES": str(LIMIT)}
    with running_server(settings, **env) as url:
        yield url


def _connect(url: str) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, json.loads(body[:length] or b"{}")


def _head(path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\n{extra}\r\n").encode()


def test_declared_oversize_body_is_refused_before_it_is_sent(live_url):
    """Only the headers go out: the 413 must come back without the server reading any body."""
    with _connect(live_url) as sock:
        sock.sendall(_head("/v1/compare", f"Content-Length: {50 * LIMIT}\r\n"))
        status, headers, body = _read_response(sock)
    assert status == 413 and body["code"] == "request_too_large", body
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"


def test_chunked_oversize_body_is_cut_off_while_streaming(live_url):
    """No Content-Length: the server counts streamed bytes and answers once past the limit."""
    chunk = b"\x00" * (64 * 1024)
    planned = 40 * LIMIT
    sent = 0
    with _connect(live_url) as sock:
        sock.sendall(_head("/v1/compare", "Transfer-Encoding: chunked\r\n"))
        part = (b'--xyz\r\nContent-Disposition: form-data; name="image_1"; filename="a.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n")
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        answered = False
        try:
            while sent < planned:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answered = True
                    break
        except (BrokenPipeError, ConnectionResetError):
            answered = True
        assert answered, "server read the whole oversized body"
        status, _, body = _read_response(sock)
    assert status == 413 and body["code"] == "request_too_large", body
    assert sent < planned / 4  # stopped long before the end


def test_body_within_limit_still_works_over_http(live_url):
    import httpx

    image = encode(photo(), "JPEG", quality=90)
    response = httpx.post(f"{live_url}/v1/compare", files={"image_1": ("a.jpg", image), "image_2": ("b.jpg", image)},
                          timeout=60)
    assert response.status_code == 200 and response.json()["verdict"] == "exact"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_request_limit_is_derived_from_the_upload_limit(settings):
    derived = settings.model_copy(update={"max_upload_bytes": 1000, "max_request_bytes": None})
    assert request_limit(derived) == 4 * 1000 + (1 << 20)
    assert request_limit(settings.model_copy(update={"max_request_bytes": 1234})) == 1234


def test_rate_limit_answers_429_with_retry_after(settings):
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    with TestClient(create_app(limited)) as client:
        statuses = [client.get("/v1/models").status_code for _ in range(4)]
        refused = client.get("/v1/models")
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
        assert refused.json()["code"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1
        assert client.get("/healthz").status_code == 200  # probes are never throttled
        # a made-up API key per request must not open a fresh bucket
        assert client.get("/v1/models", headers={"X-API-Key": "made-up"}).status_code == 429


def test_processing_timeout_answers_504(settings):
    hurried = settings.model_copy(update={"request_timeout_s": 0.001})
    image = encode(photo(), "JPEG", quality=90)
    with TestClient(create_app(hurried)) as client:
        response = client.post("/v1/compare", files={"image_1": ("a.jpg", image), "image_2": ("b.jpg", image[:-1])})
        assert response.status_code == 504 and response.json()["code"] == "timeout"
        assert client.get("/healthz").status_code == 200


def test_storage_failures_become_clear_answers():
    """Full disk / read-only storage are operator problems: 507/503 with a stable code, not 'internal'."""
    import errno
    import sqlite3

    from lookalike.api.errors import storage_error

    assert storage_error(OSError(errno.ENOSPC, "No space left on device"))[:2] == (507, "storage_full")
    assert storage_error(OSError(errno.EFBIG, "File too large"))[:2] == (507, "storage_full")
    assert storage_error(sqlite3.OperationalError("database or disk is full"))[:2] == (507, "storage_full")
    assert storage_error(OSError(errno.EROFS, "Read-only file system"))[:2] == (503, "storage_read_only")
    assert storage_error(sqlite3.OperationalError("attempt to write a readonly database"))[:2] == \
        (503, "storage_read_only")
    faiss_error = RuntimeError("Error in faiss::write_index: write error in x.faiss.tmp (No space left on device)")
    assert storage_error(faiss_error)[:2] == (507, "storage_full")
    assert storage_error(ValueError("something else")) is None


def test_openapi_documents_the_error_shape(settings):
    schema = create_app(settings).openapi()
    assert "ErrorBody" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("413", "422", "429", "503", "504"):
                ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, status)
