"""The ways an access token is had: a program's output, or a grant at a token endpoint.

Microsoft's client credentials and the refresh-token grant (both providers) are plain
RFC 6749 form posts, made here with urllib: msal takes an *authority* (an https URL laid
out as Entra's, found through its /.well-known/openid-configuration), not the token
endpoint ``[oauth2] token_url`` names, and keeps a token cache of its own under ours
that a token the server refused must get past; for Microsoft it would add three
packages for three form posts. The Google service account's signed JWT (RS256) is
google-auth's: its ``token_uri`` can be pointed anywhere, and the key handling and
signing are what a library should do for us.

Nothing here logs a token or a secret.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ..errors import SourceError

if TYPE_CHECKING:
    from ..config import OAuth2Config

HTTP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0
# Answers of a token endpoint after which only a person can help: the grant was revoked
# or expired, the client's secret is wrong or expired, the app lost its consent.
PERMANENT = ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope",
             "access_denied", "consent_required", "interaction_required")
MICROSOFT_TOKEN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = {
    ("microsoft", "client_credentials"): "https://outlook.office365.com/.default",
    ("microsoft", "refresh_token"): "https://outlook.office.com/IMAP.AccessAsUser.All "
                                    "https://outlook.office.com/SMTP.Send offline_access",
    ("google", "refresh_token"): "https://mail.google.com/",
    ("google", "service_account"): "https://mail.google.com/",
}


class TokenError(SourceError):
    """No access token could be had now (the endpoint unreachable, a program that
    failed); trying again later may help. ``code``: the endpoint's OAuth error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TokenRevoked(TokenError):
    """The grant gives no more tokens (a revoked or expired refresh token, a wrong or
    expired client secret): a person must act."""


@dataclass(frozen=True)
class Token:
    """An access token and when it stops working (None: not known)."""

    access_token: str = field(repr=False)
    expires_at: datetime | None
    method: str


def token_url(settings: OAuth2Config) -> str:
    if settings.token_url:
        return settings.token_url
    if settings.provider == "google":
        return GOOGLE_TOKEN
    return MICROSOFT_TOKEN.format(tenant=settings.tenant or "organizations")


def scope(settings: OAuth2Config) -> str:
    return settings.scope or SCOPES.get((settings.provider, settings.method), "")


def fetch(settings: OAuth2Config, user: str) -> Token:
    """A new token for ``user`` (the mailbox), by the method the settings name."""
    method = settings.method
    if method == "command":
        return from_command(settings.token_command)
    if method == "service_account":
        return from_service_account(settings, user)
    if method == "refresh_token":
        return from_refresh_token(settings)
    return _grant(settings, {"grant_type": "client_credentials", "scope": scope(settings)},
                  "client_credentials")


