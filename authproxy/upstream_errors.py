"""What can go wrong talking to an upstream, as types with fixed, secret-free messages.

`reason` is what a client may be told (`proxy/forward.py` puts it in the 502/504 problem): it names
the kind of failure only, never the upstream's bytes, addresses or URLs, which can carry anything.
`describe_client_error` says the same of aiohttp's client errors (logins still use aiohttp).
"""

from __future__ import annotations


class UpstreamFailure(Exception):
    """The exchange with the upstream failed; `reason` is safe to show a client."""

    reason = "the upstream request failed"

    def __init__(self) -> None:
        super().__init__(self.reason)


class ConnectFailed(UpstreamFailure):
    reason = "the upstream refused the connection or could not be reached"


class CertificateRejected(UpstreamFailure):
    reason = "the upstream's TLS certificate was not trusted"


class TlsFailed(UpstreamFailure):
    reason = "the TLS handshake with the upstream failed"


class Disconnected(UpstreamFailure):
    reason = "the upstream closed the connection without answering"


class ConnectionBroken(UpstreamFailure):
    reason = "the connection to the upstream failed"


class InvalidAnswer(UpstreamFailure):
    reason = "the upstream sent an invalid HTTP answer"


class BodyCutShort(UpstreamFailure):
    reason = "the upstream's answer body was cut short"


class SendFailed(UpstreamFailure):
    reason = "the request body could not be sent to the upstream"


class ClientBodyStalled(UpstreamFailure):
    """The client stopped sending the body being streamed upstream (`limits.body_timeout`)."""

    reason = "the client stopped sending the request body"


class TimedOut(UpstreamFailure):
    """Connecting, or a wait for the answer's bytes, took longer than the route allows."""

    reason = "the upstream did not answer in time"


# aiohttp's client errors by class name, told with the same texts as our own failures.
_AIOHTTP_REASONS = {
    "ClientConnectorError": ConnectFailed.reason,
    "ClientConnectorCertificateError": CertificateRejected.reason,
    "ClientConnectorSSLError": TlsFailed.reason,
    "ServerDisconnectedError": Disconnected.reason,
    "ClientOSError": ConnectionBroken.reason,
    "ClientResponseError": InvalidAnswer.reason,
    "ClientPayloadError": BodyCutShort.reason,
    "InvalidURL": "the upstream URL is invalid",
    "ForeignOriginRefused": "a request to another origin than the upstream's was refused",
}


def describe_client_error(error: BaseException) -> str:
    """A short, secret-free description: the error's class, never its text (it may hold a URL)."""
    name = type(error).__name__
    return _AIOHTTP_REASONS.get(name, f"the upstream request failed ({name})")
