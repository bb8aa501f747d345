"""The HTTP JSON API under ``P/-/api/``: channels, tokens, package listings, yank/unyank/delete.

::

    app = ApiMiddleware(app, admin)          # outside TokenAuthMiddleware, with its own

    $ curl -H "X-Auth: $TOKEN" https://host/api/repo/-/api/channels
    {"channels": [{"name": "data-team", "public": false, ...}]}

The routes (SPEC.md, "HTTP API"; werkzeug's ``Map``):

- ``GET P/-/api/channels``: the channels the token may read;
  ``POST`` ``{"name": ..., "public": ...}`` creates one (admin for ``*``): 201;
- ``GET P/-/api/channels/<name>``: one channel; ``DELETE`` deletes it and says what it held;
- ``GET P/-/api/channels/<name>/packages``: ``{"python": [...], "cran": [...]}``;
- ``GET P/-/api/channels/<name>/packages/<ecosystem>/<package>``: one package, its files;
- ``POST P/-/api/channels/<name>/yank|unyank|delete`` ``{"filename": ..., "reason": ...}``;
- ``GET P/-/api/tokens``: the tokens it manages (never a secret); ``POST``
  ``{"channels": [...], "scope": ..., "expires": ..., "note": ...}`` mints one: 201,
  with the secret, once;
- ``GET P/-/api/tokens/<id>``: one token; ``DELETE`` revokes it.

JSON in and out.  The token comes in any header form (``X-Auth``, ``Authorization:
Bearer``, Basic); the path form is refused, and a browser session is not a token here.
Bodies must be ``application/json`` (a form posted from another site cannot be), at
most ``Limits.max_admin_body`` bytes.  Every error is ``{"error": "<sentence>"}`` with
the status codes of the rest of the server: 400 (bad input), 401 (no or a bad token,
with the Basic challenge), 403, 404, 405, 409 (a channel that exists), 413, 415.
What who may do is the management API's (:class:`~..admin.Admin`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, cast

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ..admin import Admin, token_state
from ..auth import TOKEN_SOURCE_KEY, TokenAuthMiddleware, identity
from ..channels import Channel, upstream_settings
from ..core.ecosystem import PackageDetail
from ..core.limits import Limits
from ..errors import ERROR_FORMAT_KEY, ChannelHTTPError, http_error
from ..tokens import Scope, Token, parse_duration
from .page import routing_map

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..core.ecosystem import Action

__all__ = ["PREFIX", "ApiMiddleware", "channel_json", "is_api", "token_json"]

PREFIX = "/-/api/"


def channel_json(channel: Channel) -> dict[str, Any]:
    """Every field of the channel record (``name``, ``public``, ``created``...), its
    upstreams as :func:`~..channels.upstream_settings` shows them: never a credential."""
    shown = upstream_settings(channel)
    doc = {f.name: getattr(channel, f.name) for f in fields(Channel) if f.name not in shown}
    return {**doc, **shown}


def token_json(token: Token) -> dict[str, Any]:
    """What the API shows of a token: never its secret."""
    return {**token.to_json(), "state": token_state(token)}


def detail_json(detail: PackageDetail) -> dict[str, Any]:
    description = detail.description
    return {
        "ecosystem": detail.package.ecosystem,
        **detail.package.to_json(),
        "version": detail.version,
        "summary": detail.summary,
        "about": dict(detail.about),
        "description": None if description is None else asdict(description),
        "files": [f.to_json() for f in detail.files],
    }


def _rules() -> list[Rule]:
    read, one = ["GET", "HEAD"], "/-/api/channels/<name>"
    return [
        Rule("/-/api/channels", endpoint="channels", methods=[*read, "POST"]),
        Rule(one, endpoint="channel", methods=[*read, "PATCH", "DELETE"]),
        Rule(f"{one}/packages", endpoint="packages", methods=read),
        Rule(f"{one}/packages/<ecosystem>/<package>", endpoint="package", methods=read),
        Rule(f"{one}/<any(yank, unyank, delete):action>", endpoint="change", methods=["POST"]),
        Rule("/-/api/tokens", endpoint="tokens", methods=[*read, "POST"]),
        Rule("/-/api/tokens/<token_id>", endpoint="token", methods=[*read, "DELETE"]),
    ]


def is_api(path: str) -> bool:
    """Whether ``path`` (``PATH_INFO`` under the mount) is the API's, the path-token
    form included (which the API refuses, but in its own JSON)."""
    if path.startswith("/t/"):
        path = "/" + path[3:].partition("/")[2]
    return (path + "/").startswith(PREFIX)


class ApiMiddleware:
    """Serve ``P/-/api/...``; pass every other request on untouched.

    It sits outside the token middleware of the stack and authenticates its own
    requests with one of its own over the same store, so that every refusal, a bad
    token's 401 included, is the API's JSON.
    """

    def __init__(
        self,
        app: WSGIApplication,
        admin: Admin,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.admin = admin
        self.limits = limits or Limits()
        self.map = routing_map(_rules(), strict_slashes=False)
        self.authenticated = TokenAuthMiddleware(self._serve, admin.tokens)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not is_api(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        environ[ERROR_FORMAT_KEY] = "json"
        return self.authenticated(environ, start_response)

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.limits.max_admin_body
        try:
            response: WSGIApplication = self.dispatch(request)
        except ChannelHTTPError as error:
            response = error
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.valid_methods or ()))
            response = http_error(405, f"This URL takes {allowed}.", headers=[("Allow", allowed)])
        except NotFound:
            response = http_error(404, "Nothing is at this URL of the API; see docs/api.md.")
        except RequestEntityTooLarge:
            limit = self.limits.max_admin_body
            response = http_error(413, f"The body is larger than {limit} bytes.")
        except HTTPException as error:
            response = http_error(error.code or 500, error.description or "The request failed.")
        finally:
            request.close()
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        endpoint, args = self.map.bind_to_environ(request.environ).match()
        source = request.environ.get(TOKEN_SOURCE_KEY)
        if source == "path":
            raise http_error(
                400, "The API takes the token in a header (X-Auth, Authorization), not in the URL."
            )
        # A browser's session is for the pages, which check CSRF; the API does not.
        actor = identity(request.environ) if source == "header" else None
        handler = getattr(self, f"api_{endpoint}")
        result: Response = handler(request, actor, **args)
        return result

    # -- channels ----------------------------------------------------------------------

    def api_channels(self, request: Request, actor: Token | None) -> Response:
        if request.method == "POST":
            body = _body(request)
            name = _field(body, "name", str)
            options = {k: v for k, v in body.items() if k != "name"}
            _check_channel_options(options)
            channel = self.admin.create_channel(actor, name, **options)
            return _json(channel_json(channel), 201)
        return _json({"channels": [channel_json(c) for c in self.admin.channels(actor)]})

    def api_channel(self, request: Request, actor: Token | None, name: str) -> Response:
        if request.method == "DELETE":
            contents = self.admin.delete_channel(actor, name)
            return _json({"deleted": True, **contents.to_json()})
        if request.method == "PATCH":
            # Only the settings the body names change (channel update's semantics).
            self.admin.channel(actor, name, Scope.ADMIN)  # 401/403/404 before the body
            options = _body(request)
            if "name" in options:
                raise http_error(400, "A channel's 'name' cannot be changed; create another.")
            _check_channel_options(options)
            return _json(channel_json(self.admin.update_channel(actor, name, **options)))
        return _json(channel_json(self.admin.channel(actor, name)))

    def api_packages(self, request: Request, actor: Token | None, name: str) -> Response:
        packages = self.admin.packages(actor, name)
        return _json({eco: [p.to_json() for p in listed] for eco, listed in packages.items()})

    def api_package(
        self, request: Request, actor: Token | None, name: str, ecosystem: str, package: str
    ) -> Response:
        version = request.args.get("version") or None
        return _json(detail_json(self.admin.package(actor, name, ecosystem, package, version)))

    def api_change(self, request: Request, actor: Token | None, name: str, action: str) -> Response:
        # The channel first: its 401/403/404 before any complaint about the body.
        self.admin.channel(actor, name, Scope.ADMIN)
        body = _body(request)
        target = _field(body, "filename", str)
        reason = _field(body, "reason", str, default="")
        found, files = self.admin.change(actor, name, cast("Action", action), target, reason=reason)
        return _json(
            {"action": action, "ecosystem": found.ecosystem, "package": found.key, "files": files}
        )

    # -- tokens ------------------------------------------------------------------------

    def api_tokens(self, request: Request, actor: Token | None) -> Response:
        if request.method != "POST":
            return _json({"tokens": [token_json(t) for t in self.admin.list_tokens(actor)]})
        self.admin.list_tokens(actor)  # who may: 401/403 before looking at the body
        body = _body(request)
        channels = _field(body, "channels", list)
        if not all(isinstance(c, str) for c in channels):
            raise http_error(400, "'channels' must be a list of channel names, or ['*'].")
        try:
            scope = Scope.parse(_field(body, "scope", str))
            expires = _field(body, "expires", str, default="")
            expires_in = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise http_error(400, f"{str(exc).capitalize()}.") from None
        note = _field(body, "note", str, default="")
        secret, token = self.admin.create_token(
            actor, channels, scope, expires_in=expires_in, note=note
        )
        return _json({**token_json(token), "token": secret}, 201)

    def api_token(self, request: Request, actor: Token | None, token_id: str) -> Response:
        if request.method == "DELETE":
            stored = self.admin.revoke_token(actor, token_id)
            return _json({"id": token_id, "revoked": True, "stored": stored})
        for token in self.admin.list_tokens(actor):
            if token.id == token_id:
                return _json(token_json(token))
        raise http_error(404, f"No token you manage has id {token_id[:20]!r}.")


def _json(body: Any, status: int = 200) -> Response:
    response = Response(json.dumps(body) + "\n", status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _body(request: Request) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise http_error(415, "Send the body as JSON, with Content-Type: application/json.")
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError):
        raise http_error(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise http_error(400, "The body must be a JSON object.")
    return body


_MISSING = object()


def _field(body: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise http_error(400, f"The body needs {name!r}.")
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise http_error(400, f"{name!r} must be a {_KIND_NAMES.get(kind, kind.__name__)}.")
    return value


_KIND_NAMES = {str: "string", list: "list", bool: "boolean (true or false)"}


def _check_channel_options(options: dict[str, Any]) -> None:
    """Each option of a new channel has its field's type (a flag is a boolean...)."""
    defaults = {f.name: f.default for f in fields(Channel)}
    for name, value in options.items():
        default = defaults.get(name)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise http_error(400, f"{name!r} must be a boolean (true or false).")
        if default is None and value is not None and not isinstance(value, str):
            raise http_error(400, f"{name!r} must be a string or null.")
