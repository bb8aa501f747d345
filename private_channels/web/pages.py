"""The web pages: sign in with a token, browse channels and packages, upload, manage.

::

    app = PagesMiddleware(app, admin, Sessions(tokens))   # outside TokenAuthMiddleware

    # a browser at https://host/api/repo/ -> the channels it may read

What a browser reaches under the mount prefix ``P`` (routed with werkzeug's ``Map``):

- ``P/`` and ``P/<CHANNEL>/``: the channel list and a channel's page, for requests that
  ask for HTML first (browsers); every other request there (pip, uv, R, curl) passes on
  untouched and gets today's answer;
- ``P/-/login`` (a form: the token is typed in, never put in a URL), ``P/-/logout``;
- ``P/<CHANNEL>/-/packages/<ECOSYSTEM>/<NAME>/``: a package, its versions and files,
  its description and how to install it;
- ``P/<CHANNEL>/-/upload``: the upload form, handed to the same ecosystem handlers as
  twine's and curl's uploads; ``P/<CHANNEL>/-/files``: yank, unyank, delete;
- ``P/-/tokens``: list, create (the secret shown once) and revoke tokens;
  ``P/-/channels``: create a channel; ``P/-/channels/<CHANNEL>/delete``: delete one,
  after a confirmation that names what it holds;
- ``P/-/static/``: the style sheet and the small script (no inline script anywhere).

Every page is a view of the same records the indexes render, through the management
API (:class:`~..admin.Admin`), which decides who may see and do what.  A browser
without a session gets the sign-in form (never a Basic challenge).  Sessions, CSRF
tokens and origin checks are :mod:`~.session`'s; the markup is :mod:`~.html`'s.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import BadHost, HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import parse_accept_header
from werkzeug.routing import RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ..admin import Admin
from ..auth import SESSION_IDENTITY_KEY
from ..core.cache import DocumentCache
from ..core.limits import Limits, MiB
from ..core.manage import FormRequest
from ..errors import ChannelHTTPError, http_error
from ..redaction import redact_tokens
from .api import is_api
from .browse import BrowsePages
from .html import h
from .manage import ManagePages
from .page import Page, redirect, return_to, routing_map
from .session import Sessions

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


__all__ = ["PagesMiddleware", "wants_html"]

_STATIC = {"style.css": "text/css; charset=utf-8", "pages.js": "text/javascript; charset=utf-8"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@functools.lru_cache(maxsize=256)  # pure, and clients send the same few headers
def wants_html(accept: str | None) -> bool:
    """Whether a request asks for HTML before anything else: browsers do
    (``text/html,...``); pip and uv list HTML at a low quality, curl and R not at all.

    >>> wants_html("text/html,application/xhtml+xml,*/*;q=0.8")
    True
    >>> wants_html("application/vnd.pypi.simple.v1+json, text/html;q=0.01"), wants_html("*/*")
    (False, False)
    """
    if not accept or len(accept) > 4096:
        return False
    accepted = parse_accept_header(accept, MIMEAccept)
    html_quality = max((q for v, q in accepted if v.lower() in _HTML_TYPES), default=0)
    best = max((q for _, q in accepted), default=0)
    return html_quality > 0 and html_quality >= best


def _owned() -> list[Rule]:
    """The pages' own URLs: served whatever the request asks for."""
    get, form = ["GET", "HEAD"], ["GET", "HEAD", "POST"]
    return [
        Rule("/-/login", endpoint="login", methods=form),
        Rule("/-/logout", endpoint="logout", methods=["POST"]),
        Rule("/-/static/<name>", endpoint="static", methods=get),
        Rule("/-/tokens", endpoint="tokens", methods=form),
        Rule("/-/tokens/<token_id>/revoke", endpoint="revoke_token", methods=["POST"]),
        Rule("/-/channels", endpoint="create_channel", methods=["POST"]),
        Rule("/-/channels/<channel>/delete", endpoint="delete_channel", methods=form),
        Rule("/<channel>/-/packages/<ecosystem>/<name>/", endpoint="package", methods=get),
        Rule("/<channel>/-/upload", endpoint="upload", methods=form),
        Rule("/<channel>/-/files", endpoint="files", methods=form),
    ]


