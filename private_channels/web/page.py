"""What every page shares: the request's :class:`Page`, and :class:`PageKit`, the
frame every page is rendered in (navigation, sign-in or sign-out, messages, the
security headers), error pages, redirects after forms, and the checks of a form.

::

    class ChannelPages(PageKit):
        def page_channel(self, page, channel):
            found = self._channel(page, channel)          # 401/403/404 as the API
            return self._render(page, found.name, h("<p>{}</p>", ...))

The pages themselves are in :mod:`~.browse` and :mod:`private_channels.web.manage`;
the middleware that routes to them, signs in and out and serves the static files is
:mod:`~.pages`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Map, MapAdapter, RuleFactory
from werkzeug.wrappers import Request, Response

from ..admin import Admin
from ..auth import same_origin
from ..core.cache import DocumentCache
from ..core.ecosystem import Package, Snippet
from ..core.limits import Limits
from ..errors import http_error
from ..redaction import redact_tokens
from ..tokens import Scope, Token
from .html import h, join
from .session import CSRF_FIELD, Session, Sessions

# What werkzeug's converters leave unquoted in a path segment (BaseConverter.to_url).
_SEGMENT_SAFE = "!$&'()*+,/:;=@"

if TYPE_CHECKING:
    from ..channels import Channel

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "Page",
    "PageKit",
    "redirect",
    "return_to",
    "routing_map",
]

# werkzeug compiles each rule's URL builder with compile(), and CPython 3.11's AST
# constructor keeps a recursion counter that threads compiling at once corrupt
# ("SystemError: AST constructor recursion depth mismatch", gh-106905): apps built in
# several threads at once (a host's lazy start-up, the tests) build their maps in turn.
_COMPILING = threading.Lock()


def routing_map(rules: Iterable[RuleFactory], **options: Any) -> Map:
    """A werkzeug ``Map`` of ``rules``, built one at a time in this process."""
    with _COMPILING:
        return Map(rules, **options)


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    # Pages carry CSRF tokens, and one of them a token's secret: never cached.
    ("Cache-Control", "no-store"),
    ("Vary", "Accept, Cookie"),
)


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

    def urls_of(self, endpoint: str, field: str, **values: Any) -> Callable[[str], str]:
        """``url(endpoint, **values, field=value)`` as a function of ``value``, built by
        the routing map once: for the links of a long list (``build`` takes some 15 µs).
        ``field`` is the last variable of the rule, a plain one (``<name>``)."""
        marker = "\0"  # quoted as %00: the last one in the URL is the field's
        head, _, tail = self.url(endpoint, **values, **{field: marker}).rpartition("%00")
        return lambda value: f"{head}{quote(value, safe=_SEGMENT_SAFE)}{tail}"

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


class PageKit:
    """The frame and helpers of every page; the middleware provides the attributes."""

    admin: Admin
    sessions: Sessions
    limits: Limits
    #: Rendered descriptions, by a digest of their text: rendering reStructuredText
    #: costs more than reading it.
    descriptions: DocumentCache

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
            here = return_to(page.request)
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
        for name, value in SECURITY_HEADERS:
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
        return redirect(url)

    def _check_form(self, page: Page, form: MultiDict[str, str]) -> None:
        """Every state-changing form: from this origin, with this session's CSRF token."""
        if not same_origin(page.request.environ):
            raise http_error(403, "This form was sent from another site; use this site's pages.")
        if not self.sessions.check_csrf(page.session, form.get(CSRF_FIELD)):
            raise http_error(
                400, "The form has expired or is not this session's; load the page again."
            )

    def _channel(self, page: Page, name: str, scope: Scope = Scope.READ) -> Channel:
        return self.admin.channel(page.actor, name, scope)

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
            "as the password of the user name <code>__token__</code> (or as the user name "
            "with the password <code>x-auth-token</code>), or in an <code>X-Auth</code> "
            "header.</p>",
            url=url,
        )


def redirect(location: str) -> Response:
    response = Response(status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def return_to(request: Request, *, query: bool = False) -> str:
    """This request's path (and query), for sign-in to return to; "" (the channels)
    when it holds anything that looks like a token, which no page, form or Location
    may carry back (a token sent as a path segment, say)."""
    here = quote(request.script_root + request.path)
    if query and request.query_string:
        here += "?" + request.query_string.decode("latin-1")
    return "" if redact_tokens(here) != here else here
