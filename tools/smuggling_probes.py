"""Request smuggling probes: raw bytes a client may send, and what the upstream may then receive.

Each probe is sent raw on its own connection to a proxy with two routes to one recording upstream:
`/plain` (bodies stream) and `/auth` (static credentials: small bodies are buffered for a replay).
A probe lists the framings it may arrive upstream as: a strict RFC 9112 reading of the client's
bytes, and for inputs RFC 9112 lets a recipient read leniently (bare LF, obs-fold) that reading
too. Arriving as nothing at all (the proxy refused it) is always fine. Anything else, such as a
request hidden in a body arriving as a request of its own or a body changed on the way, fails.
The mutations follow the CL.TE / TE.CL / TE.TE families of defparam's smuggler, plus
Content-Encoding bodies that inflate into a request, chunk-size tricks, and line-end tricks.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# (method, target as the upstream sees it, body)
Framed = tuple[str, str, bytes]

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: upstream.test\r\n\r\n"
HELLO = b"hello"


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    wire: bytes
    # The framings the upstream may see (besides nothing): usually one, a strict reading.
    allowed: tuple[tuple[Framed, ...], ...] = ()
    # Sent, and the connection then stalls: the proxy must time it out (slow in a test suite).
    stalls: bool = False

    def accepts(self, seen: Sequence[Framed]) -> bool:
        return not seen or tuple(seen) in self.allowed


def request(method: str, target: str, *headers: str, body: bytes = b"", end: str = "\r\n") -> bytes:
    """One request as raw bytes; `end` is the line end used throughout the head."""
    lines = [f"{method} {target} HTTP/1.1", "Host: proxy.test", *headers, "", ""]
    return end.join(lines).encode("latin-1") + body


def close(*headers: str) -> tuple[str, ...]:
    return (*headers, "Connection: close")


def inflating_into_a_request(compress: Callable[[bytes], bytes]) -> bytes:
    """A compressed body N bytes long whose inflated form is N bytes of filler, then SMUGGLED: a
    proxy that inflates it under the client's Content-Length hands the upstream a request."""
    for size in range(400):
        body = compress(b"a" * size + SMUGGLED)
        if len(body) == size:
            return body
    raise AssertionError("no body inflates into exactly one more request")


GZIP_BODY = inflating_into_a_request(lambda data: gzip.compress(data, mtime=0))
DEFLATE_BODY = inflating_into_a_request(zlib.compress)


def _length(route: str, name: str, value: str, body: bytes = HELLO) -> bytes:
    return request("POST", f"/{route}/a", *close(f"{name}: {value}"), body=body)


def _te_with_length(te_line: str) -> bytes:
    """A Transfer-Encoding variant next to a Content-Length that covers the whole chunked body."""
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    return request(
        "POST", "/plain/a", *close(f"Content-Length: {len(chunked)}", te_line), body=chunked
    )


def _chunked(route: str, chunks: bytes, *headers: str) -> bytes:
    return request(
        "POST", f"/{route}/a", *close("Transfer-Encoding: chunked", *headers), body=chunks
    )


def _probes_for(route: str) -> list[Probe]:
    """Probes whose body takes the route's path: streamed (`plain`) or buffered (`auth`)."""
    post_hello = (("POST", "/a", HELLO),)
    return [
        Probe(f"{route}:length", _length(route, "Content-Length", "5"), (post_hello,)),
        Probe(f"{route}:chunked", _chunked(route, b"5\r\nhello\r\n0\r\n\r\n"), (post_hello,)),
        Probe(
            f"{route}:gzip-inflates-to-a-request",
            _length(route, "Content-Length", str(len(GZIP_BODY)), GZIP_BODY).replace(
                b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n", 1
            ),
            ((("POST", "/a", GZIP_BODY),),),
        ),
        Probe(
            f"{route}:deflate-inflates-to-a-request",
            _length(route, "Content-Length", str(len(DEFLATE_BODY)), DEFLATE_BODY).replace(
                b"\r\n\r\n", b"\r\nContent-Encoding: deflate\r\n\r\n", 1
            ),
            ((("POST", "/a", DEFLATE_BODY),),),
        ),
        Probe(
            f"{route}:gzip-chunked",
            _chunked(
                route,
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(GZIP_BODY), GZIP_BODY),
                "Content-Encoding: gzip",
            ),
            ((("POST", "/a", GZIP_BODY),),),
        ),
        Probe(
            f"{route}:gzip-that-is-not-gzip",
            _length(route, "Content-Length", "5").replace(
                b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n", 1
            ),
            (post_hello,),
        ),
        Probe(f"{route}:cl-cl-differ", _length(route, "Content-Length", "5\r\nContent-Length: 6")),
        Probe(
            f"{route}:cl-cl-same",
            _length(route, "Content-Length", "5\r\nContent-Length: 5"),
            (post_hello,),
        ),
        Probe(f"{route}:cl-list", _length(route, "Content-Length", "5, 5"), (post_hello,)),
        Probe(f"{route}:cl-list-differ", _length(route, "Content-Length", "5, 6")),
        Probe(
            f"{route}:cl-short-stall",
            _length(route, "Content-Length", "6", b"hello"),
            stalls=True,
        ),
    ]


