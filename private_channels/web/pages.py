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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from werkzeug.datastructures import MIMEAccept, MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import parse_accept_header, parse_options_header
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from ..admin import Admin, token_state
from ..auth import SESSION_IDENTITY_KEY
from ..core.ecosystem import Package, PackageDetail, Snippet, Upload, UploadKind
from ..core.limits import Limits
from ..core.manage import ACTIONS
from ..core.upload import parse_upload_form
from ..errors import ChannelHTTPError, http_error
from ..tokens import ALL_CHANNELS, Scope, Token, parse_duration
from . import html
from .html import h, join
from .session import CSRF_FIELD, Session, Sessions, same_origin

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..channels import Channel
    from ..core.ecosystem import Ecosystem

__all__ = ["CONTENT_SECURITY_POLICY", "PagesMiddleware", "wants_html"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    # Pages carry CSRF tokens, and one of them a token's secret: never cached.
    ("Cache-Control", "no-store"),
    ("Vary", "Accept, Cookie"),
)
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


@dataclass
class Page:
    """One request to a page: who asks, their session, and URLs under the mount."""

    request: Request
    urls: MapAdapter
    sessions: Sessions
    session: Session | None
    actor: Token | None
    dirty: bool = False  # the cookie must be written again
    shown_flash: str = field(default="", init=False)

    def url(self, endpoint: str, **values: Any) -> str:
        return self.urls.build(endpoint, values)

    @property
    def channel_root(self) -> str:
        """The absolute URL of the mount, as this browser reached it."""
        return self.request.host_url.rstrip("/") + quote(self.request.script_root.rstrip("/"))

    def csrf(self) -> Markup:
        """The hidden CSRF field of a form (making the session a form needs)."""
        if self.session is None:
            self.session, self.dirty = Session(), True
        token = self.sessions.csrf_token(self.session)
        return h("<input type='hidden' name='{}' value='{}'>", CSRF_FIELD, token)

    def take_flash(self) -> str:
        if self.session is not None and self.session.flash:
            self.shown_flash = self.session.flash
            self.session = Sessions.with_flash(self.session, "")
            self.dirty = True
        return self.shown_flash


