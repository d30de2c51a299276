"""The recommended way to share the dashboard (docs/access.md (b)): nginx in front, HTTP basic auth, TLS.

The nginx block of docs/access.md is taken from the file as it is and changed only where a test must: the
ports (free ones on 127.0.0.1), the certificate, key and password files (made here, in tmp_path) and the
host name (memes.lab.test, which Chromium resolves to 127.0.0.1). nginx runs as the test's user, in the
foreground, with its pid, logs and temp folders in tmp_path, in front of a real dashboard bound to
127.0.0.1. Checked:

* no credentials -> 401 for / and for the websocket /_stcore/stream (nothing reaches Streamlit);
* a wrong password -> 401, for both;
* the right credentials -> 200 for the page and /_stcore/health, and the websocket upgrade (101);
* Chromium given the credentials (Playwright http_credentials) renders the Overview through nginx: its
  title and the cache's meme count in the metrics, which arrive over the proxied websocket. The host name
  is not localhost, so Streamlit accepts the websocket only because the config passes the browser's Host
  on (Origin == Host), as it must for a real host name;
* plain HTTP answers with a redirect to HTTPS.
"""
from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from dashboard_helpers import ARTIFACTS, CHROMIUM, REPO, build_synth, free_port, serve, sql, stop_process, wait_idle

pytestmark = pytest.mark.process

DOC = REPO / "docs" / "access.md"
HOST = "memes.lab.test"
USER, PASSWORD = "alice", "correct horse battery"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if not found:
        pytest.skip("nginx is not installed (scripts/setup.sh --dev installs it: apt-get install nginx)")
    return found


