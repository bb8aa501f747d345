"""The ``private-channels`` command: the standalone server and the administration.

::

    private-channels serve --port 8000                 # storage: ./private-channels-data
    private-channels channel create data-team
    private-channels token create --channel data-team --scope write --expires 30d

Every command takes ``--storage URL`` and otherwise reads ``PRIVATE_CHANNELS_STORAGE``.
Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug import serving
from werkzeug.serving import WSGIRequestHandler, make_server

from .accesslog import FLUSH_INTERVAL, configure_logging
from .admin import OPERATOR, Admin, token_state
from .app import ecosystems
from .auth import redact_tokens as redact
from .channels import Channel, ChannelRegistry
from .config import Config, ConfigError, load_config
from .core.limits import Limits
from .errors import ChannelHTTPError
from .logs import redact_loggers
from .serving import (
    GUNICORN_THREADS,
    SERVERS,
    close_dropped,
    closed_when_dropped,
    collect_less,
    gunicorn_arguments,
    run_until_stopped,
    waitress_server,
)
from .storage import DEFAULT_STORAGE, Storage, StorageURLError, copy_storage, open_storage
from .tokens import (
    ALL_CHANNELS,
    TOKEN_ID,
    TOKEN_KEY,
    Scope,
    TokenStore,
    parse_duration,
    stored_key,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["main"]


class CommandError(Exception):
    """A failure to report as one line on stderr."""


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler, with tokens cut out of every log line.

    The middleware removes the path form before any app sees it, but werkzeug logs
    the request line as the client sent it, so the log needs its own redaction.
    So do the errors of :mod:`http.server` for a request line it cannot parse, which
    quote that line in the reason phrase and the body.
    """

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        super().send_error(code, None if message is None else redact(message), explain)

    def connection_dropped(
        self, error: BaseException, environ: WSGIEnvironment | None = None
    ) -> None:
        close_dropped(environ)  # the app is wrapped in closed_when_dropped (see serve)

    def log(self, type: str, message: str, *args: Any) -> None:
        text = redact((message % args) if args else message)
        serving._log(  # type: ignore[attr-defined]
            type,
            "%s - - [%s] %s\n",
            self.address_string(),
            self.log_date_time_string(),
            text,
        )


def _storage(args: argparse.Namespace, *, create: bool = False) -> Storage:
    """The storage the command names (``--storage``, else ``PRIVATE_CHANNELS_STORAGE``,
    else the default), remembered in ``args.used_storage`` for the closing line.

    Only commands that may start a storage pass ``create``: anywhere else, nothing
    stored at that URL means the user is elsewhere than they think (another directory,
    a variable not set), and a new, empty storage would only hide it.
    """
    url, source = _storage_url(args)
    advice = (
        "; run the command where the storage is, or name it with --storage or "
        "PRIVATE_CHANNELS_STORAGE (only 'channel create' and 'token create --channel "
        '"*"\' start a new storage)'
    )
    storage = _open(url, source, create=create, advice=advice)
    if create:
        # Started for good: the token-hashing key stays when the last channel and token
        # are gone, so that the storage is never taken for an empty one again.
        try:
            stored_key(storage, TOKEN_KEY, purpose="token hashing key")
        except OSError as exc:
            raise CommandError(f"cannot open storage: {exc}") from exc
    args.used_storage = f"{_describe(storage)} ({source})"
    return storage


def _open(url: str, source: str, *, create: bool, advice: str = "") -> Storage:
    nothing = CommandError(
        f"cannot open storage: nothing is stored at {_where(url)} ({source}){advice}"
    )
    if not create and _is_path(url) and not Path(_where(url)).is_dir():
        raise nothing
    try:
        storage = open_storage(url, create=create)
        empty = not create and next(iter(storage.list("registry/")), None) is None
    except (StorageURLError, OSError) as exc:
        raise CommandError(f"cannot open storage: {exc}") from exc
    if empty:
        raise nothing
    return storage


def _is_path(url: str) -> bool:
    scheme = url.partition("://")[0] if "://" in url else ""
    return scheme in ("", "file")


def _storage_url(args: argparse.Namespace) -> tuple[str, str]:
    if args.storage:
        return args.storage, "from --storage"
    if os.environ.get("PRIVATE_CHANNELS_STORAGE"):
        return os.environ["PRIVATE_CHANNELS_STORAGE"], "from PRIVATE_CHANNELS_STORAGE"
    return DEFAULT_STORAGE, f"the default, {DEFAULT_STORAGE}"


def _where(url: str) -> str:
    # A relative path is relative to where the command runs: say where that is.
    if _is_path(url):
        return str(Path(url.removeprefix("file://")).resolve())
    return url.partition("?")[0]


