"""OAuth 2.0 tokens: config, the grants against a loopback provider, the cache, the
health record and the alarm, and the one retry of a login whose token was refused."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from mailhelp import config as config_module
from mailhelp.errors import ConfigError
from mailhelp.localmail.oauth2_server import AuthServer
from mailhelp.oauth2.grants import TokenError, TokenRevoked, jwt_expiry
from mailhelp.oauth2.health import read_health
from mailhelp.oauth2.tokens import TokenSource, check_token, imap_login, smtp_login
from tests.helpers import mail_of

USER = "help@school.test"


@pytest.fixture
def provider():
    with AuthServer() as server:
        server.add_client("app", "s3cret", mailboxes=(USER,))
        server.add_client("public")
        yield server


def desk(tmp_path, oauth2: str, extra: str = "", database_url: str = ""):
    return config_module.loads(textwrap.dedent(f"""
        [helpdesk]
        address = "{USER}"
        admin = "admin@school.test"
        [database]
        url = "{database_url or f'sqlite:///{tmp_path / "desk.db"}'}"
        [storage]
        attachments_dir = "{tmp_path / 'att'}"
        [imap]
        host = "127.0.0.1"
        username = "{USER}"
        auth = "oauth2"
        [smtp]
        host = "127.0.0.1"
        auth = "oauth2"
        [oauth2]
        """) + textwrap.dedent(oauth2) + textwrap.dedent(extra))


def client_credentials(server: AuthServer, secret: str = "s3cret") -> str:
    return f"""
        provider = "microsoft"
        tenant = "school.test"
        client_id = "app"
        client_secret = "{secret}"
        token_url = "{server.token_url}"
        """


def refresh_token(server: AuthServer, path, client_id: str = "public") -> str:
    path.write_text(server.issue_refresh_token(USER, client_id) + "\n")
    path.chmod(0o600)
    return f"""
        provider = "microsoft"
        client_id = "{client_id}"
        refresh_token_file = "{path}"
        token_url = "{server.token_url}"
        """


# -- configuration -------------------------------------------------------------------------

def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_module.loads('[helpdesk]\naddress = "help@school.test"\n' + text)
    return str(caught.value)


IMAP_OAUTH2 = '[imap]\nhost = "h"\nusername = "help@school.test"\nauth = "oauth2"\n'


def test_config_names_the_key_at_fault():
    assert error_of(IMAP_OAUTH2).startswith('imap.auth: "oauth2" needs an [oauth2] section')
    assert error_of('[imap]\nhost = "h"\nusername = "u"\nauth = "kerberos"\n') \
        .startswith("imap.auth: must be one of password, oauth2")
    assert error_of('[smtp]\nhost = "h"\nauth = "oauth"\n') \
        .startswith("smtp.auth: must be one of password, oauth2, none")
    assert error_of(IMAP_OAUTH2 + "[oauth2]\n").startswith("oauth2.provider: missing")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\nprovider = "yahoo"\n') \
        .startswith("oauth2.provider: must be one of microsoft, google")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\nprovider = "microsoft"\n') \
        .startswith("oauth2.client_id: missing")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\nprovider = "microsoft"\nclient_id = "c"\n') \
        .startswith("oauth2.client_secret: missing")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\nprovider = "microsoft"\nclient_id = "c"\n'
                    'client_secret_env = "S"\n').startswith("oauth2.tenant: missing")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\nprovider = "google"\nclient_id = "c"\n'
                    'client_secret = "s"\n').startswith("oauth2.refresh_token_file: missing")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\ntoken_command = "x"\nprovider = "google"\n') \
        .startswith("oauth2.token_command: give token_command or provider")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\ntoken_command = "x"\ntoken_url = '
                    '"http://login.example/token"\n').startswith("oauth2.token_url:")
    assert error_of(IMAP_OAUTH2 + '[oauth2]\ntoken_command = "x"\nsecret = "y"\n') \
        == "oauth2.secret: unknown key"
    assert error_of('[smtp]\nhost = "h"\nauth = "oauth2"\n[oauth2]\ntoken_command = "x"\n') \
        .startswith("smtp.username: missing")


def test_sections_that_sign_in_with_oauth2_get_the_whole_file():
    loaded = config_module.loads('[helpdesk]\naddress = "help@school.test"\n' + IMAP_OAUTH2
                                 + '[smtp]\nhost = "h"\n[oauth2]\ntoken_command = "x"\n')
    assert loaded.imap.desk.oauth2.method == "command"
    assert loaded.smtp.desk is None and loaded.smtp.auth == "password"
    assert "desk" not in repr(loaded.imap)


# -- grants and the cache -----------------------------------------------------------------

def test_client_credentials_token_is_kept_until_shortly_before_it_expires(tmp_path, provider):
    provider.lifetime = 100
    later = [timedelta(0)]
    source = TokenSource(desk(tmp_path, client_credentials(provider)),
                         clock=lambda: datetime.now(UTC) + later[0])
    first = source.token()
    assert provider.active(first.access_token).user == USER
    assert source.token() is first and len(provider.grants) == 1
    later[0] = timedelta(seconds=85)  # within a tenth of its life of the end
    assert source.token() is first
    later[0] = timedelta(seconds=91)
    second = source.token()
    assert second.access_token != first.access_token
    assert [g for g, _ in provider.grants] == ["client_credentials"] * 2
    assert provider.clients["app"].secret not in json.dumps(read_health(source.desk).as_json())


def test_a_refused_token_is_not_taken_again_from_the_cache(tmp_path, provider):
    source = TokenSource(desk(tmp_path, client_credentials(provider)))
    first = source.token()
    assert source.token(refused=first.access_token).access_token != first.access_token


def test_the_cache_file_is_private_and_shared_by_processes(tmp_path, provider):
    cache = tmp_path / "token-cache.json"
    config = desk(tmp_path, client_credentials(provider) + f'cache_file = "{cache}"\n')
    token = TokenSource(config).token()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert TokenSource(config).token().access_token == token.access_token  # another process
    assert len(provider.grants) == 1


def test_a_rotated_refresh_token_is_written_back(tmp_path, provider):
    provider.rotate = True
    path = tmp_path / "refresh-token"
    source = TokenSource(desk(tmp_path, refresh_token(provider, path)))
    old = path.read_text().strip()
    source.token()
    new = path.read_text().strip()
    assert new != old and new in provider.refresh_tokens and old not in provider.refresh_tokens
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    source.token(refused=source.cached[0].access_token)  # refreshed with the new one
    assert path.read_text().strip() != new


def test_a_revoked_grant_is_permanent_logged_and_degrades_the_health(tmp_path, provider,
                                                                     caplog):
    path = tmp_path / "refresh-token"
    config = desk(tmp_path, refresh_token(provider, path))
    source = TokenSource(config)
    source.token()
    assert not read_health(config).degraded
    provider.revoke()
    with caplog.at_level(logging.ERROR), pytest.raises(TokenRevoked) as caught:
        source.token(refused=source.cached[0].access_token)
    assert "invalid_grant" in str(caught.value)
    assert "action=oauth2_token_failed" in caplog.text and "permanent=yes" in caplog.text
    health = read_health(config)
    assert health.degraded and health.permanent and "invalid_grant" in health.error
    assert health.line().startswith("failing since ")


def test_a_wrong_client_secret_is_permanent(tmp_path, provider):
    source = TokenSource(desk(tmp_path, client_credentials(provider, secret="expired")))
    with pytest.raises(TokenRevoked, match="invalid_client"):
        source.token()


def test_an_unreachable_endpoint_is_temporary(tmp_path, provider):
    config = desk(tmp_path, client_credentials(provider))
    provider.stop()
    with pytest.raises(TokenError) as caught:
        TokenSource(config).token()
    assert not isinstance(caught.value, TokenRevoked) and "unreachable" in str(caught.value)
    assert read_health(config).degraded and not read_health(config).permanent


def test_the_admin_is_alarmed_once_a_day(tmp_path, provider, database_url):
    from sqlalchemy import select

    from mailhelp.db.migrate import upgrade
    from mailhelp.db.models import Outbox
    from mailhelp.db.session import Database

    db = Database(database_url)
    upgrade(db)
    path = tmp_path / "refresh-token"
    config = desk(tmp_path, refresh_token(provider, path), database_url=database_url)
    provider.revoke()
    now = [datetime.now(UTC)]
    source = TokenSource(config, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(TokenRevoked):
            source.token()
    now[0] += timedelta(days=1, minutes=1)
    with pytest.raises(TokenRevoked):
        source.token()
    with db.sessions() as session:
        alerts = session.scalars(select(Outbox).where(Outbox.kind == "alert")).all()
    assert [a.recipients for a in alerts] == [["admin@school.test"]] * 2
    mail = mail_of(alerts[0]).decode()
    assert "help@school.test" in mail and "invalid_grant" in mail
    assert now[0] - read_health(config).alarm_at < timedelta(seconds=1)
    db.dispose()


def test_token_command_output_is_the_token_and_never_logged(tmp_path, caplog):
    script = tmp_path / "print-token"
    script.write_text(f"#!{sys.executable}\nprint('tok-from-command-123')\n")
    script.chmod(0o700)
    config = desk(tmp_path, f'token_command = "{script} --account help"\n')
    with caplog.at_level(logging.DEBUG):
        token = TokenSource(config).token()
    assert token.access_token == "tok-from-command-123" and token.expires_at is None
    assert "tok-from-command-123" not in caplog.text
    assert "expiry not known" in check_token(config)


def test_a_failing_token_command_says_why_without_its_output(tmp_path):
    config = desk(tmp_path, "token_command = \"echo secret-out; echo 'no account help' >&2; "
                            "exit 3\"\n")
    with pytest.raises(TokenError) as caught:
        TokenSource(config).token()
    assert str(caught.value) == "oauth2.token_command: exited 3: no account help"


def test_a_jwt_token_shows_its_expiry():
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"exp": 1893456000}).encode()).rstrip(b"=")
    assert jwt_expiry(f"eyJhbGciOiJSUzI1NiJ9.{payload.decode()}.c2ln") \
        == datetime(2030, 1, 1, tzinfo=UTC)
    assert jwt_expiry("not-a-jwt") is None


def test_google_service_account_signs_a_jwt_acting_as_the_mailbox(tmp_path, provider):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = "mailhelp@district-123.iam.gserviceaccount.com"
    provider.add_service_account(account, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "district-123", "private_key_id": "k1",
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": account, "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    config = desk(tmp_path, f"""
        provider = "google"
        service_account_file = "{key_file}"
        token_url = "{provider.token_url}"
        """)
    token = TokenSource(config).token()
    issued = provider.active(token.access_token)
    assert issued.user == USER and issued.scope == "https://mail.google.com/"
    assert token.method == "service_account" and token.expires_at > datetime.now(UTC)


def test_a_missing_service_account_file_names_the_key(tmp_path):
    config = desk(tmp_path, f'provider = "google"\nservice_account_file = "{tmp_path}/no.json"\n')
    with pytest.raises(TokenRevoked, match="^oauth2.service_account_file: cannot use"):
        TokenSource(config).token()


# -- the logins ---------------------------------------------------------------------------

class FakeImap:
    def __init__(self, accepted: set[str], capabilities=("AUTH=XOAUTH2", "AUTH=OAUTHBEARER")):
        self.accepted, self.capabilities, self.tried = accepted, capabilities, []

    def has_capability(self, name: str) -> bool:
        return name in self.capabilities

    def oauth2_login(self, user: str, token: str):
        return self._try("XOAUTH2", user, token)

    def oauthbearer_login(self, user: str, token: str):
        return self._try("OAUTHBEARER", user, token)

    def _try(self, mechanism: str, user: str, token: str):
        from imapclient.exceptions import LoginError

        self.tried.append(mechanism)
        if token not in self.accepted:
            raise LoginError("[AUTHENTICATIONFAILED] Authentication failed.")
        return b"Logged in"


def test_imap_retries_once_with_a_new_token_when_the_server_refuses(tmp_path, provider):
    config = desk(tmp_path, client_credentials(provider))
    client = FakeImap(accepted=_Accepting(provider))
    imap_login(client, config.imap)
    assert client.tried == ["XOAUTH2"]
    provider.expire_access_tokens()  # the server drops it before the time it gave
    client.tried.clear()
    imap_login(client, config.imap)  # the kept token is refused, a new one taken
    assert client.tried == ["XOAUTH2", "XOAUTH2"]
    assert [g for g, _ in provider.grants] == ["client_credentials"] * 2


class _Accepting:
    """Tokens the provider still calls active."""

    def __init__(self, provider: AuthServer) -> None:
        self.provider = provider

    def __contains__(self, token: str) -> bool:
        return self.provider.active(token) is not None


def test_imap_gives_up_after_the_second_refusal_and_alarms(tmp_path, provider):
    from imapclient.exceptions import LoginError

    config = desk(tmp_path, client_credentials(provider))
    client = FakeImap(accepted=set())
    with pytest.raises(LoginError):
        imap_login(client, config.imap)
    assert client.tried == ["XOAUTH2", "XOAUTH2"]
    health = read_health(config)
    assert health.permanent and "imap refused a new token" in health.error


def test_oauthbearer_where_the_server_offers_only_that(tmp_path, provider):
    config = desk(tmp_path, client_credentials(provider))
    client = FakeImap(accepted=_Accepting(provider), capabilities=("AUTH=OAUTHBEARER",))
    imap_login(client, config.imap)
    assert client.tried == ["OAUTHBEARER"]


class FakeSmtp:
    def __init__(self, accepted) -> None:
        self.accepted, self.tried = accepted, []

    async def auth_xoauth2(self, user: str, token: str):
        import aiosmtplib

        self.tried.append(user)
        if token not in self.accepted:
            raise aiosmtplib.SMTPAuthenticationError(535, "5.7.8 not accepted")


def test_smtp_retries_once_with_a_new_token(tmp_path, provider):
    import asyncio

    config = desk(tmp_path, client_credentials(provider))
    client = FakeSmtp(_Accepting(provider))
    asyncio.run(smtp_login(client, config.smtp))
    provider.expire_access_tokens()
    asyncio.run(smtp_login(client, config.smtp))
    assert client.tried == [USER] * 3  # the username falls back to [imap]'s
    assert len(provider.grants) == 2


def test_check_shows_the_expiry(tmp_path, provider):
    line = check_token(desk(tmp_path, client_credentials(provider)))
    assert line.startswith(f"token for {USER} from client_credentials (microsoft), expires 2")