def _negotiated() -> list[Rule]:
    """URLs the indexes' clients use too: pages only for requests that want HTML."""
    return [
        Rule("/", endpoint="home", methods=["GET", "HEAD"]),
        Rule("/<channel>/", endpoint="channel", methods=["GET", "HEAD"]),
    ]


class PagesMiddleware(BrowsePages, ManagePages):
    """Serve the pages (see the module); pass every other request on, with a signed-in
    session's identity for reads that carry no token (the pages' download links)."""

    def __init__(
        self,
        app: WSGIApplication,
        admin: Admin,
        sessions: Sessions,
        *,
        limits: Limits | None = None,
        api: WSGIApplication | None = None,
    ) -> None:
        self.app = app
        # The HTTP API (P/-/api/...) answers its own paths before any page is looked
        # for, so that pages and API cost the other requests one layer, not two.
        self.api = api
        self.admin = admin
        self.sessions = sessions
        self.limits = limits or Limits()
        self.descriptions = DocumentCache(16 * MiB)
        self.owned = routing_map(_owned())
        self.negotiated = routing_map(_negotiated())
        self.urls = routing_map(_owned() + _negotiated())
        folder = importlib.resources.files(__package__) / "static"
        self.static = {name: (folder / name).read_bytes() for name in _STATIC}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.api is not None and is_api(environ.get("PATH_INFO", "")):
            return self.api(environ, start_response)
        try:
            matched = self._match(environ)
        except RequestRedirect as redirect:  # a missing trailing slash
            # werkzeug's Location is absolute, with the Host header in it: whatever the
            # client put there (a token, say) would come back.  The path alone will do.
            moved = urlsplit(redirect.new_url)
            location = quote(moved.path, safe="/%") + (f"?{moved.query}" if moved.query else "")
            response = Response(status=redirect.code)
            response.headers["Location"] = redact_tokens(location)
            return response(environ, start_response)
        except BadHost:  # werkzeug's routing reads the Host header, and refuses some
            refusal = http_error(400, "The Host header is not a host name this server can serve.")
            return refusal(environ, start_response)
        except MethodNotAllowed as refused:
            response = self._serve(environ, "", {}, refused=refused)
            return response(environ, start_response)
        if matched is None:
            self._lend_session(environ)
            return self.app(environ, start_response)
        return self._serve(environ, *matched)(environ, start_response)

    def _match(self, environ: WSGIEnvironment) -> tuple[str, Mapping[str, Any]] | None:
        """The page a request is for, or ``None`` to pass it on."""
        # Every page of its own has a "/-/" segment: the clients' requests (uploads,
        # downloads, indexes) mostly pass on without a look at the routing map.
        if "/-/" in environ.get("PATH_INFO", ""):
            try:
                return self.owned.bind_to_environ(environ).match()
            except NotFound:
                pass
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        if not wants_html(environ.get("HTTP_ACCEPT")):
            return None
        if "/" in environ.get("PATH_INFO", "").strip("/"):
            # Both negotiated pages are one segment deep ("/", "/<channel>/"), even with
            # slashes merged: a browser's project page or file passes on without the map.
            return None
        try:
            return self.negotiated.bind_to_environ(environ).match()
        except NotFound:
            return None

    def _lend_session(self, environ: WSGIEnvironment) -> None:
        """A signed-in browser's reads of files and indexes (the pages link them) go
        with the session's token; the auth middleware uses it only for GET and HEAD
        without a token of their own."""
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and "HTTP_COOKIE" in environ:
            request = Request(environ)
            actor = self.sessions.identity(self.sessions.load(request))
            if actor is not None:
                environ[SESSION_IDENTITY_KEY] = actor

    def _serve(
        self,
        environ: WSGIEnvironment,
        endpoint: str,
        args: Mapping[str, Any],
        *,
        refused: HTTPException | None = None,
    ) -> Response:
        request = FormRequest(environ)
        if endpoint != "upload":
            # The upload's body goes to the core's bounded multipart parser instead.
            request.max_content_length = self.limits.max_admin_body
            request.max_form_memory_size = self.limits.max_admin_body
        session = self.sessions.load(request)
        page = Page(
            request,
            self.urls.bind_to_environ(environ),
            self.sessions,
            session,
            self.sessions.identity(session),
        )
        if page.actor is not None:
            environ["REMOTE_USER"] = page.actor.id  # for the access log, as tokens do
        try:
            if refused is not None:
                raise refused
            handler: Callable[..., Response] = getattr(self, f"page_{endpoint}")
            if request.method == "POST" and endpoint != "upload":
                try:
                    self._check_form(page, request.form)
                except ChannelHTTPError as error:
                    if endpoint != "login":
                        raise
                    response = self.page_login(
                        page, problem=error.sentence, status=error.code or 400
                    )
                else:
                    response = handler(page, **args)
            else:
                response = handler(page, **args)
        except ChannelHTTPError as error:
            response = self._refused(page, error, read_form=endpoint != "upload")
        except HTTPException as error:
            response = self._error(page, error.code or 500, _sentence(error))
        finally:
            request.close()
        if page.dirty and page.session is not None:
            self.sessions.save(response, request, page.session)
        return response

    def _refused(self, page: Page, error: ChannelHTTPError, *, read_form: bool = True) -> Response:
        if error.code == 401:
            # Never the Basic challenge of the machine endpoints: the sign-in form.
            if page.request.method in ("GET", "HEAD"):
                return self._to_login(page)
            return self.page_login(page, problem=error.sentence, status=401, read_form=read_form)
        return self._error(page, error.code or 500, error.sentence)

    def _to_login(self, page: Page) -> Response:
        here = return_to(page.request, query=True)
        return redirect(page.url("login", next=here) if here else page.url("login"))

    def page_login(
        self, page: Page, *, problem: str = "", status: int = 200, read_form: bool = True
    ) -> Response:
        """The sign-in form, or signing in.  ``read_form`` False: the body is not this
        page's form (an upload refused before its parser ran, of any size) and stays
        unread."""
        request = page.request
        target = _local(request, (request.values if read_form else request.args).get("next", ""))
        if request.method == "POST" and not problem:
            signed = self.sessions.sign_in(request.form.get("token", ""))
            if signed is None:
                problem, status = "The token is invalid or expired.", 401
            else:
                session, token = signed
                page.session, page.actor = session, token
                response = redirect(target or page.url("home"))
                if not self.sessions.save(response, request, session, expires=token.expires):
                    problem, status = "This token is too large to sign in with.", 400
                else:
                    page.dirty = False
                    return response
        intro = "Sign in with a token"
        if page.actor is not None:
            intro = f"You are signed in with token {page.actor.id}; sign in with another"
        body = h(
            "<p>{intro}: paste it here. It stays in the form: the session keeps no secret, "
            "and the session ends when the token expires or is revoked.</p>"
            "<form method='post' action='{action}' class='login'>{csrf}"
            "<input type='hidden' name='next' value='{next}'>"
            "<label>Token <input type='password' name='token' autocomplete='off' required "
            "autofocus></label> <button type='submit'>Sign in</button></form>",
            intro=intro,
            action=page.url("login"),
            csrf=page.csrf(),
            next=target,
        )
        return self._render(page, "Sign in", body, status=status, problem=problem)

    def page_logout(self, page: Page) -> Response:
        response = redirect(page.url("login"))
        self.sessions.clear(response, page.request)
        page.dirty = False
        return response

    def page_static(self, page: Page, name: str) -> Response:
        if name not in self.static:
            raise NotFound("No such file.")
        response = Response(self.static[name], mimetype=_STATIC[name].split(";")[0])
        response.headers["Content-Type"] = _STATIC[name]
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.cache_control.public = True
        response.cache_control.max_age = 3600
        response.add_etag()
        return response.make_conditional(page.request)


def _local(request: Request, target: str) -> str:
    """``target`` if it is a path under the mount (where sign-in may return to), else ""."""
    root = quote(request.script_root.rstrip("/") + "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith("//"):
        return ""
    if redact_tokens(target) != target:  # never echoed into the form or a Location
        return ""
    return target[:2000] if target.startswith(root) else ""


def _sentence(error: HTTPException) -> str:
    """werkzeug's own errors (405, 413...) as one sentence."""
    if isinstance(error, MethodNotAllowed):
        return f"This page takes {', '.join(error.valid_methods or ())} only."
    if error.code == 413:
        return "The form is larger than this server accepts."
    return error.description or "The request failed."
