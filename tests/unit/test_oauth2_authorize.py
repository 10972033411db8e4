"""``mailhelp oauth2 authorize`` against a loopback authorization server: Microsoft's
device-code flow and Google's loopback redirect flow both end in a 0600 refresh token
that the token source then uses."""

from __future__ import annotations

import os
import re
import stat
import threading
import urllib.request

import pytest

from mailhelp import config as config_module
from mailhelp.errors import UsageError
from mailhelp.localmail.oauth2_server import AuthServer
from mailhelp.oauth2.authorize import authorize, device_url
from mailhelp.oauth2.grants import TokenError
from mailhelp.oauth2.tokens import TokenSource

USER = "help@school.test"


@pytest.fixture
def provider():
    with AuthServer() as server:
        server.add_client("desk-app")
        server.add_client("installed-app", "not-really-secret")
        yield server


def load(tmp_path, oauth2: str):
    return config_module.loads(f"""
[helpdesk]
address = "{USER}"
[database]
url = "sqlite:///{tmp_path / 'desk.db'}"
[imap]
host = "127.0.0.1"
username = "{USER}"
auth = "oauth2"
[oauth2]
refresh_token_file = "{tmp_path / 'refresh-token'}"
{oauth2}""")


def test_microsoft_device_code_flow(tmp_path, provider):
    config = load(tmp_path, f'provider = "microsoft"\nclient_id = "desk-app"\n'
                            f'token_url = "{provider.token_url}"\n')
    shown = []

    def say(text: str) -> None:  # the person reads the code and signs in at once
        shown.append(text)
        provider.approve(re.search(r"enter ([0-9A-F]{8})", text).group(1), USER)

    said = authorize(config.oauth2, USER, say=say)
    assert shown[0].startswith(f"To sign in, open {provider.url}/device and enter ")
    path = tmp_path / "refresh-token"
    assert said == f"refresh token written to {path} (mode 0600)"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() in provider.refresh_tokens
    token = TokenSource(config).token()
    assert provider.active(token.access_token).user == USER
    assert [g for g, _ in provider.grants] == [
        "urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]


def test_device_flow_gives_up_when_nobody_signs_in(tmp_path, provider):
    config = load(tmp_path, f'provider = "microsoft"\nclient_id = "desk-app"\n'
                            f'token_url = "{provider.token_url}"\n')
    with pytest.raises(TokenError, match="nobody signed in"):
        authorize(config.oauth2, USER, say=lambda text: None, wait=0)
    assert not (tmp_path / "refresh-token").exists()


def test_the_device_endpoint_is_beside_the_token_endpoint(tmp_path):
    config = load(tmp_path, 'provider = "microsoft"\nclient_id = "c"\ntenant = "school.test"\n')
    assert device_url(config.oauth2) == \
        "https://login.microsoftonline.com/school.test/oauth2/v2.0/devicecode"


def test_google_loopback_redirect_flow(tmp_path, provider):
    provider.signed_in_user = USER
    config = load(tmp_path, f'provider = "google"\nclient_id = "installed-app"\n'
                            f'client_secret = "not-really-secret"\n'
                            f'token_url = "{provider.token_url}"\n')
    pages = []

    def say(text: str) -> None:  # the person opens the URL in a browser on this machine
        url = text.splitlines()[-1]
        assert url.startswith(provider.authorize_url + "?") and "code_challenge=" in url

        def browse() -> None:
            with urllib.request.urlopen(url, timeout=10) as page:  # follows the redirect
                pages.append(page.read().decode())

        threading.Thread(target=browse, daemon=True).start()

    authorize(config.oauth2, USER, say=say, endpoint=provider.authorize_url, wait=10)
    assert "mailhelp has the authorization" in pages[0]
    assert (tmp_path / "refresh-token").read_text().strip() in provider.refresh_tokens
    token = TokenSource(config).token()
    assert provider.active(token.access_token).user == USER
    assert provider.active(token.access_token).scope == "https://mail.google.com/"


def test_google_with_a_token_url_needs_the_authorization_url(tmp_path, provider):
    config = load(tmp_path, f'provider = "google"\nclient_id = "installed-app"\n'
                            f'client_secret = "x"\ntoken_url = "{provider.token_url}"\n')
    with pytest.raises(UsageError, match="--authorization-url"):
        authorize(config.oauth2, USER, say=lambda text: None)


def test_the_command_line(tmp_path, provider, capsys):
    from mailhelp.cli import main

    path = tmp_path / "mailhelp.toml"
    path.write_text(f"""
[helpdesk]
address = "{USER}"
[imap]
host = "127.0.0.1"
username = "{USER}"
auth = "oauth2"
[oauth2]
provider = "microsoft"
client_id = "desk-app"
refresh_token_file = "{tmp_path / 'refresh-token'}"
token_url = "{provider.token_url}"
""")
    approver = threading.Thread(target=_approve_when_asked, args=(provider,), daemon=True)
    approver.start()
    assert main(["--config", str(path), "oauth2", "authorize"]) == 0
    out = capsys.readouterr().out
    assert "enter " in out and "refresh token written to" in out


def _approve_when_asked(provider: AuthServer) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for device in list(provider.devices.values()):
            provider.approve(device["user_code"], USER)
            return
        time.sleep(0.01)