PROBES: list[Probe] = [
    # ---- baselines: what must arrive as sent ----
    Probe("get", request("GET", "/plain/a", *close()), ((("GET", "/a", b""),),)),
    Probe(
        "pipelined",
        request("GET", "/plain/a") + request("GET", "/plain/b", *close()),
        ((("GET", "/a", b""), ("GET", "/b", b"")),),
    ),
    *_probes_for("plain"),
    *_probes_for("auth"),
    Probe(
        "get-with-a-body-holding-a-request",
        request("GET", "/plain/a", *close(f"Content-Length: {len(SMUGGLED)}"), body=SMUGGLED),
        ((("GET", "/a", SMUGGLED),),),
    ),
    Probe(
        "cl-0-then-a-request",
        request("POST", "/plain/a", "Content-Length: 0") + request("GET", "/plain/b", *close()),
        ((("POST", "/a", b""), ("GET", "/b", b"")),),
    ),
    Probe(
        "expect-100-continue",
        request(
            "POST", "/plain/a", *close("Expect: 100-continue", "Content-Length: 5"), body=HELLO
        ),
        ((("POST", "/a", HELLO),),),
    ),
    # ---- CL.TE and TE.CL ----
    Probe(
        "cl-te",
        request(
            "POST",
            "/plain/a",
            "Content-Length: 6",
            "Transfer-Encoding: chunked",
            body=b"0\r\n\r\nG",
        ),
    ),
    Probe(
        "te-cl",
        request(
            "POST",
            "/plain/a",
            "Transfer-Encoding: chunked",
            "Content-Length: 4",
            body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
        ),
    ),
    # ---- TE.TE: obfuscated Transfer-Encoding next to a Content-Length ----
    *(
        Probe(f"te:{name}", _te_with_length(line))
        for name, line in [
            ("plain", "Transfer-Encoding: chunked"),
            ("xchunked", "Transfer-Encoding: xchunked"),
            ("space-before-colon", "Transfer-Encoding : chunked"),
            ("tab", "Transfer-Encoding:\tchunked"),
            ("upper", "Transfer-Encoding: CHUNKED"),
            ("chunked-identity", "Transfer-Encoding: chunked, identity"),
            ("identity-chunked", "Transfer-Encoding: identity, chunked"),
            ("quoted", 'Transfer-Encoding: "chunked"'),
            ("twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: x"),
            ("vertical-tab", "Transfer-Encoding: \x0bchunked"),
            ("form-feed", "Transfer-Encoding: \x0cchunked"),
            ("nul", "Transfer-Encoding: chunked\x00"),
            ("folded", "X-Pad: 1\r\n Transfer-Encoding: chunked"),
            ("folded-value", "Transfer-Encoding:\r\n chunked"),
            ("bare-cr", "X-Pad: 1\rTransfer-Encoding: chunked"),
            ("bare-lf", "X-Pad: 1\nTransfer-Encoding: chunked"),
            ("leading-space", " Transfer-Encoding: chunked"),
        ]
    ),
    Probe(
        "te:underscore-is-another-header",
        _te_with_length("Transfer_Encoding: chunked"),
        ((("POST", "/a", b"5\r\nhello\r\n0\r\n\r\n"),),),
    ),
    # ---- Content-Length oddities ----
    Probe("cl-plus", _length("plain", "Content-Length", "+5")),
    Probe("cl-hex", _length("plain", "Content-Length", "0x5")),
    Probe("cl-negative", _length("plain", "Content-Length", "-5")),
    Probe("cl-two-numbers", _length("plain", "Content-Length", "5 5")),
    Probe("cl-nul", _length("plain", "Content-Length", "5\x00")),
    Probe("cl-folded", _length("plain", "Content-Length", "5\r\n 5")),
    Probe("cl-huge", _length("plain", "Content-Length", "9" * 30)),
    Probe(
        "cl-leading-zeros",
        _length("plain", "Content-Length", "005"),
        ((("POST", "/a", HELLO),),),
    ),
    # ---- chunk-size tricks ----
    *(
        Probe(f"chunk:{name}", _chunked("plain", chunks), allowed)
        for name, chunks, allowed in [
            ("extension", b"5;ext=1\r\nhello\r\n0\r\n\r\n", ((("POST", "/a", HELLO),),)),
            ("trailer", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", ((("POST", "/a", HELLO),),)),
            ("overflow", b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", ()),
            ("hex-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", ()),
            ("negative", b"-5\r\nhello\r\n0\r\n\r\n", ()),
            ("data-longer-than-size", b"3\r\nhello\r\n0\r\n\r\n", ()),
            ("no-crlf-after-data", b"5\r\nhello0\r\n\r\n", ()),
            ("bare-cr-in-extension", b"5;a\rb\r\nhello\r\n0\r\n\r\n", ()),
            ("request-as-trailer", b"0\r\n" + SMUGGLED, ()),
            (
                "lf-line-ends",
                b"5\nhello\n0\n\n",
                ((("POST", "/a", HELLO),),),  # RFC 9112 §2.2: a recipient MAY accept bare LF
            ),
            ("space-after-size", b"5 \r\nhello\r\n0\r\n\r\n", ((("POST", "/a", HELLO),),)),
        ]
    ),
    # ---- line ends, control bytes, versions ----
    Probe(
        "bare-lf-head",
        request("POST", "/plain/a", *close("Content-Length: 5"), body=HELLO, end="\n"),
        ((("POST", "/a", HELLO),),),  # RFC 9112 §2.2: a recipient MAY accept bare LF
    ),
    Probe("bare-cr-in-a-field", _length("plain", "X-Pad", "1\rContent-Length: 9")),
    Probe("nul-in-a-field", _length("plain", "X-Pad", "a\x00b")),
    Probe("http-0.9", b"GET /plain/a\r\n\r\n"),
    Probe("http-2.0", request("GET", "/plain/a", *close()).replace(b"HTTP/1.1", b"HTTP/2.0", 1)),
    Probe("http-1.2", request("GET", "/plain/a", *close()).replace(b"HTTP/1.1", b"HTTP/1.2", 1)),
    Probe(
        "http-1.0-with-te",
        request(
            "POST", "/plain/a", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
        ).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        ((("POST", "/a", HELLO),),),  # RFC 9112 §6.1: faulty framing; then closed
    ),
    Probe("absolute-form", request("GET", "http://upstream.test/plain/a", *close())),
    Probe(
        "h2c-upgrade",
        request("GET", "/plain/a", *close("Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__")),
        ((("GET", "/a", b""),),),
    ),
]

# A quick subset for the test suite: one of each family, none that waits for a timeout.
FAST = (
    "get",
    "pipelined",
    "plain:gzip-inflates-to-a-request",
    "auth:deflate-inflates-to-a-request",
    "auth:gzip-chunked",
    "plain:cl-cl-same",
    "auth:cl-list-differ",
    "cl-te",
    "te-cl",
    "te:space-before-colon",
    "te:folded",
    "te:bare-lf",
    "cl-0-then-a-request",
    "chunk:overflow",
    "chunk:request-as-trailer",
    "bare-lf-head",
    "http-0.9",
    "http-2.0",
)


def by_name(name: str) -> Probe:
    for probe in PROBES:
        if probe.name == name:
            return probe
    raise KeyError(name)