def from_command(command: str) -> Token:
    """Run the admin's command with the shell, as written; its output is the token."""
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TokenError(f"oauth2.token_command: no token within {COMMAND_TIMEOUT:.0f}s") \
            from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        # Its error output may say why; its standard output is the secret, never shown.
        said = (done.stderr.strip().splitlines() or [""])[-1][:200]
        raise TokenError(f"oauth2.token_command: exited {done.returncode}"
                         + (" with no output" if done.returncode == 0 else "")
                         + (f": {said}" if said else ""))
    token = lines[0].strip()
    return Token(token, jwt_expiry(token), "command")


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` of a token that is a JWT (Microsoft's are), read without checking
    the signature: only to show when it runs out."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(int(payload["exp"]), UTC)
    except (ValueError, KeyError, TypeError, OverflowError):
        return None


def from_refresh_token(settings: OAuth2Config) -> Token:
    """The refresh-token grant. Under a lock, the file is read again and a rotated token
    written back before the lock is let go: the daemon and its sender (or a run --once
    beside it) each refresh, and with rotation an old token may be refused."""
    path = settings.refresh_token_file
    with _locked(path):
        refresh_token = read_refresh_token(path)
        answer = _grant(settings, {"grant_type": "refresh_token", "scope": scope(settings),
                                   "refresh_token": refresh_token}, "refresh_token", raw=True)
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh_token:
            write_private(path, rotated + "\n")
        return _token(answer, "refresh_token")


def read_refresh_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except FileNotFoundError:
        raise TokenRevoked(f"oauth2.refresh_token_file: {path} does not exist (run "
                           "'mailhelp oauth2 authorize')") from None
    except OSError as error:
        raise TokenRevoked(f"oauth2.refresh_token_file: cannot read {path}: "
                           f"{error.strerror}") from None
    if not token:
        raise TokenRevoked(f"oauth2.refresh_token_file: {path} is empty (run "
                           "'mailhelp oauth2 authorize')")
    return token


def write_private(path: str, text: str) -> None:
    """Replace ``path`` whole (write, fsync, rename), mode 0600 from the first byte."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".mailhelp-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp makes it 0600
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _locked(path: str):
    """An exclusive lock beside ``path`` (not on it: it is replaced by rename)."""
    try:
        descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # a read-only folder: no other writer can rotate it either
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _grant(settings: OAuth2Config, form: dict[str, str], method: str,
           raw: bool = False):
    form = {"client_id": settings.client_id, **{k: v for k, v in form.items() if v}}
    if settings.client_secret.given:
        form["client_secret"] = settings.client_secret.reveal()
    answer = post_form(token_url(settings), form)
    return answer if raw else _token(answer, method)


def _token(answer: dict, method: str) -> Token:
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError("the token endpoint's answer has no access_token")
    try:
        lifetime = float(answer.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    return Token(token, datetime.now(UTC) + timedelta(seconds=lifetime), method)


def post_form(url: str, form: dict[str, str]) -> dict:
    """POST a form to a token endpoint and return its JSON answer; an error answer
    raises TokenRevoked when only a person can help, TokenError otherwise."""
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"})
    host = urllib.parse.urlsplit(url).netloc
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return _json(response.read(), host)
    except urllib.error.HTTPError as error:
        answer = _json_or_empty(error.read())
        code = str(answer.get("error", ""))
        said = " ".join(str(answer.get("error_description", "")).split())[:300]
        text = f"token endpoint {host} answered {error.code} {code or error.reason}" \
            + (f": {said}" if said else "")
        if error.code in (400, 401) and code in PERMANENT:
            raise TokenRevoked(text, code) from None
        raise TokenError(text, code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TokenError(f"token endpoint {host} unreachable: {reason}") from None


def _json(data: bytes, host: str) -> dict:
    answer = _json_or_empty(data)
    if not answer:
        raise TokenError(f"token endpoint {host} gave no JSON answer")
    return answer


def _json_or_empty(data: bytes) -> dict:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def from_service_account(settings: OAuth2Config, user: str) -> Token:
    """Google Workspace: a JWT signed with the service account's key (RS256), asking
    for a token that acts as ``user`` (domain-wide delegation)."""
    import google.auth.exceptions
    from google.oauth2 import service_account

    path = settings.service_account_file
    try:
        credentials = service_account.Credentials.from_service_account_file(
            path, scopes=[scope(settings)], subject=user)
    except (OSError, ValueError, KeyError) as error:
        raise TokenRevoked(f"oauth2.service_account_file: cannot use {path}: "
                           f"{getattr(error, 'strerror', None) or error}") from None
    if settings.token_url:
        credentials = credentials.with_token_uri(settings.token_url)
    try:
        credentials.refresh(_google_request_class()())
    except google.auth.exceptions.RefreshError as error:
        answer = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) \
            else {}
        text = f"google token endpoint: {error.args[0] if error.args else error}"
        if str(answer.get("error", "")) in PERMANENT:
            raise TokenRevoked(text) from None
        raise TokenError(text) from None
    except google.auth.exceptions.TransportError as error:
        raise TokenError(f"google token endpoint unreachable: {error}") from None
    expiry = credentials.expiry.replace(tzinfo=UTC) if credentials.expiry else None
    return Token(credentials.token, expiry, "service_account")


@functools.cache
def _google_request_class():
    import google.auth.transport

    class Response(google.auth.transport.Response):
        def __init__(self, status: int, headers, data: bytes) -> None:
            self._status, self._headers, self._data = status, dict(headers), data

        @property
        def status(self) -> int:
            return self._status

        @property
        def headers(self):
            return self._headers

        @property
        def data(self) -> bytes:
            return self._data

    class Request(google.auth.transport.Request):
        """google-auth's transport interface over urllib: its own adapters need requests
        or urllib3, which mailhelp does not otherwise use."""

        def __call__(self, url, method="GET", body=None, headers=None, timeout=None,
                     **kwargs):
            import google.auth.exceptions

            request = urllib.request.Request(url, data=body, method=method,
                                             headers=dict(headers or {}))
            try:
                with urllib.request.urlopen(request, timeout=timeout or HTTP_TIMEOUT) as got:
                    return Response(got.status, got.headers, got.read())
            except urllib.error.HTTPError as error:
                return Response(error.code, error.headers, error.read())
            except (urllib.error.URLError, OSError) as error:
                raise google.auth.exceptions.TransportError(str(error)) from None

    return Request
