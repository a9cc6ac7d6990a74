"""The MITM proxy itself: forwards faithfully, tampers only where told, over HTTP and TLS."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from security._proxy import json_tamper
from security.conftest import tls_server_context


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = json.dumps({"path": self.path, "got": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def upstream():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_proxy_forwards_and_tampers_by_path(mitm, upstream):
    proxy = mitm(upstream)
    proxy.tamper("/v1/enroll", json_tamper(lambda d: {**d, "got": "swapped"}), times=1)

    plain = httpx.post(proxy.url + "/v1/checkin", json={"a": 1})
    swapped = httpx.post(proxy.url + "/v1/enroll", json={"a": 2})
    again = httpx.post(proxy.url + "/v1/enroll", json={"a": 3})

    assert plain.json() == {"path": "/v1/checkin", "got": {"a": 1}}
    assert swapped.json() == {"path": "/v1/enroll", "got": "swapped"}
    assert again.json()["got"] == {"a": 3}  # the rule was for one use
    assert [s[1] for s in proxy.seen] == ["/v1/checkin", "/v1/enroll", "/v1/enroll"]


def test_tls_proxy_presents_its_own_certificate(mitm, upstream, test_ca, rogue_ca):
    proxy = mitm(upstream, server_context=tls_server_context(rogue_ca))
    pinned = ssl.create_default_context(cafile=str(test_ca.ca_pem))

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.post(proxy.url + "/x", json={}, verify=pinned)
    attacker_ca = ssl.create_default_context(cafile=str(rogue_ca.ca_pem))
    fooled = httpx.post(proxy.url + "/x", json={"a": 1}, verify=attacker_ca)
    assert fooled.json()["got"] == {"a": 1}
