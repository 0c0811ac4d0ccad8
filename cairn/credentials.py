"""Where a client (the SDK, the CLI, `cairn worker`) finds its API key, one rule
for all of them: the key it was given (the SDK's api_key=, the CLI's
--api-key), else $CAIRN_API_KEY, else the admin key `cairn dev` stores in its
data directory ($CAIRN_DEV_DIR, else ./.cairn), so the commands of the README
work unchanged from the folder `cairn dev` runs in. A key found is checked for
its shape (cairn.keys.split) before anything is sent; a malformed one is a
ValueError naming where it came from (never quoting the key).

And its TLS files (client_tls): the CA to trust, and a certificate and key
for mutual TLS, each given (--tls-ca, --tls-cert, --tls-key) or from
CAIRN_TLS_CA, CAIRN_TLS_CERT, CAIRN_TLS_KEY; read and checked before anything
is sent."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cairn import keys

API_KEY_ENV = "CAIRN_API_KEY"
DEV_DIR_ENV = "CAIRN_DEV_DIR"
DEV_DIR = ".cairn"  # `cairn dev`'s default --data-dir
ADMIN_KEY_FILE = "admin.key"  # in the data directory: one line, the key


@dataclass(frozen=True)
class ApiKey:
    """A configured key and where it came from ("--api-key", "CAIRN_API_KEY",
    a file's path), for messages about it."""

    key: str
    source: str

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(source={self.source!r})"

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata that carries it: authorization: Bearer <key>."""
        return (keys.bearer(self.key),)


def dev_key_path() -> Path:
    """Where `cairn dev` keeps its admin key: $CAIRN_DEV_DIR/admin.key, else
    ./.cairn/admin.key (relative to the current directory)."""
    return Path(os.environ.get(DEV_DIR_ENV) or DEV_DIR) / ADMIN_KEY_FILE


def checked(key: str, source: str) -> ApiKey:
    """key (surrounding whitespace dropped) if it has a key's shape; ValueError
    naming source otherwise."""
    key = key.strip()
    if keys.split(key) is None:
        raise ValueError(
            f"the API key from {source} is malformed: a key looks like "
            f"{keys.PREFIX}<16 hex digits>_<43 characters> (as `cairn keys create` prints it)"
        )
    return ApiKey(key, source)


def resolve_api_key(given: str | None = None, given_as: str = "--api-key") -> ApiKey | None:
    """The key to send: given (named given_as in messages), else $CAIRN_API_KEY,
    else the file dev_key_path() when it exists; None when there is none (calls
    then go without a key). An empty value counts as not given. ValueError when
    the key found is malformed or its file cannot be read."""
    if given:
        return checked(given, given_as)
    from_env = os.environ.get(API_KEY_ENV)
    if from_env:
        return checked(from_env, API_KEY_ENV)
    path = dev_key_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read the API key file {path}: {reason}") from None
    return checked(text, str(path))


def refusal_message(code: str, details: str, api_key: ApiKey | None, flag: str = "--api-key") -> str:
    """One line for a call refused as UNAUTHENTICATED or PERMISSION_DENIED (code,
    the status code's name): what the server said, which key was sent and how to
    send another (flag: "--api-key" for the CLI, "api_key=" for the SDK)."""
    if code == "PERMISSION_DENIED":
        what = "the API key may not do this"
    elif api_key is None:
        what = "the frontend wants an API key"
    else:
        what = "the API key was refused"
    if api_key is None:
        hint = (
            f"no key was sent: pass {flag}, set {API_KEY_ENV}, or run where `cairn dev` "
            f"keeps {DEV_DIR}/{ADMIN_KEY_FILE} (or set {DEV_DIR_ENV} to its data directory)"
        )
    else:
        hint = f"the key came from {api_key.source}; pass {flag} or set {API_KEY_ENV} to use another"
    return f"{what} ({code}): {details}; {hint}"


# ---- TLS ---------------------------------------------------------------------------------

TLS_ENV = {"ca": "CAIRN_TLS_CA", "cert": "CAIRN_TLS_CERT", "key": "CAIRN_TLS_KEY"}
TLS_SERVER_NAME_ENV = "CAIRN_TLS_SERVER_NAME"
# A TLS file: its path, or its PEM contents as bytes.
PemSource: TypeAlias = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class ClientTLS:
    """What a client's TLS channel needs (PEM): ca, the roots to trust (None:
    the system's), and cert and key for mutual TLS (both or neither);
    server_name, the name to check the server's certificate for instead of the
    address's host (None: the host)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    def __repr__(self) -> str:  # no key material
        parts = [name for name in ("ca", "cert", "key") if getattr(self, name) is not None]
        return f"ClientTLS({', '.join(parts) or 'system roots'}, server_name={self.server_name!r})"


def read_pem(value: PemSource, where: str) -> bytes:
    """A TLS file's contents: value itself when it is bytes, else the file it
    names. ValueError naming where (a flag, a variable, an argument) when the
    file cannot be read or holds no PEM block."""
    if isinstance(value, bytes):
        data, what = value, f"the {where} given"
    else:
        path = os.fspath(value)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
        what = path
    if b"-----BEGIN " not in data:
        raise ValueError(f"{where}: {what} holds no PEM block")
    return data


def client_tls(
    ca: PemSource | None = None,
    cert: PemSource | None = None,
    key: PemSource | None = None,
    server_name: str | None = None,
    *,
    flags: dict[str, str] | None = None,
    from_env: bool = True,
) -> ClientTLS | None:
    """The client TLS to use: each of ca, cert, key and server_name given, else
    (from_env) its CAIRN_TLS_* variable; None when none of the files is found
    (a plaintext channel). flags names the arguments in messages ("ca" ->
    "--tls-ca"). ValueError naming the argument or variable: a file that
    cannot be read, a cert without its key or the other way round."""
    names = {"ca": "--tls-ca", "cert": "--tls-cert", "key": "--tls-key", **(flags or {})}
    values: dict[str, tuple[PemSource, str]] = {}
    for field, value in (("ca", ca), ("cert", cert), ("key", key)):
        if value:
            values[field] = (value, names[field])
        elif from_env and os.environ.get(TLS_ENV[field]):
            values[field] = (os.environ[TLS_ENV[field]], TLS_ENV[field])
    if server_name is None and from_env:
        server_name = os.environ.get(TLS_SERVER_NAME_ENV) or None
    if not values:
        return None
    if ("cert" in values) != ("key" in values):
        have, lack = ("cert", "key") if "cert" in values else ("key", "cert")
        raise ValueError(
            f"a client certificate needs its key: {values[have][1]} is given but "
            f"{names[lack]} (or {TLS_ENV[lack]}) is not"
        )
    pem = {field: read_pem(value, where) for field, (value, where) in values.items()}
    return ClientTLS(pem.get("ca"), pem.get("cert"), pem.get("key"), server_name or None)
