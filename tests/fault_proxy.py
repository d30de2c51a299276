"""An HTTP proxy in front of a real inference server that injects the faults a served VLM run meets:
429 storms, 5xx, malformed JSON, slow answers. Everything else is passed through unchanged, so the
answers the client reads are the real server's; while the server is down the proxy drops the client's
connection without an answer, as the server's closed port would.

    with FaultProxy("http://127.0.0.1:8080") as proxy:      # proxy.url -> "http://127.0.0.1:PORT/v1"
        proxy.fail_next(5, status=429)                       # the next 5 POSTs answer 429
        proxy.malform_next(2)                                # then 2 answers cut in the middle of the JSON
        proxy.delay_s = 3.0                                  # every POST waits 3 s before it is forwarded
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.delay_s = 0.0
        self.posts = 0                      # POSTs seen (faulty or not)
        self.forwarded = 0                  # POSTs passed to the server
        self._faults: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fail_next(self, n: int, status: int = 429) -> None:
        with self._lock:
            self._faults += [("status", status)] * n

    def malform_next(self, n: int) -> None:
        with self._lock:
            self._faults += [("malformed", 200)] * n

    def _next_fault(self):
        with self._lock:
            self.posts += 1
            return self._faults.pop(0) if self._faults else None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):           # quiet
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str, body: bytes | None):
                path = self.path.removeprefix("/v1")
                try:
                    r = requests.request(method, proxy.upstream + path, data=body, timeout=600,
                                         headers={"Content-Type": "application/json"})
                except requests.RequestException:     # the server is down: so is the proxy, to the client
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                return r

            def do_GET(self):
                r = self._forward("GET", None)
                if r is not None:
                    self._send(r.status_code, r.content, r.headers.get("Content-Type", "application/json"))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault()
                if fault and fault[0] == "status":
                    self._send(fault[1], b'{"error": {"message": "injected fault"}}', extra=[("Retry-After", "0")])
                    return
                if proxy.delay_s:
                    threading.Event().wait(proxy.delay_s)
                r = self._forward("POST", body)
                if r is None:
                    return
                with proxy._lock:
                    proxy.forwarded += 1
                content = r.content
                if fault and fault[0] == "malformed":
                    content = content[: max(1, len(content) // 2)]
                self._send(r.status_code, content, r.headers.get("Content-Type", "application/json"))

        return Handler

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
