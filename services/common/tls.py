"""TLS for a service's servers, from certificate files: --tls-cert and --tls-key
(the server's certificate chain and its private key, PEM) and, for mutual TLS,
--tls-client-ca (clients must then present a certificate signed by it), each
falling back to CAIRN_TLS_CERT, CAIRN_TLS_KEY and CAIRN_TLS_CLIENT_CA. The
files are read and checked at start (the pair must match), so a bad one is a
start error naming its flag, not a failed handshake later."""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from typing import Any

import grpc

FLAGS = {  # attribute -> (flag, variable)
    "tls_cert": ("--tls-cert", "CAIRN_TLS_CERT"),
    "tls_key": ("--tls-key", "CAIRN_TLS_KEY"),
    "tls_client_ca": ("--tls-client-ca", "CAIRN_TLS_CLIENT_CA"),
}


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate files and their contents (PEM)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None
    cert: bytes
    key: bytes
    client_ca: bytes | None

    @property
    def mutual(self) -> bool:
        """Clients must present a certificate signed by client_ca."""
        return self.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """For grpc.aio.Server.add_secure_port."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.mutual
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn.Config's ssl_* options: the same files for HTTPS, and the
        same client certificate check."""
        return {
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_ca_certs": self.client_ca_file,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if self.mutual else ssl.CERT_NONE,
        }


def add_flags(p: argparse.ArgumentParser) -> None:
    """--tls-cert, --tls-key and --tls-client-ca, each defaulting to its CAIRN_TLS_* variable."""
    p.add_argument(
        "--tls-cert",
        default=os.environ.get("CAIRN_TLS_CERT") or None,
        metavar="FILE",
        help="serve TLS with this certificate chain (PEM), with --tls-key (CAIRN_TLS_CERT)",
    )
    p.add_argument(
        "--tls-key",
        default=os.environ.get("CAIRN_TLS_KEY") or None,
        metavar="FILE",
        help="the private key (PEM) of --tls-cert (CAIRN_TLS_KEY)",
    )
    p.add_argument(
        "--tls-client-ca",
        default=os.environ.get("CAIRN_TLS_CLIENT_CA") or None,
        metavar="FILE",
        help="mutual TLS: clients must present a certificate signed by this CA (PEM; "
        "CAIRN_TLS_CLIENT_CA); needs --tls-cert and --tls-key",
    )


def _named(attr: str) -> str:
    flag, variable = FLAGS[attr]
    return f"{flag} (or {variable})"


def _read(path: str, attr: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"{_named(attr)}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{_named(attr)}: {path} holds no PEM block")
    return data


def from_args(args: argparse.Namespace) -> ServerTLS | None:
    """The TLS the flags ask for, read and checked; None when neither
    --tls-cert nor --tls-key is given. ValueError naming the flag: one of the
    pair without the other, --tls-client-ca without them, a file that cannot be
    read, a key that does not match the certificate, a CA file without
    certificates."""
    cert_file, key_file = args.tls_cert or None, args.tls_key or None
    client_ca_file = getattr(args, "tls_client_ca", None) or None
    if cert_file is None and key_file is None:
        if client_ca_file is not None:
            raise ValueError(f"{_named('tls_client_ca')} needs --tls-cert and --tls-key: give all three")
        return None
    if key_file is None:
        raise ValueError(f"{_named('tls_cert')} is given but {_named('tls_key')} is not: give both")
    if cert_file is None:
        raise ValueError(f"{_named('tls_key')} is given but {_named('tls_cert')} is not: give both")
    cert, key = _read(cert_file, "tls_cert"), _read(key_file, "tls_key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"{_named('tls_cert')} {cert_file} and {_named('tls_key')} {key_file} do not make a "
            f"certificate and its key: {exc}"
        ) from None
    client_ca = None
    if client_ca_file is not None:
        client_ca = _read(client_ca_file, "tls_client_ca")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(client_ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"{_named('tls_client_ca')}: {client_ca_file} holds no CA certificate: {exc}"
            ) from None
    return ServerTLS(cert_file, key_file, client_ca_file, cert, key, client_ca)
