"""Property tests of what the pages and the API parse from clients: which errors may
escape (none but the documented ones), and what hostile input costs."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from private_channels.admin import OPERATOR
from private_channels.app import ecosystems
from private_channels.auth import same_origin
from private_channels.channels import ChannelRegistry
from private_channels.core.manage import find_target
from private_channels.cran.manage import FILENAME, parse_target
from private_channels.storage import MemoryStorage
from private_channels.tokens import TokenStore
from private_channels.web.pages import _local, wants_html
from private_channels.web.session import Session, Sessions

from .web import Site

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Through the whole app: fewer examples, each a request.
APP_SETTINGS = settings(SETTINGS, max_examples=120)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

# One site for every example: the tests below never change what it holds, or change
# only what they make themselves.
SITE = Site(MemoryStorage())


@SETTINGS
@given(st.text(max_size=5000))
def test_wants_html_takes_any_header(accept: str) -> None:
    assert wants_html(accept) in (True, False)


@SETTINGS
@given(st.text(max_size=600))
def test_r_targets_parse_or_are_none(text: str) -> None:
    target = parse_target(text)
    if target is not None:
        assert target.ecosystem == "cran"
        if target.filename is not None:
            assert FILENAME.match(target.filename)


@SETTINGS
@given(st.text(max_size=600))
def test_any_target_text_is_a_target_or_one_sentence(text: str) -> None:
    storage = SITE.storage
    team = ChannelRegistry(storage).get("team")
    assert team is not None
    try:
        target = find_target(ecosystems(storage), team, text)
    except ValueError as exc:
        assert str(exc).endswith(".")
    else:
        assert target.ecosystem in ("python", "cran")


@pytest.mark.parametrize("parse", [parse_target, wants_html])
def test_hostile_input_costs_linear_time(parse: Any) -> None:
    """Ten times the input costs about ten times the time, not a hundred."""

    def cost(n: int) -> float:
        text = "a." * n + "_1" + "-" * n
        start = time.perf_counter()
        for _ in range(5):
            parse(text)
        return time.perf_counter() - start

    cost(1000)
    assert cost(100_000) < 40 * cost(10_000) + 0.05


@SETTINGS
@given(json_values)
def test_session_documents_are_a_session_or_none(doc: Any) -> None:
    session = Session.from_json(doc)
    if session is not None:
        assert isinstance(session.sid, str)


@SETTINGS
@given(st.text(max_size=5000), st.text(max_size=300))
def test_cookies_and_csrf_fields_never_raise(cookie: str, csrf: str) -> None:
    sessions = Sessions(TokenStore(SITE.storage))
    environ = EnvironBuilder().get_environ()
    environ["HTTP_COOKIE"] = f"private_channels_session={cookie}"
    request = Request(environ)
    session = sessions.load(request)
    assert session is None or isinstance(session, Session)
    assert sessions.check_csrf(session or Session(), csrf) is False
    assert sessions.identity(session) is None


@SETTINGS
@given(st.dictionaries(st.sampled_from(["hash", "signed", "x"]), json_values, max_size=3))
def test_token_references_are_a_token_or_none(reference: dict[str, Any]) -> None:
    store = TokenStore(SITE.storage, secret_key="k")
    assert store.recheck(reference) is None


@SETTINGS
@given(st.text(max_size=300), st.sampled_from(["", "/api/repo", "/a b"]))
def test_sign_in_returns_only_to_paths_under_the_mount(target: str, root: str) -> None:
    request = Request(
        EnvironBuilder(path=f"{root}/-/login", base_url=f"http://h{root}").get_environ()
    )
    local = _local(request, target)
    assert local == "" or local.startswith(quote(request.script_root.rstrip("/")) + "/")
    assert not local.startswith("//") and "\\" not in local and "://" not in local.split("?")[0]


@SETTINGS
@given(st.text(max_size=200), st.text(max_size=200))
def test_origin_checks_never_raise(origin: str, referer: str) -> None:
    for sent in ({"HTTP_ORIGIN": origin, "HTTP_REFERER": referer}, {"HTTP_REFERER": referer}):
        environ = EnvironBuilder().get_environ()
        environ.update(sent)
        assert same_origin(environ) in (True, False)


# -- the API's bodies --------------------------------------------------------------------

API_POSTS = ["channels", "tokens", "channels/team/yank", "channels/team/delete"]


@APP_SETTINGS
@given(
    st.sampled_from(API_POSTS),
    st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_api_bodies_get_an_answer_never_a_500(path: str, body: bytes) -> None:
    app = webtest.TestApp(SITE.wsgi)
    response = app.post(
        SITE.url(f"-/api/{path}"),
        body,
        content_type="application/json",
        headers={"X-Auth": SITE.secrets["team_admin"]},
        expect_errors=True,
    )
    assert response.status_int in (200, 201, 400, 403, 404, 409), response.text
    if response.status_int >= 400:
        assert set(response.json) == {"error"}
    # Whatever the body, the channel keeps its tokens' secrets out of every answer.
    for secret in SITE.secrets.values():
        assert secret not in response.text


@APP_SETTINGS
@given(
    st.sampled_from(
        ["-/login", "-/tokens", "team/-/files", "-/channels", "-/channels/team/delete"]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "token",
                "next",
                "action",
                "filename",
                "reason",
                "scope",
                "channel",
                "expires",
                "note",
                "name",
                "confirm",
            ]
        ),
        st.text(max_size=80),
        max_size=6,
    ),
)
def test_page_forms_get_a_page_never_a_500(path: str, fields: dict[str, str]) -> None:
    browser = SITE.browser()
    form = browser.get(SITE.url("-/login")).forms[0]
    form["token"] = SITE.secrets["team_admin"]
    form.submit()
    csrf = browser.get(SITE.url("team/")).html.select_one("input[name=csrf_token]")["value"]
    response = browser.post(SITE.url(path), {**fields, "csrf_token": csrf}, expect_errors=True)
    assert response.status_int in (200, 201, 303, 400, 401, 403, 404), response.text
    assert response.content_type in ("text/html", "")


def test_the_site_still_holds_what_it_started_with() -> None:
    """The properties above never deleted the site's channels or tokens."""
    assert {c.name for c in SITE.admin.channels(OPERATOR)} >= {"team", "open", "other"}