def doc_config() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/access.md should hold exactly one ```nginx block (the tested config)"
    return blocks[0]


def substitute(conf: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in conf, f"docs/access.md's nginx config no longer has {old!r}: update this test with it"
        conf = conf.replace(old, new)
    return conf


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"nginx did not start:\n{log.read_text()[-3000:] if log.exists() else ''}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """(https_url, http_url, db, tmp): the dashboard on 127.0.0.1, nginx with the documented config in front."""
    nginx = nginx_binary()
    tmp = tmp_path_factory.mktemp("proxy")
    db = build_synth(tmp / "synth.duckdb", n=240)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / "temp" / d).mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={HOST}",
                    "-keyout", str(tmp / "vlmemes.key"), "-out", str(tmp / "vlmemes.crt")],
                   check=True, capture_output=True)
    hashed = subprocess.run(["openssl", "passwd", "-apr1", PASSWORD], check=True, capture_output=True,
                            text=True).stdout.strip()
    (tmp / "vlmemes.htpasswd").write_text(f"{USER}:{hashed}\n")

    with serve(db, tmp / "dashboard.log", "--server.address", "127.0.0.1") as server:
        dash_port = urllib.parse.urlsplit(server.url).port
        https_port, http_port = free_port(), free_port()
        site = substitute(doc_config(), {
            "server 127.0.0.1:8501;": f"server 127.0.0.1:{dash_port};",
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "/etc/nginx/vlmemes.crt": str(tmp / "vlmemes.crt"),
            "/etc/nginx/vlmemes.key": str(tmp / "vlmemes.key"),
            "/etc/nginx/vlmemes.htpasswd": str(tmp / "vlmemes.htpasswd"),
            "memes.lab.example.org": HOST,
        })
        # as root, nginx's workers would switch to `nobody`, who cannot read tmp_path: keep the test's user
        user = (f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
                if os.geteuid() == 0 else "")
        temp = tmp / "temp"
        conf = tmp / "nginx.conf"
        conf.write_text(f"""
daemon off;
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/octet-stream;
{site}
}}
""")
        base = [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused the documented config:\n{check.stderr}"
        with open(tmp / "nginx.out", "w") as out:
            proc = subprocess.Popen(base, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(https_port, proc, tmp / "error.log")
            yield f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", db, tmp
        finally:
            stop_process(proc, 10)


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE          # the test's own self-signed certificate
    return ctx


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def http_status(url: str, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=_insecure(), timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ws_status(url: str, headers: dict | None = None) -> int:
    """The HTTP status of a websocket handshake on /_stcore/stream: 101 when upgraded."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    ws_url = url.replace("https://", "wss://", 1) + "/_stcore/stream"
    try:
        with connect(ws_url, ssl=_insecure(), additional_headers=headers or {}, subprotocols=["streamlit"],
                     open_timeout=20) as ws:
            return ws.response.status_code
    except InvalidStatus as e:
        return e.response.status_code


def test_no_credentials_is_refused(proxy):
    https, _, _, _ = proxy
    assert http_status(https + "/") == 401
    assert http_status(https + "/overview") == 401
    assert http_status(https + "/_stcore/health") == 401
    assert ws_status(https) == 401


def test_wrong_password_is_refused(proxy):
    https, _, _, _ = proxy
    for headers in (_auth(USER, "wrong"), _auth("mallory", PASSWORD)):
        assert http_status(https + "/", headers) == 401
        assert ws_status(https, headers) == 401


def test_right_credentials_reach_the_dashboard(proxy):
    https, _, _, tmp = proxy
    headers = _auth(USER, PASSWORD)
    assert http_status(https + "/", headers) == 200
    assert http_status(https + "/_stcore/health", headers) == 200
    assert ws_status(https, headers) == 101
    log = (tmp / "access.log").read_text()
    assert re.search(rf'{USER} \[[^]]+\] "GET /_stcore/stream HTTP/1.1" 101', log), log[-2000:]


def test_plain_http_redirects_to_https(proxy):
    _, http, _, _ = proxy

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(NoRedirect).open(http + "/overview", timeout=20)
    assert e.value.code == 301
    assert e.value.headers["Location"].startswith("https://") and e.value.headers["Location"].endswith("/overview")


@pytest.mark.browser
def test_chromium_renders_the_overview_through_the_proxy(proxy):
    https, _, db, tmp = proxy
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
    port = urllib.parse.urlsplit(https).port
    url = f"https://{HOST}:{port}/overview"
    memes = {str(n) for n in sql(db, "SELECT count(*), count(*) FILTER (WHERE NOT retired) FROM memes")[0]}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-background-networking", f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
        try:
            def only_proxy(route):                  # nothing but the proxy: other hosts are aborted
                host = urllib.parse.urlsplit(route.request.url).hostname
                return route.continue_() if host == HOST else route.abort()

            anonymous = browser.new_context(ignore_https_errors=True)     # no credentials: no page
            anonymous.route("**/*", only_proxy)
            try:
                status = anonymous.new_page().goto(url).status
            except PlaywrightError as e:        # headless Chromium gives up on the 401 challenge itself
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(e), e
                status = 401
            assert status == 401
            anonymous.close()

            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 2000},
                                          http_credentials={"username": USER, "password": PASSWORD})
            context.route("**/*", only_proxy)
            sockets = []
            page = context.new_page()
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.set_default_timeout(60_000)
            response = page.goto(url)
            assert response.status == 200
            page.get_by_role("heading", name="Overview").first.wait_for()
            page.get_by_text("Metrics per model × prompt version", exact=False).first.wait_for()
            wait_idle(page)
            page.screenshot(path=str(ARTIFACTS / "access_proxy_overview.png"))
            values = page.evaluate("""() => Object.fromEntries(Array.from(
                document.querySelectorAll('[data-testid="stMetric"]')).map(m => [
                    m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
                    m.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))""")
            assert values.get("Memes", "").replace(",", "") in memes, values
            assert not page.locator('[data-testid="stException"]').count()
            assert any(u.startswith(f"wss://{HOST}:{port}/_stcore/stream") for u in sockets), sockets
        finally:
            browser.close()
    log = (tmp / "access.log").read_text()
    assert re.search(rf'{USER} \[[^]]+\] "GET /_stcore/stream HTTP/1.1" 101', log), log[-2000:]
