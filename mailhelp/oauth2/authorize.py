"""``mailhelp oauth2 authorize``: get the refresh token once, for delegated access.

Microsoft: the device-code flow (RFC 8628): mailhelp prints a URL and a code, the
mailbox's owner enters it in any browser, mailhelp polls the token endpoint. Google:
the loopback redirect flow for installed apps (RFC 8252, with PKCE): mailhelp listens
on 127.0.0.1, prints the URL to open; Google sends the browser back to that listener
with the code. Either way the refresh token goes to ``[oauth2] refresh_token_file``,
mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING

from ..errors import UsageError
from .grants import DEVICE_GRANT, TokenError, post_form, scope, token_url, write_private

if TYPE_CHECKING:
    from ..config import OAuth2Config

GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
WAIT = 600.0  # seconds the person has to sign in


def device_url(settings: OAuth2Config) -> str:
    """Microsoft's device authorization endpoint, beside its token endpoint."""
    url = token_url(settings)
    if not url.endswith("/token"):
        raise UsageError(f"oauth2.token_url: {url} does not end in /token; give the device "
                         "authorization endpoint with --device-url")
    return url[: -len("token")] + "devicecode"


def authorize(settings: OAuth2Config, user: str, say: Callable[[str], None] = print,
              endpoint: str = "", wait: float = WAIT) -> str:
    """Run the provider's flow, write the refresh token; return what to tell the admin."""
    if not settings.refresh_token_file:
        raise UsageError("oauth2.refresh_token_file: missing (where the refresh token goes)")
    if not settings.client_id:
        raise UsageError("oauth2.client_id: missing (the app registration's client ID)")
    if settings.provider == "microsoft":
        answer = device_flow(settings, endpoint or device_url(settings), say, wait)
    elif settings.provider == "google":
        if settings.token_url and not endpoint:
            raise UsageError("oauth2.token_url is set: give the authorization endpoint "
                             "with --authorization-url")
        answer = loopback_flow(settings, user, endpoint or GOOGLE_AUTHORIZE, say, wait)
    else:
        raise UsageError('oauth2.provider: "microsoft" or "google" (authorize gets a '
                         "refresh token from one of them)")
    refresh_token = answer.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise TokenError("the token endpoint gave no refresh token (Microsoft: ask for "
                         "offline_access in [oauth2] scope)")
    write_private(settings.refresh_token_file, refresh_token + "\n")
    return f"refresh token written to {settings.refresh_token_file} (mode 0600)"


def device_flow(settings: OAuth2Config, endpoint: str, say: Callable[[str], None],
                wait: float) -> dict:
    # A public client: the device flow sends no secret (Entra refuses one, AADSTS700025).
    start = post_form(endpoint, {"client_id": settings.client_id, "scope": scope(settings)})
    try:
        device_code, interval = str(start["device_code"]), float(start.get("interval", 5))
        say(str(start.get("message") or f"Open {start['verification_uri']} and enter the "
                                           f"code {start['user_code']}"))
    except (KeyError, TypeError, ValueError):
        raise TokenError("the device authorization endpoint's answer has no device_code, "
                         "user_code or verification_uri") from None
    deadline = time.monotonic() + min(wait, float(start.get("expires_in") or wait))
    form = {"grant_type": DEVICE_GRANT, "client_id": settings.client_id,
            "device_code": device_code}
    while True:
        try:
            return post_form(token_url(settings), form)
        except TokenError as error:
            if error.code == "slow_down":
                interval += 5
            elif error.code != "authorization_pending":
                raise
        if time.monotonic() + interval > deadline:
            raise TokenError("nobody signed in with the code in time; run authorize again")
        time.sleep(interval)


def loopback_flow(settings: OAuth2Config, user: str, endpoint: str,
                  say: Callable[[str], None], wait: float) -> dict:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    got: dict[str, str] = {}
    arrived = threading.Event()

    class Redirected(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            ours = query.get("state") == state and ("code" in query or "error" in query)
            text = ("mailhelp has the authorization; you may close this page."
                    if ours and "code" in query else "mailhelp was not authorized.")
            body = f"<!doctype html><title>mailhelp</title><p>{text}</p>".encode()
            self.send_response(200 if ours else 400)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if ours:
                got.update(query)
                arrived.set()

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirected)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        query = {"client_id": settings.client_id, "redirect_uri": redirect_uri,
                 "response_type": "code", "scope": scope(settings), "state": state,
                 "code_challenge": challenge, "code_challenge_method": "S256",
                 # offline and consent: Google gives a refresh token only then.
                 "access_type": "offline", "prompt": "consent", "login_hint": user}
        say(f"Open this URL in a browser on this machine (from elsewhere: ssh -L "
            f"{server.server_address[1]}:127.0.0.1:{server.server_address[1]} first) "
            f"and sign in as {user}:\n{endpoint}?{urllib.parse.urlencode(query)}")
        if not arrived.wait(wait):
            raise TokenError("no answer from the browser in time; run authorize again")
    finally:
        server.shutdown()
        server.server_close()
    if "code" not in got:
        raise TokenError(f"authorization refused: {got.get('error', 'no code')}")
    form = {"grant_type": "authorization_code", "code": got["code"],
            "redirect_uri": redirect_uri, "client_id": settings.client_id,
            "code_verifier": verifier}
    if settings.client_secret.given:
        form["client_secret"] = settings.client_secret.reveal()
    return post_form(token_url(settings), form)
