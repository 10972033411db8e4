"""ImapMailbox's decisions against an in-memory fake client (the real server is in
tests/integration): MOVE or its fallback, IDLE or polling, a dead link noticed."""

from __future__ import annotations

import time

import pytest

from mailhelp import config as config_module
from mailhelp.errors import SourceError
from mailhelp.service.imap import ImapMailbox, batches


class FakeClient:
    def __init__(self, capabilities=("IDLE", "MOVE", "UIDPLUS"), idle_responses=None):
        self.capabilities = set(capabilities)
        self.calls: list[tuple] = []
        self.idle_responses = list(idle_responses or [])
        self.noop_responses: list[list] = []

    def has_capability(self, name):
        return name in self.capabilities

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, *args))
            if name == "idle_check":
                return self.idle_responses.pop(0) if self.idle_responses else []
            if name in ("noop", "idle_done"):
                return (b"OK", self.noop_responses.pop(0) if self.noop_responses else [])
            return None
        return record


def mailbox(client, poll="1s") -> ImapMailbox:
    config = config_module.loads(f"""
        [helpdesk]
        address = "help@school.test"
        [imap]
        host = "h"
        username = "help@school.test"
        poll_interval = "{poll}"
        """)
    box = ImapMailbox(config.imap)
    box.client = client
    return box


def names(client) -> list[str]:
    return [call[0] for call in client.calls]


def test_move_uses_move_where_the_server_has_it():
    client = FakeClient()
    mailbox(client).move([3, 4], "mailhelp/processed")
    assert client.calls == [("move", [3, 4], "mailhelp/processed")]


def test_move_falls_back_to_copy_delete_uid_expunge():
    client = FakeClient(capabilities=("UIDPLUS",))
    mailbox(client).move([3], "done")
    assert client.calls == [("copy", [3], "done"), ("delete_messages", [3]),
                            ("uid_expunge", [3])]


def test_move_without_uidplus_expunges_the_folder():
    client = FakeClient(capabilities=())
    mailbox(client).move([3], "done")
    assert names(client) == ["copy", "delete_messages", "expunge"]


def test_nothing_to_move_sends_nothing():
    client = FakeClient()
    mailbox(client).move([], "done")
    assert client.calls == []


def test_idle_returns_on_new_mail():
    client = FakeClient(idle_responses=[[(b"OK", b"Still here")], [(5, b"EXISTS")]])
    assert mailbox(client).wait(60, lambda: False) is True
    assert names(client) == ["noop", "idle", "idle_check", "idle_check", "idle_done"]


def test_mail_that_arrived_before_idle_is_seen_by_the_noop_first():
    client = FakeClient()
    client.noop_responses = [[(1, b"EXISTS")]]
    assert mailbox(client).wait(60, lambda: False) is True
    assert names(client) == ["noop"]


def test_idle_stops_when_asked():
    client = FakeClient()
    assert mailbox(client).wait(60, lambda: True) is False
    assert names(client) == ["noop", "idle", "idle_done"]


def test_a_dead_link_during_idle_is_noticed():
    # After the server drops the link, idle_check returns [] at once, again and again.
    client = FakeClient()
    with pytest.raises(SourceError, match="connection lost"):
        mailbox(client).wait(60, lambda: False)


def test_bye_during_idle_is_a_lost_connection():
    client = FakeClient(idle_responses=[[(b"BYE", b"Server shutting down.")]])
    with pytest.raises(SourceError, match="BYE"):
        mailbox(client).wait(60, lambda: False)


def test_without_idle_the_mailbox_is_polled():
    client = FakeClient(capabilities=("MOVE",))
    assert mailbox(client, poll="0s").wait(60, lambda: False) is True
    assert names(client) == ["noop"]


def test_batches():
    assert list(batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]


def test_idle_is_renewed_so_mail_that_raced_it_is_seen(monkeypatch):
    # Mail that lands between the NOOP and IDLE is only reported by DONE.
    from mailhelp.service import imap as imap_module

    monkeypatch.setattr(imap_module, "IDLE_RECHECK", 0.3)
    client = FakeClient(idle_responses=[[(b"OK", b"Still here")]] * 5)  # ~0.5 s of quiet
    client.noop_responses = [[], [(3, b"EXISTS")]]  # the NOOP, then what DONE reports
    real_getattr = FakeClient.__getattr__

    def slow_idle_check(self, name):
        call = real_getattr(self, name)
        if name != "idle_check":
            return call
        return lambda *args, **kwargs: (time.sleep(0.1), call(*args, **kwargs))[1]

    monkeypatch.setattr(FakeClient, "__getattr__", slow_idle_check)
    assert mailbox(client).wait(60, lambda: False) is True
    assert names(client)[0:2] == ["noop", "idle"] and names(client)[-1] == "idle_done"