class PagesMiddleware:
    """Serve the pages (see the module); pass every other request on, with a signed-in
    session's identity for reads that carry no token (the pages' download links)."""

    def __init__(
        self,
        app: WSGIApplication,
        admin: Admin,
        sessions: Sessions,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.admin = admin
        self.sessions = sessions
        self.limits = limits or Limits()
        self.owned = Map(_owned())
        self.negotiated = Map(_negotiated())
        self.urls = Map(_owned() + _negotiated())
        folder = importlib.resources.files(__package__) / "static"
        self.static = {name: (folder / name).read_bytes() for name in _STATIC}

    # -- dispatch ----------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            matched = self._match(environ)
        except RequestRedirect as redirect:  # a missing trailing slash
            return redirect(environ, start_response)
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
        request = Request(environ)
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
            response = self._refused(page, error)
        except HTTPException as error:
            response = self._error(page, error.code or 500, _sentence(error))
        finally:
            request.close()
        if page.dirty and page.session is not None:
            self.sessions.save(response, request, page.session)
        return response

    def _check_form(self, page: Page, form: MultiDict[str, str]) -> None:
        """Every state-changing form: from this origin, with this session's CSRF token."""
        if not same_origin(page.request):
            raise http_error(403, "This form was sent from another site; use this site's pages.")
        if not self.sessions.check_csrf(page.session, form.get(CSRF_FIELD)):
            raise http_error(
                400, "The form has expired or is not this session's; load the page again."
            )

    def _refused(self, page: Page, error: ChannelHTTPError) -> Response:
        if error.code == 401:
            # Never the Basic challenge of the machine endpoints: the sign-in form.
            if page.request.method in ("GET", "HEAD"):
                return self._to_login(page)
            return self.page_login(page, problem=error.sentence, status=401)
        return self._error(page, error.code or 500, error.sentence)

    def _to_login(self, page: Page) -> Response:
        here = quote(page.request.script_root + page.request.path)
        if page.request.query_string:
            here += "?" + page.request.query_string.decode("latin-1")
        return _redirect(page.url("login", next=here))

    # -- rendering ---------------------------------------------------------------------

    def _render(
        self, page: Page, title: str, body: Markup, *, status: int = 200, problem: str = ""
    ) -> Response:
        actor = page.actor
        nav = [h("<a href='{}'>Channels</a>", page.url("home"))]
        if actor is not None and actor.scope >= Scope.ADMIN:
            nav.append(h("<a href='{}'>Tokens</a>", page.url("tokens")))
        if actor is not None:
            who = h(
                "<form method='post' action='{}' class='inline'>{}<span>Token {} ({} on {})"
                "</span> <button type='submit'>Sign out</button></form>",
                page.url("logout"),
                page.csrf(),
                actor.id,
                str(actor.scope),
                ", ".join(sorted(actor.channels)),
            )
        elif page.request.path == "/-/login":
            who = h("")
        else:
            # Every page offers to sign in, where a private page would have asked.
            here = quote(page.request.script_root + page.request.path)
            who = h(
                "<form method='post' action='{}' class='inline'>{}"
                "<input type='hidden' name='next' value='{}'>"
                "<input type='password' name='token' placeholder='token' aria-label='Token' "
                "autocomplete='off' required> <button type='submit'>Sign in</button></form>",
                page.url("login"),
                page.csrf(),
                here,
            )
        flash = page.take_flash()
        messages = join(
            [
                h("<p class='flash' role='status'>{}</p>", flash) if flash else "",
                h("<p class='problem' role='alert'>{}</p>", problem) if problem else "",
            ]
        )
        document = h(
            "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>{title} · private-channels</title>"
            "<link rel='stylesheet' href='{css}'><script src='{js}' defer></script></head>"
            "<body><header><a class='brand' href='{home}'>private-channels</a>"
            "<nav>{nav}</nav><div class='who'>{who}</div></header>"
            "<main><h1>{title}</h1>{messages}{body}</main></body></html>\n",
            title=title,
            css=page.url("static", name="style.css"),
            js=page.url("static", name="pages.js"),
            home=page.url("home"),
            nav=join(nav, " "),
            who=who,
            messages=messages,
            body=body,
        )
        response = Response(document, status=status, mimetype="text/html")
        for name, value in _SECURITY_HEADERS:
            response.headers[name] = value
        return response

    def _error(self, page: Page, status: int, sentence: str) -> Response:
        body = h(
            "<p class='problem' role='alert'>{}</p><p><a href='{}'>Back to the channels</a></p>",
            sentence,
            page.url("home"),
        )
        return self._render(page, f"Error {status}", body, status=status)

    def _back(self, page: Page, url: str, flash: str) -> Response:
        """After a form: redirect (303) to ``url`` with a message for the next page."""
        page.session = Sessions.with_flash(page.session or Session(), flash)
        page.dirty = True
        return _redirect(url)

    # -- sign in, sign out -------------------------------------------------------------

    def page_login(self, page: Page, *, problem: str = "", status: int = 200) -> Response:
        request = page.request
        target = _local(request, request.values.get("next", ""))
        if request.method == "POST" and not problem:
            signed = self.sessions.sign_in(request.form.get("token", ""))
            if signed is None:
                problem, status = "The token is invalid or expired.", 401
            else:
                session, token = signed
                page.session, page.actor = session, token
                response = _redirect(target or page.url("home"))
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
        response = _redirect(page.url("login"))
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

    # -- channels ----------------------------------------------------------------------

    def page_home(self, page: Page) -> Response:
        channels = self.admin.channels(page.actor)
        manages = Admin.manages_instance(page.actor)
        rows = []
        for channel in channels:
            action: Markup | str = ""
            if manages:
                action = h(
                    "<a href='{}'>Delete…</a>", page.url("delete_channel", channel=channel.name)
                )
            rows.append(
                h(
                    "<tr data-name='{name}'><td><a href='{url}'>{name}</a></td><td>{kind}</td>"
                    "<td>{created}</td><td>{action}</td></tr>",
                    name=channel.name,
                    url=page.url("channel", channel=channel.name),
                    kind="public" if channel.public else "private",
                    created=html.date(channel.created),
                    action=action,
                )
            )
        body = (
            html.table(("Channel", "Visibility", "Created", ""), rows)
            if rows
            else h(
                "<p class='none'>{}</p>",
                "No channel you may read."
                if page.actor
                else "No public channel; sign in to see yours.",
            )
        )
        if manages:
            body += h(
                "<h2>Create a channel</h2><form method='post' action='{}' class='stack'>{}"
                "<label>Name <input name='name' required pattern='[A-Za-z0-9_][A-Za-z0-9._\\-]*' "
                "maxlength='64'></label>"
                "<label><input type='checkbox' name='public' value='on'> Public: anyone may "
                "read it</label>"
                "<label><input type='checkbox' name='allow_reupload' value='on'> A deleted "
                "filename may be uploaded again</label>"
                "<button type='submit'>Create</button></form>",
                page.url("create_channel"),
                page.csrf(),
            )
        return self._render(page, "Channels", body)

    def _channel(self, page: Page, name: str, scope: Scope = Scope.READ) -> Channel:
        return self.admin.channel(page.actor, name, scope)

    def page_channel(self, page: Page, channel: str) -> Response:
        found = self._channel(page, channel)
        query = page.request.args.get("q", "")[:100]
        packages = self.admin.packages(page.actor, found.name)
        sections = []
        for ecosystem, listed in packages.items():
            shown = [p for p in listed if query.casefold() in p.name.casefold()]
            rows = [
                h(
                    "<tr data-name='{name}'><td><a href='{url}'>{name}</a></td><td>{latest}</td>"
                    "<td>{count}</td></tr>",
                    name=p.name,
                    url=page.url("package", channel=found.name, ecosystem=ecosystem, name=p.key),
                    latest=p.versions[-1] if p.versions else "",
                    count=len(p.versions),
                )
                for p in shown
            ]
            listing = (
                html.table(("Package", "Latest", "Versions"), rows, attrs=h(" class='filterable'"))
                if rows
                else h(
                    "<p class='none'>No {} packages{}.</p>",
                    ecosystem,
                    " match the filter" if query and listed else "",
                )
            )
            sections.append(h("<section><h2>{}</h2>{}</section>", ecosystem, listing))
        actions = []
        if self.admin.may(page.actor, found, Scope.WRITE):
            actions.append(
                h("<a href='{}'>Upload a package</a>", page.url("upload", channel=found.name))
            )
        if Admin.manages_instance(page.actor):
            actions.append(
                h(
                    "<a href='{}'>Delete this channel…</a>",
                    page.url("delete_channel", channel=found.name),
                )
            )
        setup = join(html.snippet(s) for s in self._snippets(page, found, None))
        body = h(
            "<p>{kind} channel, created {created}. {actions}</p>"
            "<form method='get' action='{here}' class='filter' role='search'>"
            "<label>Filter <input type='search' name='q' value='{query}' id='filter' "
            "placeholder='package name'></label> <button type='submit'>Filter</button></form>"
            "{sections}<h2>Set up your clients</h2>{where}"
            "<p class='note'>Every snippet uses a placeholder for your token: "
            "<code>$TOKEN</code> in a shell, <code>PRIVATE_CHANNELS_TOKEN</code> in R's "
            "environment. No page shows a token.</p>{setup}",
            kind="A public" if found.public else "A private",
            created=html.date(found.created),
            actions=join(actions, " · "),
            here=page.url("channel", channel=found.name),
            query=query,
            sections=join(sections),
            where=self._where(page, found),
            setup=setup,
        )
        return self._render(page, found.name, body)

    def _snippets(self, page: Page, channel: Channel, package: Package | None) -> list[Snippet]:
        url = f"{page.channel_root}/{quote(channel.name)}"
        ecosystems = self.admin.ecosystems
        if package is not None:
            ecosystems = (self.admin.ecosystem(package.ecosystem),)
        return [s for e in ecosystems for s in e.snippets(url, package)]

    def _where(self, page: Page, channel: Channel) -> Markup:
        """The channel's addresses as this browser reached them, for any client."""
        url = f"{page.channel_root}/{quote(channel.name)}"
        return h(
            "<p class='where'>Python index: <code>{url}/simple/</code> · R repository: "
            "<code>{url}</code> · uploads: <code>POST {url}</code>. Clients send the token "
            "as the user name with the password <code>x-auth-token</code>, or in an "
            "<code>X-Auth</code> header.</p>",
            url=url,
        )

    def page_create_channel(self, page: Page) -> Response:
        form = page.request.form
        options = {key: form.get(key) == "on" for key in ("public", "allow_reupload")}
        channel = self.admin.create_channel(page.actor, form.get("name", "").strip(), **options)
        return self._back(
            page, page.url("channel", channel=channel.name), f"Created channel {channel.name}."
        )

    def page_delete_channel(self, page: Page, channel: str) -> Response:
        contents = self.admin.contents(page.actor, channel)
        if page.request.method == "POST":
            if page.request.form.get("confirm", "").strip() != contents.channel.name:
                raise http_error(400, "Type the channel's name to confirm that it goes.")
            self.admin.delete_channel(page.actor, channel)
            return self._back(page, page.url("home"), f"Deleted channel {channel}.")
        body = h(
            "<p class='warning'>{summary} Deleting it removes every file for good.</p>"
            "<form method='post' action='{action}' class='stack'>{csrf}"
            "<label>Type <strong>{name}</strong> to confirm <input name='confirm' required "
            "autocomplete='off'></label>"
            "<button type='submit' class='danger'>Delete channel {name}</button></form>"
            "<p><a href='{back}'>Keep it</a></p>",
            summary=contents.describe(),
            action=page.url("delete_channel", channel=channel),
            csrf=page.csrf(),
            name=contents.channel.name,
            back=page.url("channel", channel=channel),
        )
        return self._render(page, f"Delete channel {channel}?", body)

    # -- packages ----------------------------------------------------------------------

    def page_package(self, page: Page, channel: str, ecosystem: str, name: str) -> Response:
        found = self._channel(page, channel)
        version = page.request.args.get("version") or None
        detail = self.admin.package(page.actor, found.name, ecosystem, name, version)
        admin = self.admin.may(page.actor, found, Scope.ADMIN)
        body = self._package_body(page, found, detail, admin)
        return self._render(page, f"{detail.package.name} {detail.version}", body)

    def _package_body(
        self, page: Page, channel: Channel, detail: PackageDetail, admin: bool
    ) -> Markup:
        package = detail.package
        here = page.url(
            "package", channel=channel.name, ecosystem=package.ecosystem, name=package.key
        )
        channel_url = page.url("channel", channel=channel.name)
        yanked = {f.version for f in detail.files if f.yanked is not None}
        versions = join(
            (
                h(
                    "<li><a href='{}'{}>{}</a>{}</li>",
                    f"{here}?version={quote(v)}",
                    h(" aria-current='page'") if v == detail.version else "",
                    v,
                    " (yanked)" if v in yanked else "",
                )
                for v in reversed(package.versions)
            ),
        )
        rows = []
        for item in detail.files:
            link = (
                h("<a href='{}'>{}</a>", f"{channel_url}{item.url}", item.filename)
                if item.url is not None
                else h("{}", item.filename)
            )
            state = (
                ""
                if item.yanked is None
                else h("yanked{}", f": {item.yanked}" if item.yanked else "")
            )
            actions: Markup | str = ""
            if admin:
                actions = self._file_actions(page, channel, item.filename, item.yanked is not None)
            rows.append(
                h(
                    "<tr{cls}><td>{link}</td><td>{version}</td><td>{size}</td>"
                    "<td><code class='sha' title='{sha}'>{sha}</code></td>"
                    "<td>{time}</td><td>{state}</td>"
                    "<td>{details}</td><td>{actions}</td></tr>",
                    cls=h(" class='yanked'") if item.yanked is not None else "",
                    link=link,
                    version=item.version,
                    size=html.size(item.size),
                    sha=item.sha256,
                    time=html.date(item.upload_time),
                    state=state,
                    details=html.file_details(item),
                    actions=actions,
                )
            )
        about = join(h("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in detail.about)
        snippets = self._snippets(page, channel, package)
        return h(
            "<p class='summary'>{summary}</p><p>A {ecosystem} package in channel "
            "<a href='{channel_url}'>{channel}</a>.</p>{where}"
            "<h2>Install</h2>{install}<details><summary>Other clients, and uploading</summary>"
            "{snippets}</details>"
            "<h2>Versions</h2><ul class='versions'>{versions}</ul>"
            "<h2>Files</h2>{files}"
            "{about}<h2>Description of {version}</h2>{description}",
            summary=detail.summary,
            ecosystem=package.ecosystem,
            channel_url=channel_url,
            channel=channel.name,
            where=self._where(page, channel),
            install=html.snippet(snippets[0]),
            snippets=join(html.snippet(s) for s in snippets[1:]),
            versions=versions,
            files=html.table(
                ("File", "Version", "Size", "sha256", "Uploaded", "Yanked", "Details", ""), rows
            ),
            about=h("<h2>About {}</h2><dl>{}</dl>", detail.version, about) if detail.about else "",
            version=detail.version,
            description=html.render_description(detail.description),
        )

    def _file_actions(self, page: Page, channel: Channel, filename: str, yanked: bool) -> Markup:
        action = page.url("files", channel=channel.name)
        if yanked:
            change = h(
                "<form method='post' action='{}' class='inline'>{}"
                "<input type='hidden' name='action' value='unyank'>"
                "<input type='hidden' name='filename' value='{}'>"
                "<button type='submit'>Unyank</button></form>",
                action,
                page.csrf(),
                filename,
            )
        else:
            change = h(
                "<form method='post' action='{}' class='inline'>{}"
                "<input type='hidden' name='action' value='yank'>"
                "<input type='hidden' name='filename' value='{}'>"
                "<input name='reason' placeholder='reason' maxlength='1000' "
                "aria-label='Reason for yanking {}'> <button type='submit'>Yank</button></form>",
                action,
                page.csrf(),
                filename,
                filename,
            )
        delete = h(
            "<a href='{}'>Delete…</a>",
            page.url("files", channel=channel.name, action="delete", filename=filename),
        )
        return change + delete

    def page_files(self, page: Page, channel: str) -> Response:
        request = page.request
        found = self._channel(page, channel, Scope.ADMIN)
        values = request.form if request.method == "POST" else request.args
        action = values.get("action", "")
        filename = values.get("filename", "")[:512]
        if action not in ACTIONS or not filename:
            raise http_error(400, "Name an action (yank, unyank, delete) and a file.")
        if request.method != "POST":
            if action != "delete":
                raise http_error(405, "Yank and unyank with the buttons of the package page.")
            body = h(
                "<p class='warning'>Deleting <strong>{file}</strong> removes its bytes for "
                "good{reuse}.</p><form method='post' action='{action}'>{csrf}"
                "<input type='hidden' name='action' value='delete'>"
                "<input type='hidden' name='filename' value='{file}'>"
                "<button type='submit' class='danger'>Delete {file}</button></form>"
                "<p>To keep it installable for those who pin it, yank it instead.</p>",
                file=filename,
                reuse=""
                if found.allow_reupload
                else "; its name cannot be uploaded again in this channel",
                action=page.url("files", channel=found.name),
                csrf=page.csrf(),
            )
            return self._render(page, f"Delete {filename}?", body)
        target, files = self.admin.change(
            page.actor,
            found.name,
            action,
            filename,
            reason=request.form.get("reason", ""),
        )
        past = {"yank": "Yanked", "unyank": "Unyanked", "delete": "Deleted"}[action]
        message = f"{past} {', '.join(files)}."
        ecosystem = self.admin.ecosystem(target.ecosystem)
        if ecosystem.package(found, target.key) is None:
            return self._back(page, page.url("channel", channel=found.name), message)
        url = page.url("package", channel=found.name, ecosystem=target.ecosystem, name=target.key)
        return self._back(page, url, message)

    # -- upload ------------------------------------------------------------------------

    def _kinds(self) -> list[tuple[Ecosystem, UploadKind]]:
        return [(e, kind) for e in self.admin.ecosystems for kind in e.upload_kinds]

    def _options(self) -> list[tuple[str, str]]:
        """The optional text fields of every kind: (form field, label), each once."""
        return list(dict(o for _, kind in self._kinds() for o in kind.options).items())

    def page_upload(self, page: Page, channel: str) -> Response:
        request = page.request
        found = self._channel(page, channel, Scope.WRITE)
        if request.method != "POST":
            return self._upload_form(page, found)
        if not same_origin(request):
            raise http_error(403, "This form was sent from another site; use this site's pages.")
        content_type, options = parse_options_header(request.content_type or "")
        boundary = options.get("boundary", "").encode("latin-1", "replace")
        if content_type != "multipart/form-data" or not boundary:
            raise http_error(400, "The upload form must be sent as multipart/form-data.")
        try:
            with parse_upload_form(request.environ, boundary, self.limits) as (form, files):
                self._check_form(page, form)
                response = self._upload(page, found, form, files)
        except ChannelHTTPError as error:
            if error.code in (401, 403) and page.actor is None:
                raise
            return self._upload_form(page, found, problem=error.sentence, status=error.code or 400)
        message = response.get_data(as_text=True).strip()
        return self._back(page, page.url("upload", channel=found.name), message)

    def _upload(
        self, page: Page, channel: Channel, form: MultiDict[str, str], files: MultiDict[str, Any]
    ) -> Response:
        chosen = form.get("kind", "")
        for ecosystem, kind in self._kinds():
            if kind.id != chosen:
                continue
            fields: MultiDict[str, str] = MultiDict(kind.fields)
            # Every option the page offers goes on as filled in, whatever the kind, so
            # that the handler answers a misplaced one as it answers curl.
            for name, _ in self._options():
                value = form.get(name, "").strip()
                if value:
                    fields[name] = value
            # The same handler as twine's and curl's uploads: the same checks and answers.
            assert ecosystem.claims(fields), kind
            return ecosystem.upload(Upload(channel, page.actor, fields, files, self.limits))
        raise http_error(400, "Choose what kind of package the file is.")

    def _upload_form(
        self, page: Page, channel: Channel, *, problem: str = "", status: int = 200
    ) -> Response:
        kinds = self._kinds()
        choices = join(
            h(
                "<label><input type='radio' name='kind' value='{}' required{}> {}</label>",
                kind.id,
                h(" checked") if i == 0 else "",
                kind.label,
            )
            for i, (_, kind) in enumerate(kinds)
        )
        extra = join(
            h("<label>{} <input name='{}' maxlength='60'></label>", label, name)
            for name, label in self._options()
        )
        accept = ",".join(sorted({a for _, k in kinds for a in k.accept.split(",") if a}))
        body = h(
            "<p>Uploading here does what twine and curl do: the same checks, the same "
            "answers, the same storage. Channel <a href='{back}'>{channel}</a>.</p>"
            "<form method='post' action='{action}' enctype='multipart/form-data' "
            "class='stack'>{csrf}<fieldset><legend>Kind of file</legend>{choices}</fieldset>"
            "{extra}<label>File <input type='file' name='content' required accept='{accept}'>"
            "</label><button type='submit'>Upload</button></form>",
            back=page.url("channel", channel=channel.name),
            channel=channel.name,
            action=page.url("upload", channel=channel.name),
            csrf=page.csrf(),
            choices=choices,
            extra=extra,
            accept=accept,
        )
        return self._render(page, f"Upload to {channel.name}", body, status=status, problem=problem)

    # -- tokens ------------------------------------------------------------------------

    def page_tokens(self, page: Page) -> Response:
        created: tuple[str, Token] | None = None
        if page.request.method == "POST":
            created = self._create_token(page)
        tokens = self.admin.list_tokens(page.actor)
        assert page.actor is not None  # list_tokens refused anonymous callers
        rows = [
            h(
                "<tr><td><code>{id}</code>{me}</td><td>{channels}</td><td>{scope}</td>"
                "<td>{note}</td><td>{created}</td><td>{expires}</td><td>{used}</td>"
                "<td>{state}</td><td>{revoke}</td></tr>",
                id=token.id,
                me=" (this session)" if token.id == page.actor.id else "",
                channels=", ".join(sorted(token.channels)),
                scope=str(token.scope),
                note=token.note,
                created=html.date(token.created),
                expires=html.date(token.expires),
                used=html.date(token.last_used, never="not yet"),
                state=token_state(token),
                revoke=""
                if token.revoked
                else h(
                    "<form method='post' action='{}' class='inline'>{}"
                    "<button type='submit'>Revoke</button></form>",
                    page.url("revoke_token", token_id=token.id),
                    page.csrf(),
                ),
            )
            for token in tokens
        ]
        shown: Markup | str = ""
        if created is not None:
            secret, token = created
            shown = h(
                "<section class='secret'><h2>Token {id} was created</h2>"
                "<p>Copy it now: it is shown only this once, and nothing keeps it.</p>"
                "<pre><code id='new-token'>{secret}</code></pre></section>",
                id=token.id,
                secret=secret,
            )
        channels = self.admin.token_channels(page.actor)
        scopes = [s for s in Scope if s <= page.actor.scope]
        body = h(
            "{shown}{table}<h2>Create a token</h2>"
            "<form method='post' action='{action}' class='stack'>{csrf}"
            "<fieldset><legend>Channels</legend>{channels}</fieldset>"
            "<label>Scope <select name='scope'>{scopes}</select></label>"
            "<label>Expires after <input name='expires' placeholder='30d' maxlength='12'>"
            "</label><p class='note'>Like 90s, 30m, 12h, 30d; empty: never{must}.</p>"
            "<label>Note <input name='note' maxlength='200'></label>"
            "<button type='submit'>Create token</button></form>",
            shown=shown,
            table=html.table(
                ("Id", "Channels", "Scope", "Note", "Created", "Expires", "Last used", "State", ""),
                rows,
            )
            if rows
            else h("<p class='none'>No tokens.</p>"),
            action=page.url("tokens"),
            csrf=page.csrf(),
            channels=join(
                h(
                    "<label><input type='checkbox' name='channel' value='{}'> {}</label>",
                    c,
                    "* (every channel, those created later too)" if c == ALL_CHANNELS else c,
                )
                for c in channels
            ),
            scopes=join(h("<option>{}</option>", str(s)) for s in scopes),
            must=" (required: this session's token expires)" if page.actor.expires else "",
        )
        return self._render(page, "Tokens", body, status=201 if created else 200)

    def _create_token(self, page: Page) -> tuple[str, Token]:
        form = page.request.form
        expires = form.get("expires", "").strip()
        try:
            scope = Scope.parse(form.get("scope", ""))
            expires_in = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise http_error(400, f"{str(exc).capitalize()}.") from None
        return self.admin.create_token(
            page.actor,
            form.getlist("channel"),
            scope,
            expires_in=expires_in,
            note=form.get("note", "").strip(),
        )

    def page_revoke_token(self, page: Page, token_id: str) -> Response:
        self.admin.revoke_token(page.actor, token_id)
        if page.actor is not None and page.actor.id == token_id:
            response = self._back(
                page,
                page.url("login"),
                f"Revoked token {token_id}; this session used it and has ended.",
            )
            return response
        return self._back(page, page.url("tokens"), f"Revoked token {token_id}.")


def _redirect(location: str) -> Response:
    response = Response(status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def _local(request: Request, target: str) -> str:
    """``target`` if it is a path under the mount (where sign-in may return to), else ""."""
    root = quote(request.script_root.rstrip("/") + "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith("//"):
        return ""
    return target[:2000] if target.startswith(root) else ""


def _sentence(error: HTTPException) -> str:
    """werkzeug's own errors (405, 413...) as one sentence."""
    if isinstance(error, MethodNotAllowed):
        return f"This page takes {', '.join(error.valid_methods or ())} only."
    if error.code == 413:
        return "The form is larger than this server accepts."
    return error.description or "The request failed."
