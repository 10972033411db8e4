"""CLI: ``python -m mailhelp.localmail start|stop|status|restart|clear --state-dir DIR``.

``start`` daemonises the servers (pid files in DIR), writes ``DIR/servers.json`` and exits
once they accept connections. ``_serve`` is internal: the helper processes run through it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

DEFAULT_STATE_DIR = "/tmp/mailhelp-testservers"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mailhelp.localmail",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--state-dir",
            default=os.environ.get("LOCALMAIL_STATE_DIR")
            or os.environ.get("MAILHELP_TEST_SERVERS")
            or DEFAULT_STATE_DIR,
            help="where servers.json, configs, logs and pid files go (default "
            f"$LOCALMAIL_STATE_DIR, $MAILHELP_TEST_SERVERS or {DEFAULT_STATE_DIR})",
        )
        return p

    p = add("start", "start the servers in the background")
    p.add_argument("--kind", choices=("auto", "dovecot", "pymap"), default="auto")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--imap-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--imaps-port", type=int, default=0, help="0 = a free port (Dovecot only)")
    p.add_argument("--smtp-port", type=int, default=0, help="0 = a free port")
    p.add_argument("--password", default=None, help="password of all five users (secret)")
    p.add_argument("--no-smtp", action="store_true", help="IMAP only")
    p.add_argument("--smtp-starttls", action="store_true", help="offer STARTTLS on SMTP")
    p.add_argument("--env-file", help="also write LOCALMAIL_* variables to this file")
    p.add_argument("--timeout", type=float, default=60.0)
    add("stop", "stop everything started in the state dir")
    p = add("status", "print servers.json; exit 0 if IMAP and SMTP are up, 3 if not")
    p.add_argument("--quiet", action="store_true")
    p = add("restart", "real stop + start (same ports; Dovecot keeps the mail)")
    p.add_argument("--only", choices=("imap", "smtp"), help="restart just one server")
    add("clear", "empty all mailboxes of all users")
    p = add("_serve", argparse.SUPPRESS)
    p.add_argument("name", choices=("pymap", "smtp"))
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "_serve":
        return _serve(args.name, Path(args.state_dir), args.parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from . import DEFAULT_PASSWORD, LocalMail, LocalMailError

    state_dir = Path(args.state_dir)
    try:
        if args.command == "start":
            servers = LocalMail.start(
                state_dir,
                args.kind,
                host=args.host,
                imap_port=args.imap_port,
                imaps_port=args.imaps_port,
                smtp_port=args.smtp_port,
                password=args.password or DEFAULT_PASSWORD,
                smtp=not args.no_smtp,
                smtp_starttls=args.smtp_starttls,
                detach=True,
                timeout=args.timeout,
            )
            if args.env_file:
                servers.write_env(args.env_file)
            print(json.dumps(servers.to_dict(), indent=2))
            return 0
        servers = LocalMail.attach(state_dir)
        if args.command == "stop":
            servers.stop()
        elif args.command == "status":
            up = servers.status()
            if not args.quiet:
                print(json.dumps({**servers.to_dict(), "up": up}, indent=2))
            wanted = ["imap"] + (["smtp"] if servers.smtp_port else [])
            return 0 if all(up[k] for k in wanted) else 3
        elif args.command == "restart":
            if args.only != "smtp":
                print(f"imap restarted in {servers.restart_imap():.2f} s")
            if args.only != "imap" and servers.smtp_port:
                servers.stop_smtp()
                servers.start_smtp()
                print("smtp restarted")
        elif args.command == "clear":
            servers.clear_mailboxes()
    except LocalMailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if args.command == "status" else 1
    return 0


def _serve(name: str, state_dir: Path, parent_pid: int | None) -> int:
    """Helper process: fork a session leader that serves, write its pid, exit."""
    child = os.fork()
    if child:
        (state_dir / f"{name}.pid").write_text(f"{child}\n")
        return 0
    os.setsid()  # survive the caller's terminal/process group (Ctrl-C in pytest)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: lines per connection
    info = json.loads((state_dir / "servers.json").read_text())
    try:
        if name == "pymap":
            asyncio.run(_serve_pymap(info, parent_pid))
        else:
            _serve_smtp(info, parent_pid)
    except Exception:
        logging.getLogger(__name__).exception("%s helper crashed", name)
        os._exit(1)
    os._exit(0)  # skip the parent's atexit handlers inherited through fork


def _parent_gone(parent_pid: int | None) -> bool:
    from ._proc import pid_alive

    # pid_alive, not kill(pid, 0): a killed parent may linger as a zombie.
    return parent_pid is not None and not pid_alive(parent_pid)


async def _serve_pymap(info: dict, parent_pid: int | None) -> None:
    from .pymapserver import serve_pymap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_parent() -> None:
        while not stop.is_set():
            if _parent_gone(parent_pid):
                logging.getLogger(__name__).warning("parent %s gone: stopping", parent_pid)
                stop.set()
            await asyncio.sleep(1.0)

    watcher = asyncio.create_task(watch_parent())
    try:
        await serve_pymap(info["imap_host"], info["imap_port"], info["users"], stop)
    finally:
        watcher.cancel()


def _serve_smtp(info: dict, parent_pid: int | None) -> None:
    import ssl

    from .controller import LocalMail

    servers = LocalMail(info)
    tls_context = None
    if info.get("smtp_starttls"):
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_dir = Path(info["state_dir"]) / "tls"
        tls_context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
    relay = servers.smtp_relay(port=info["smtp_port"], tls_context=tls_context)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    relay.start()
    try:
        while not stop.wait(1.0):
            if _parent_gone(parent_pid):
                break
    finally:
        relay.stop()


if __name__ == "__main__":
    sys.exit(main())