def _describe(storage: Storage) -> str:
    root = getattr(storage, "root", None)
    return str(root) if root is not None else repr(storage)


class _AccessLoggedRequestHandler(RedactingRequestHandler):
    """The access log middleware logs each request (with its id and token id), so
    werkzeug's own request line would only repeat it; errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _exec_gunicorn(config: Config, sock: socket.socket, workers: int, host: str) -> int:
    """Replace this process by gunicorn serving ``private_channels.wsgi:app`` with
    ``workers`` threaded processes (:func:`~.serving.gunicorn_arguments`) on the socket
    bound here, configured as this command was."""
    if importlib.util.find_spec("gunicorn") is None:
        raise CommandError("--workers needs gunicorn: pip install gunicorn")
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    print(
        f"private-channels serving {config.storage!r} with {workers} gunicorn workers "
        f"on http://{host}:{port}{config.prefix}/",
        file=sys.stderr,
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVATE_CHANNELS_")}
    env.update(config.environ())
    command = [*gunicorn_arguments(workers), "--bind", f"fd://{sock.fileno()}"]
    # Its "Error handling request" line quotes the URI as the client sent it.
    command += ["--logger-class", "private_channels.logs.GunicornLogger"]
    os.execve(  # noqa: S606 (our own interpreter, a fixed argument list)
        sys.executable,
        [sys.executable, "-m", "gunicorn", *command, "private_channels.wsgi:app"],
        env,
    )


def _server_name(args: argparse.Namespace) -> str:
    if args.workers is None:
        return str(args.server or SERVERS[0])
    if args.server not in (None, "gunicorn"):
        raise CommandError(f"--workers runs gunicorn; leave it out to run {args.server}")
    return "gunicorn"


def cmd_serve(args: argparse.Namespace) -> int:
    server_name = _server_name(args)
    # Arguments over PRIVATE_CHANNELS_* over the TOML file (see private_channels.config).
    try:
        config = load_config(path=args.config).replace(
            storage=args.storage, prefix=args.prefix, max_upload_size=args.max_upload_size
        )
        storage = config.open_storage()
        app = config.build_app(storage)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    redact_loggers()
    if config.log_format != "off":
        configure_logging(flush_interval=FLUSH_INTERVAL)
    collect_less()  # gunicorn's workers: in private_channels.wsgi
    # Bind here rather than in the server, so that every server reports a busy port alike
    # (werkzeug would print its own two-line error and exit).
    try:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc
    if server_name == "gunicorn":
        return _exec_gunicorn(config, sock, args.workers or 1, args.host)
    if server_name == "waitress":
        # The app answers 413 past max_upload_size; the form's text fields come on top.
        body = config.max_upload_size + Limits.max_form_text + 1024 * 1024
        server = waitress_server(app, sock, max_request_body=body)
        port, run, close = sock.getsockname()[1], server.run, server.close
    else:
        handler = RedactingRequestHandler
        if config.log_format != "off":
            handler = _AccessLoggedRequestHandler
        werkzeug = make_server(
            args.host, args.port, closed_when_dropped(app), threaded=True,
            request_handler=handler, fd=sock.fileno(),
        )  # fmt: skip
        port, run, close = werkzeug.port, werkzeug.serve_forever, werkzeug.server_close
    print(
        f"private-channels serving {storage!r} with {server_name} "
        f"on http://{args.host}:{port}{config.prefix}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        run_until_stopped(run, close)
    finally:
        sock.close()
    return 0


def _admin(args: argparse.Namespace, *, create: bool = False) -> Admin:
    storage = _storage(args, create=create)
    return Admin(storage, ecosystems(storage))


def _listed(channel: Channel) -> str:
    """One line of ``channel list``: name, visibility, then the upstream settings of a
    channel that has upstreams (their URLs without credentials)."""
    columns = [channel.name, "public" if channel.public else "private"]
    for kind, upstream in (("python", channel.python_upstream), ("cran", channel.cran_upstream)):
        if upstream is not None:
            hidden = " (with credentials)" if upstream.has_credentials else ""
            columns.append(f"{kind}-upstream={upstream}{hidden}")
    if channel.has_upstream:
        columns.append(f"upstream-allow={','.join(channel.upstream_allow)}")
        columns.append(f"upstream-ttl={channel.upstream_ttl:g}s")
        columns.append(f"upstream-min-age={channel.upstream_min_age:g}d")
    return "\t".join(columns)


def _ttl(text: str) -> float:
    if text.strip() == "0":
        return 0.0
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"upstream TTL {exc}") from None


def _days(text: str) -> float:
    try:
        return float(text.strip().removesuffix("d"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"minimum age {text!r} is not a number of days") from None


def cmd_channel_create(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"upstream_allow": args.upstream_allow or ()}
    for name in ("python_upstream", "cran_upstream", "upstream_ttl", "upstream_min_age"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    channel = _admin(args, create=True).create_channel(
        OPERATOR, args.name, public=args.public, allow_reupload=args.allow_reupload, **options
    )
    print(_listed(channel))
    return 0


def cmd_channel_update(args: argparse.Namespace) -> int:
    """Change only what the options name; servers of the storage see it on their next
    request (each reads the channel's record afresh)."""
    admin = _admin(args)
    channel = admin.channel(OPERATOR, args.name, Scope.ADMIN)
    changes: dict[str, Any] = {}
    for kind in ("python", "cran"):
        url, remove = getattr(args, f"{kind}_upstream"), getattr(args, f"no_{kind}_upstream")
        if url is not None:
            changes[f"{kind}_upstream"] = url
        elif remove:
            changes[f"{kind}_upstream"] = None
    if args.upstream_allow or args.upstream_disallow:
        allowed = [n for n in channel.upstream_allow if n not in (args.upstream_disallow or ())]
        changes["upstream_allow"] = [*allowed, *(args.upstream_allow or ())]
    for name in ("upstream_ttl", "upstream_min_age"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if not changes and args.public is None:
        raise CommandError("name a setting to change; see 'channel update --help'")
    if args.public is not None:
        changes["public"] = args.public
    channel = admin.update_channel(OPERATOR, args.name, **changes)
    print(_listed(channel))
    return 0


def cmd_channel_list(args: argparse.Namespace) -> int:
    for channel in _admin(args).channels(OPERATOR):
        print(_listed(channel))
    return 0


def cmd_channel_delete(args: argparse.Namespace) -> int:
    """Without --yes, name what would be removed and ask; with no terminal, refuse."""
    admin = _admin(args)
    contents = admin.contents(OPERATOR, args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(
                f"{contents.describe()} Deleting removes it for good; run again with --yes "
                "to delete it"
            )
        print(f"{contents.describe()} Deleting removes it for good.", file=sys.stderr)
        try:
            answer = input(f"Type the channel name ({args.name}) to delete it: ")
        except EOFError:
            answer = ""
        if answer.strip() != args.name:
            raise CommandError(f"channel {args.name!r} was not deleted")
    admin.delete_channel(OPERATOR, args.name)
    print(f"deleted channel {args.name}", file=sys.stderr)
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        scope = Scope.parse(args.scope)
        expires_in = parse_duration(args.expires) if args.expires else None
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    # A token for every channel may start a storage (the first admin's); one that names
    # channels needs them to exist, so it never makes a storage where they are not.
    named = [name for name in args.channel if name != ALL_CHANNELS]
    secret, token = _admin(args, create=not named).create_token(
        OPERATOR, args.channel, scope, expires_in=expires_in, note=args.note or ""
    )
    print(
        f"created token {token.id}: scope {token.scope}, channels "
        f"{','.join(sorted(token.channels))}, expires {_when(token.expires)}; "
        "the token (last line) is shown only this once",
        file=sys.stderr,
    )
    print(secret, flush=True)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    for token in _admin(args).list_tokens(OPERATOR):
        print(
            f"{token.id}\t{','.join(sorted(token.channels))}\t{token.scope}\t"
            f"{_when(token.expires)}\t{token.note}\t{token_state(token)}\t"
            f"{_when(token.last_used) if token.last_used else 'unused'}"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if not TOKEN_ID.match(args.id):
        # Never echoed: what is not an id may well be the secret itself.
        token = TokenStore(admin.storage).verify(args.id)
        if token is not None:
            raise CommandError(
                "'token revoke' takes a token's id, not the token; this token's id is "
                f"{token.id}: private-channels token revoke {token.id}"
            )
        raise CommandError(
            "'token revoke' takes a token's id: 12 lowercase hexadecimal characters, as "
            "the first column of 'private-channels token list' shows"
        )
    stored = admin.revoke_token(OPERATOR, args.id)
    if stored:
        print(f"revoked token {args.id}", file=sys.stderr)
    else:
        # Signed tokens are in no list, so an unknown id may well be one of theirs.
        print(
            f"no stored token has id {args.id}; signed tokens with that id are revoked",
            file=sys.stderr,
        )
    return 0


def _channel(args: argparse.Namespace) -> tuple[Storage, Channel]:
    storage = _storage(args)
    channel = ChannelRegistry(storage).get(args.channel)
    if channel is None:
        raise CommandError(f"channel {args.channel!r} does not exist in {args.used_storage}")
    return storage, channel


def cmd_files(args: argparse.Namespace) -> int:
    """yank, unyank and delete: the same operations as the admin HTTP API."""
    _, files = _admin(args).change(
        OPERATOR, args.channel, args.command, args.target, reason=getattr(args, "reason", "") or ""
    )
    past = {"yank": "yanked", "unyank": "unyanked", "delete": "deleted"}[args.command]
    for filename in files:
        print(f"{past} {filename}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Remove what uploads interrupted by a crash left: blobs no record names."""
    storage, channel = _channel(args)
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    removed = [
        key
        for ecosystem in ecosystems(storage)
        for key in ecosystem.collect_garbage(channel, grace)
    ]
    for key in removed:
        print(f"removed {key}")
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy a whole storage into an empty one: a backup, a restore, a move to S3."""
    source = _open(args.source, "SOURCE", create=False)
    destination = _open(args.destination, "DESTINATION", create=True)
    try:
        keys, size = copy_storage(source, destination)
    except FileExistsError:
        raise CommandError(
            f"the destination {_describe(destination)} is not empty; copy only into an empty "
            "storage (a new directory, or a new prefix of a bucket)"
        ) from None
    print(
        f"copied {keys} keys ({size} bytes) from {_describe(source)} to {_describe(destination)}",
        file=sys.stderr,
    )
    return 0


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {text} is not between 0 and 65535")
    return port


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"workers {text} is not a number from 1 to 64")
    return int(text)


def _upstream_options(parser: argparse.ArgumentParser, *, updating: bool = False) -> None:
    for kind, what in (("python", "a PEP 503/691 simple index root"), ("cran", "a CRAN-like "
                       "repository root")):  # fmt: skip
        group = parser.add_mutually_exclusive_group() if updating else parser
        group.add_argument(
            f"--{kind}-upstream",
            metavar="URL",
            help=f"serve the packages of {what} beside the channel's own; credentials go in "
            "the URL (https://user:password@host/...) and are never shown",
        )
        if updating:
            group.add_argument(
                f"--no-{kind}-upstream", action="store_true", help=f"stop using the {kind} upstream"
            )
    parser.add_argument(
        "--upstream-allow",
        action="append",
        metavar="PROJECT",
        help="let upstream versions of this project or package merge with the channel's own "
        "(repeatable; other names of the channel's own are never taken from upstream)",
    )
    if updating:
        parser.add_argument(
            "--upstream-disallow",
            action="append",
            metavar="PROJECT",
            help="take a name off the allowlist (repeatable)",
        )
    parser.add_argument(
        "--upstream-ttl",
        type=_ttl,
        metavar="DURATION",
        help="how long an upstream index page is used before it is revalidated, like 10m "
        "(default 10m; 0 revalidates every time)",
    )
    parser.add_argument(
        "--upstream-min-age",
        type=_days,
        metavar="DAYS",
        help="offer an upstream release only once it is this many days old (default 0: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage",
        help="storage URL: a path, file://..., memory:// or s3://bucket/prefix "
        "(default: $PRIVATE_CHANNELS_STORAGE or ./private-channels-data)",
    )
    parser = argparse.ArgumentParser(
        prog="private-channels", description="Private Python and R package channels."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the standalone server")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for all)",
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default 8000; 0: any free)"
    )

    # No defaults here: what is not given comes from the environment or the config file.
    serve.set_defaults(storage=None)
    serve.add_argument("--prefix", help="mount path (default /api/repo)")
    # A string: the configuration parses and checks it, as it does the variable's.
    serve.add_argument("--max-upload-size", metavar="SIZE", help="like 500m or 2g (default 1g)")
    serve.add_argument(
        "--config", metavar="FILE", help="TOML settings file (default: $PRIVATE_CHANNELS_CONFIG)"
    )
    serve.add_argument(
        "--server",
        choices=SERVERS,
        help="the WSGI server: waitress (the default), werkzeug's development server, "
        "or gunicorn (as --workers)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help=f"serve with N gunicorn worker processes, of {GUNICORN_THREADS} threads each",
    )
    serve.set_defaults(func=cmd_serve)

    channel = commands.add_parser("channel", help="manage channels")
    channel_commands = channel.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = channel_commands.add_parser("create", parents=[common], help="create a channel")
    create.add_argument("name")
    create.add_argument("--public", action="store_true", help="anyone may read it")
    create.add_argument(
        "--allow-reupload",
        action="store_true",
        help="a deleted filename may be uploaded again (by default it stays taken)",
    )
    _upstream_options(create)
    create.set_defaults(func=cmd_channel_create)
    update = channel_commands.add_parser(
        "update", parents=[common], help="change a channel's settings; the rest stay"
    )
    update.add_argument("name")
    visibility = update.add_mutually_exclusive_group()
    visibility.add_argument("--public", action="store_const", const=True, dest="public")
    visibility.add_argument("--private", action="store_const", const=False, dest="public")
    _upstream_options(update, updating=True)
    update.set_defaults(func=cmd_channel_update)
    channel_commands.add_parser(
        "list", parents=[common], help="list the channels, one a line: name, public or private"
    ).set_defaults(func=cmd_channel_list)
    delete = channel_commands.add_parser(
        "delete", parents=[common], help="delete a channel and everything in it"
    )
    delete.add_argument("name")
    delete.add_argument(
        "--yes", action="store_true", help="delete without asking (needed without a terminal)"
    )
    delete.set_defaults(func=cmd_channel_delete)

    token = commands.add_parser("token", help="manage tokens")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    tcreate = token_commands.add_parser(
        "create", parents=[common], help="make a token; it is printed once, on the last line"
    )
    tcreate.add_argument(
        "--channel",
        action="append",
        required=True,
        metavar="NAME|*",
        help=f"a channel it grants, or {ALL_CHANNELS} for all; repeatable",
    )
    tcreate.add_argument("--scope", required=True, metavar="read|write|admin")
    tcreate.add_argument("--expires", metavar="DURATION", help="like 90s, 30m, 12h, 30d")
    tcreate.add_argument("--note", help="one line, to tell tokens apart in 'token list'")
    tcreate.set_defaults(func=cmd_token_create)
    token_commands.add_parser(
        "list", parents=[common], help="list the stored tokens by id (never their secrets)"
    ).set_defaults(func=cmd_token_list)
    revoke = token_commands.add_parser(
        "revoke", parents=[common], help="revoke a token by its id, for good"
    )
    revoke.add_argument("id", help="the id that 'token list' shows (never the token)")
    revoke.set_defaults(func=cmd_token_revoke)

    for name, summary in (
        ("yank", "mark files yanked: installers skip them unless pinned (R: out of PACKAGES)"),
        ("unyank", "make yanked files installable again"),
        ("delete", "remove files; their names are not uploaded again (see channel create)"),
    ):
        files = commands.add_parser(name, parents=[common], help=summary)
        files.add_argument("channel")
        files.add_argument("target", metavar="FILENAME|NAME==VERSION")
        if name == "yank":
            files.add_argument("--reason", help="shown to users by pip and uv")
        files.set_defaults(func=cmd_files)

    copy = commands.add_parser(
        "copy",
        help="copy a whole storage into an empty one (a backup, a restore, a move to S3)",
        description="Copy every channel, token and package of SOURCE into DESTINATION, "
        "which must be empty. Stop uploads and changes to SOURCE while it runs.",
    )
    copy.add_argument("source", metavar="SOURCE", help="storage URL to copy from")
    copy.add_argument(
        "destination", metavar="DESTINATION", help="storage URL to copy to (made if missing)"
    )
    copy.set_defaults(func=cmd_copy)

    gc = commands.add_parser(
        "gc",
        parents=[common],
        help="remove files that interrupted uploads and upstream fetches left behind",
    )
    gc.add_argument("channel")
    gc.add_argument(
        "--grace",
        default="1h",
        metavar="DURATION",
        help="spare files younger than this, which uploads in progress may still commit"
        " (default 1h)",
    )
    gc.set_defaults(func=cmd_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except CommandError as exc:
        # Redacted: an argument may be a token given where a name belongs.
        print(f"private-channels: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except ChannelHTTPError as exc:
        # The management API's refusals: one sentence, the same the HTTP API answers;
        # for what does not exist, which storage was searched.
        used = getattr(args, "used_storage", None)
        where = f" Searched storage {used}." if exc.code == 404 and used else ""
        print(f"private-channels: error: {redact(exc.sentence)}{where}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A storage that fails mid-command (a full disk, a permission, a lost endpoint).
        print(f"private-channels: error: storage failed: {redact(str(exc))}", file=sys.stderr)
        return 1
    used = getattr(args, "used_storage", None)
    if used is not None:
        # Which storage, on every success: a token made in a storage that the server
        # does not use never works, and this line is how one notices.
        print(f"private-channels: storage {used}", file=sys.stderr)
    return result


def _version() -> str:
    try:
        return importlib.metadata.version("private-channels")
    except importlib.metadata.PackageNotFoundError:  # run from a bare checkout
        return "(not installed)"


if __name__ == "__main__":
    sys.exit(main())
