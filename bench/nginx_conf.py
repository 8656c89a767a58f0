"""nginx configs for the benchmark: the upstream and the reference proxy. Never /etc/nginx.

Each instance runs from its own temp prefix with `daemon off`, one worker and its pid, temp paths
and logs inside that prefix, so it needs no root-owned directory and leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from common import UPLOAD_BYTES

_COMMON = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    # Benchmark connections stay open for the whole run: no request-count or idle cut-offs.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{body}
}}
"""

# The data paths answer 401 unless the injected header is exactly right: that is how every
# measured request proves the proxy really did inject the token.
_GUARD = 'if ($http_authorization != "Bearer {token}") {{ return 401; }}'


def upstream_conf(prefix: Path, port: int, token: str) -> str:
    guard = _GUARD.format(token=token)
    mib = UPLOAD_BYTES // (1024 * 1024) * 2
    body = f"""\
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        default_type application/octet-stream;
        # Every login is logged to its own file, so the run can count them.
        location = /v1/authenticate {{
            access_log {prefix}/logins.log;
            default_type application/json;
            return 200 '{{"token": "{token}"}}';
        }}
        location = /1k {{ {guard} }}
        location = /100m {{ {guard} }}
        # An upload must be read in full before the answer: `return 200` would answer at once
        # and discard the body afterwards, so the client would time nothing. DAV PUT reads the
        # whole body (into a tmpfs temp file) and only then answers 201/204.
        location = /upload {{
            {guard}
            client_max_body_size {mib}m;
            client_body_buffer_size 1m;
            dav_methods PUT;
            dav_access user:rw;
        }}
    }}"""
    return _render(prefix, body)


def proxy_conf(prefix: Path, port: int, upstream_port: int, token: str) -> str:
    mib = UPLOAD_BYTES // (1024 * 1024) * 2
    body = f"""\
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size {mib}m;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            # Stream like authproxy does: no spooling of uploads, no temp files for downloads
            # (answers go through the in-memory buffers only).
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}"""
    return _render(prefix, body)


def _render(prefix: Path, body: str) -> str:
    # Started as root, nginx would switch its worker to `nobody`, which cannot read or write the
    # private temp dir; the worker keeps our user instead (loopback-only, throwaway files).
    user = "user root;\n" if os.geteuid() == 0 else ""
    return _COMMON.format(user=user, prefix=prefix, body=body)
