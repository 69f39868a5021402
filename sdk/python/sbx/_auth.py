"""Authentication to sbxd: TLS channel credentials and the bearer token.

The rules are the C++ SDK's (sbx::ClientOptions): the token goes with every
call as `authorization: Bearer <token>`, on any channel; TLS uses the given
CA or gRPC's default roots, and a client certificate needs its key.
"""

from __future__ import annotations

import collections
import re
from typing import List, Optional, Tuple, Union

import grpc

from ._errors import invalid_argument

__all__ = ["Pem", "check_token", "channel_credentials", "BearerToken"]

Pem = Union[None, str, bytes]

# Values of ASCII metadata: visible characters and spaces (RFC 7230 field
# content, as gRPC checks it). Anything else fails every call, so say so now.
_TOKEN = re.compile(r"[\x20-\x7e]*")


def check_token(token: str) -> None:
    if not isinstance(token, str):
        raise invalid_argument(f"token: expected a str, got {type(token).__name__}")
    if not _TOKEN.fullmatch(token):
        raise invalid_argument("token: only printable ASCII may be sent as metadata")


def _pem(value: Pem, what: str) -> Optional[bytes]:
    if value is None or value in ("", b""):
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise invalid_argument(f"{what}: expected PEM text (str or bytes), "
                           f"got {type(value).__name__}")


def channel_credentials(tls: bool, ca_pem: Pem, cert_pem: Pem, key_pem: Pem,
                        server_name: str) -> Tuple[Optional[grpc.ChannelCredentials],
                                                   List[tuple]]:
    """The credentials of a TLS channel (None: plain) and the channel
    arguments that go with them."""
    ca, cert, key = (_pem(ca_pem, "tls_ca_pem"), _pem(cert_pem, "tls_cert_pem"),
                     _pem(key_pem, "tls_key_pem"))
    if not isinstance(server_name, str):
        raise invalid_argument("tls_server_name: expected a str")
    if not tls:
        # The C++ SDK ignores these without tls; a caller who set them
        # expects TLS, and would otherwise send the token in clear text.
        if ca or cert or key or server_name:
            raise invalid_argument("tls_ca_pem, tls_cert_pem, tls_key_pem and "
                                   "tls_server_name need tls=True")
        return None, []
    if (cert is None) != (key is None):
        raise invalid_argument("tls_cert_pem and tls_key_pem go together")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                               certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return credentials, options


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    """The details of a call as an interceptor passes them on."""


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the token to the metadata of every call. An interceptor rather
    than grpc.access_token_call_credentials, since gRPC refuses call
    credentials on a plain channel and sbxd takes tokens on its Unix socket
    and on an insecure_tcp listener too."""

    def __init__(self, token: str):
        self._header = ("authorization", "Bearer " + token)

    def _with_token(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(details.metadata or ()) + [self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)
