"""Where a client (the SDK, the CLI, `cairn worker`) finds its API key, one rule
for all of them: the key it was given (the SDK's api_key=, the CLI's
--api-key), else $CAIRN_API_KEY, else the admin key `cairn dev` stores in its
data directory ($CAIRN_DEV_DIR, else ./.cairn), so the commands of the README
work unchanged from the folder `cairn dev` runs in. A key found is checked for
its shape (cairn.keys.split) before anything is sent; a malformed one is a
ValueError naming where it came from (never quoting the key)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
