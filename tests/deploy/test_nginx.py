"""The reverse-proxy example (deploy/nginx/) is a configuration nginx accepts.

`nginx -t` with the committed files, only the certificate paths pointed at a
throw-away self-signed certificate made here: it parses every directive, loads
the certificate and key, and resolves the includes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.requirements import require_tool

NGINX_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nginx"


def _self_signed(tls: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    tls.mkdir()
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=tasks.example.com", "-keyout", str(tls / "privkey.pem"),
                    "-out", str(tls / "fullchain.pem")], check=True, capture_output=True, timeout=60)


def _nginx_t(tmp_path: Path, site: str) -> subprocess.CompletedProcess:
    nginx = require_tool("nginx", "nginx")
    if not (tmp_path / "tls").exists():
        _self_signed(tmp_path / "tls")
    proxy = tmp_path / "projectname-proxy.conf"
    proxy.write_text((NGINX_DIR / "projectname-proxy.conf").read_text())
    (tmp_path / "site.conf").write_text(
        site.replace("/etc/projectname/tls/", f"{tmp_path}/tls/")
            .replace("/etc/nginx/projectname-proxy.conf", str(proxy)))
    main = tmp_path / "nginx.conf"
    main.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    return subprocess.run([nginx, "-t", "-c", str(main), "-p", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)


def test_nginx_accepts_the_committed_reverse_proxy(tmp_path):
    site = (NGINX_DIR / "projectname.conf").read_text()
    result = _nginx_t(tmp_path, site)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    # What the example promises: TLS 1.2+, static files served by nginx, the
    # dashboard never cached, Flower on its own name with WebSockets.
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert "location /static/ {\n        alias /var/www/projectname/static/;" in site
    assert 'location /ops/ {' in site and 'add_header Cache-Control "no-store" always;' in site
    assert "server_name flower.tasks.example.com;" in site
    proxy = (NGINX_DIR / "projectname-proxy.conf").read_text()
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in proxy
    # The client's address as nginx saw it, never one the client sent
    # (believed from TRUSTED_PROXIES only: the login lockout, the audit log).
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in proxy


@pytest.mark.parametrize("break_it", [
    lambda site: site.replace("keepalive 16;", "keepalive 16"),
    lambda site: site.replace("ssl_certificate_key /etc/projectname/tls/privkey.pem;",
                              "ssl_certificate_key /etc/projectname/tls/missing.pem;", 1),
])
def test_nginx_t_refuses_a_broken_copy(tmp_path, break_it):
    # The check above can fail: a missing semicolon or key file is refused.
    site = break_it((NGINX_DIR / "projectname.conf").read_text())
    assert _nginx_t(tmp_path, site).returncode != 0
