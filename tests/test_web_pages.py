"""The web pages, as a browser uses them: sign-in, browsing, upload, management, safety."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zlib
from pathlib import Path

import pytest
import webtest

from private_channels import make_app
from private_channels.admin import OPERATOR
from private_channels.storage import MemoryStorage, Storage, dump_json
from private_channels.tokens import Scope, TokenStore

from .conda_packages import demo_index, raw_conda
from .packages import make_sdist, make_wheel, metadata_text
from .support import mounted
from .test_accesslog import (
    Records,
    records,  # noqa: F401 (a fixture, for getfixturevalue)
)
from .test_cran_description import source_package, windows_zip
from .web import BROWSER_ACCEPT, PIP_ACCEPT, PREFIXES, Site


@pytest.fixture(params=PREFIXES)
def site(request: pytest.FixtureRequest) -> Site:
    return Site(MemoryStorage(), request.param)


def said(response: webtest.TestResponse) -> str:
    """What the page says, as a person reads it (entities decoded)."""
    return " ".join(response.html.select_one("main").get_text(" ").split())


def no_challenge(response: webtest.TestResponse) -> None:
    assert "WWW-Authenticate" not in response.headers


# -- who sees what ---------------------------------------------------------------------


def test_anonymous_browser_sees_public_channels_and_a_sign_in_form(site: Site) -> None:
    browser = site.browser()
    page = browser.get(site.url())
    no_challenge(page)
    names = [a.text for a in page.html.select("table a")]
    assert names == ["open"]
    # Every page a person without a session sees offers the sign-in form.
    for path in ("", "open/"):
        form = browser.get(site.url(path)).forms[0]
        assert form.action == site.url("-/login") and form.method.upper() == "POST"
        assert form["next"].value == site.url(path)
        form["token"] = site.secrets["team_read"]
        assert form.submit().headers["Location"] == site.url(path)
        browser.post(
            site.url("-/logout"),
            {"csrf_token": browser.get(site.url()).forms[0]["csrf_token"].value},
        )


def test_a_private_channel_sends_a_browser_to_the_sign_in_form(site: Site) -> None:
    browser = site.browser()
    for path in ("team/", "nope/", "team/-/upload", "team/-/packages/python/x/", "-/tokens"):
        response = browser.get(site.url(path))
        no_challenge(response)
        assert response.status_int == 303, path
        assert response.headers["Location"].startswith(site.url("-/login?next="))
    login = browser.get(site.url("team/")).follow()
    assert login.status_int == 200
    assert login.html.select_one("input[name=token][type=password]") is not None
    assert login.html.select_one("input[name=next]")["value"] == site.url("team/")


def test_channel_list_follows_the_token(site: Site) -> None:
    names = lambda b: [a.text for a in b.get(site.url()).html.select("table a[href$='/']")]  # noqa: E731
    assert names(site.sign_in("team_read")) == ["open", "team"]
    assert names(site.sign_in("other_write")) == ["open", "other"]
    assert names(site.sign_in("root")) == ["open", "other", "team"]


REQUESTS = [
    ("", {}),
    ("", {"Accept": "*/*"}),
    ("", {"Accept": PIP_ACCEPT}),
    ("team/", {}),
    ("team/", {"Accept": PIP_ACCEPT}),
    ("team/", {"Accept": "*/*", "X-Auth": "team_read"}),
    ("team", {"Accept": "application/json", "X-Auth": "team_read"}),
    ("open/", {"Accept": "application/vnd.pypi.simple.v1+json"}),
    ("team/simple/", {"Accept": "text/html", "X-Auth": "team_read"}),
    ("team/simple/", {"Accept": PIP_ACCEPT, "X-Auth": "team_read"}),
    ("team/src/contrib/PACKAGES", {"Accept": BROWSER_ACCEPT, "X-Auth": "team_read"}),
    ("t/TOKEN/team/", {"Accept": "*/*"}),
    ("t/TOKEN/team/", {"Accept": BROWSER_ACCEPT}),
]


@pytest.mark.parametrize(("path", "headers"), REQUESTS)
def test_clients_get_the_answers_they_got_without_the_pages(
    path: str, headers: dict[str, str]
) -> None:
    storage = MemoryStorage()
    site = Site(storage)
    before = webtest.TestApp(mounted(make_app(storage, web=False), "/api/repo"))
    headers = {k: site.secrets.get(v, v) for k, v in headers.items()}
    path = path.replace("TOKEN", site.secrets["team_read"])
    now = site.app.get(site.url(path), headers=headers, expect_errors=True)
    then = before.get(site.url(path), headers=headers, expect_errors=True)
    assert (now.status, now.body) == (then.status, then.body)
    assert now.headers.get("WWW-Authenticate") == then.headers.get("WWW-Authenticate")


# -- signing in and out ----------------------------------------------------------------


def test_sign_in_sets_a_safe_cookie_that_holds_no_secret(site: Site) -> None:
    browser = site.browser()
    form = browser.get(site.url("-/login?next=" + site.url("team/"))).forms[0]
    form["token"] = site.secrets["team_read"]
    response = form.submit()
    assert response.status_int == 303
    assert response.headers["Location"] == site.url("team/")
    cookie = next(v for k, v in response.headerlist if k == "Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert f"Path={site.prefix}/" in cookie
    assert "Secure" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    decoded = zlib.decompress(raw) if value.startswith(".") else raw
    for secret in site.secrets.values():
        assert secret not in value and secret.encode() not in decoded
    assert response.follow().status_int == 200


def test_cookie_is_secure_over_https(site: Site) -> None:
    browser = site.browser(https=True)
    form = browser.get(site.url("-/login")).forms[0]
    form["token"] = site.secrets["root"]
    response = form.submit(headers={"Origin": "https://localhost"})
    cookie = next(v for k, v in response.headerlist if k == "Set-Cookie")
    assert "Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.parametrize("token", ["0" * 48, "not a token", "", "x" * 5000])
def test_a_wrong_token_gets_the_form_again_never_a_challenge(site: Site, token: str) -> None:
    browser = site.browser()
    form = browser.get(site.url("-/login")).forms[0]
    form["token"] = token
    response = form.submit(status=401)
    no_challenge(response)
    assert "The token is invalid or expired." in response.text
    assert response.html.select_one("input[name=token]") is not None
    assert "Set-Cookie" not in response.headers or "ref" not in response.headers["Set-Cookie"]


def test_a_sign_in_never_returns_to_another_site(site: Site) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/elsewhere/", "\\\\evil"):
        browser = site.browser()
        form = browser.get(site.url("-/login"), {"next": target}).forms[0]
        form["token"] = site.secrets["root"]
        assert form.submit().headers["Location"] == site.url()


# Every page an admin for '*' reaches in a channel "team" with the project "demo".
PAGES = (
    "",
    "team/",
    "team/-/packages/python/demo/",
    "team/-/upload",
    "-/tokens",
    "-/channels/other/delete",
    "-/login",
    "team/-/files?action=delete&filename=x",
)


def test_every_page_of_a_signed_in_person_has_a_sign_out_form(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    browser = site.sign_in("root")
    logout = site.url("-/logout")
    for path in PAGES:
        page = browser.get(site.url(path))
        assert page.html.select_one(f"form[action='{logout}'][method=post]") is not None, path
    signed_out = browser.get(site.url()).forms[0].submit()  # the sign-out form comes first
    assert signed_out.status_int == 303
    assert browser.get(site.url("team/")).status_int == 303  # to the sign-in form again


def test_logout_needs_the_form(site: Site) -> None:
    browser = site.sign_in("root")
    browser.post(site.url("-/logout"), status=400)
    assert browser.get(site.url("team/")).status_int == 200


# -- the session ends with its token ---------------------------------------------------


def test_a_revoked_token_ends_its_session_at_once_in_the_same_process(site: Site) -> None:
    browser = site.sign_in("team_write")
    assert browser.get(site.url("team/")).status_int == 200
    site.api("DELETE", f"tokens/{site.ids['team_write']}", status=200)
    response = browser.get(site.url("team/"))
    assert response.status_int == 303 and "-/login" in response.headers["Location"]


def test_a_revoked_token_ends_its_session_within_the_cache_bound_elsewhere(tmp_path: Path) -> None:
    from private_channels.storage import FileSystemStorage

    storage = FileSystemStorage(tmp_path / "data")
    site = Site(storage, token_cache_ttl=0.5)
    other = webtest.TestApp(
        mounted(make_app(FileSystemStorage(tmp_path / "data"), token_cache_ttl=0.5), "/api/repo"),
        extra_environ={"HTTP_ACCEPT": BROWSER_ACCEPT},
    )
    browser = site.sign_in("team_write")
    # Every process on the storage accepts the session: the signing key is shared.
    other.set_cookie("private_channels_session", browser.cookies["private_channels_session"])
    assert other.get("/api/repo/team/").status_int == 200
    site.api("DELETE", f"tokens/{site.ids['team_write']}", status=200)
    assert browser.get(site.url("team/")).status_int == 303  # this process: at once
    deadline = time.monotonic() + 0.5 + 0.3
    while other.get("/api/repo/team/").status_int == 200:
        assert time.monotonic() < deadline, "still accepted past the cache bound"
        time.sleep(0.05)
    assert other.get("/api/repo/team/").status_int == 303


def test_a_session_ends_when_its_token_expires(site: Site) -> None:
    secret, _ = site.admin.create_token(OPERATOR, ["team"], Scope.READ, expires_in=1)
    site.secrets["brief"] = secret
    browser = site.sign_in("brief")
    response = browser.get(site.url("team/"))
    assert response.status_int == 200
    time.sleep(1.05)
    assert browser.get(site.url("team/")).status_int == 303


def test_a_forged_or_old_cookie_is_no_session(site: Site) -> None:
    browser = site.browser()
    browser.set_cookie("private_channels_session", "eyJzaWQiOiJ4In0.forged.signature")
    assert browser.get(site.url("team/")).status_int == 303
    other = Site(MemoryStorage(), site.prefix)  # another storage: another key
    signed = other.sign_in("root")
    browser.set_cookie("private_channels_session", signed.cookies["private_channels_session"])
    assert browser.get(site.url("team/")).status_int == 303


# -- forms: CSRF and other sites --------------------------------------------------------


def forms_of(site: Site, tmp_path: Path) -> list[tuple[str, dict[str, str]]]:
    """Every state-changing form of the pages, as the pages fill them in."""
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    return [
        ("-/logout", {}),
        ("-/channels", {"name": "made"}),
        ("-/channels/other/delete", {"confirm": "other"}),
        ("team/-/files", {"action": "yank", "filename": "demo-1.0-py3-none-any.whl"}),
        ("-/tokens", {"channel": "team", "scope": "read"}),
        (f"-/tokens/{site.ids['team_read']}/revoke", {}),
    ]


def test_forms_without_their_csrf_field_are_refused(site: Site, tmp_path: Path) -> None:
    browser = site.sign_in("root")
    for path, fields in forms_of(site, tmp_path):
        response = browser.post(site.url(path), fields, status=400)
        problem = response.html.select_one(".problem").text
        assert problem == "The form has expired or is not this session's; load the page again."
    assert browser.get(site.url("team/")).status_int == 200  # nothing happened, still in
    assert site.admin.channel(OPERATOR, "other").name == "other"
    assert [t.revoked for t in site.admin.list_tokens(OPERATOR)] == [False] * 5


def test_forms_with_another_sessions_csrf_token_are_refused(site: Site, tmp_path: Path) -> None:
    mine, theirs = site.sign_in("root"), site.sign_in("root")
    token = theirs.get(site.url()).html.select_one("input[name=csrf_token]")["value"]
    for path, fields in forms_of(site, tmp_path):
        mine.post(site.url(path), {**fields, "csrf_token": token}, status=400)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "http://localhost.evil.example"},
    ],
)
def test_forms_posted_from_another_site_are_refused(
    site: Site, tmp_path: Path, headers: dict[str, str]
) -> None:
    browser = site.sign_in("root")
    token = browser.get(site.url()).html.select_one("input[name=csrf_token]")["value"]
    for path, fields in forms_of(site, tmp_path):
        response = browser.post(
            site.url(path), {**fields, "csrf_token": token}, headers=headers, status=403
        )
        assert "sent from another site" in response.html.select_one(".problem").text, path
    upload = browser.post(
        site.url("team/-/upload"),
        {"kind": "python", "csrf_token": token},
        upload_files=[("content", "x.whl", b"x")],
        headers=headers,
        status=403,
    )
    assert "sent from another site" in upload.html.select_one(".problem").text
    assert browser.get(site.url("team/")).status_int == 200


def test_the_same_origin_passes(site: Site) -> None:
    browser = site.sign_in("root")
    form = browser.get(site.url()).forms[1]  # create a channel
    form["name"] = "fresh"
    response = form.submit(headers={"Origin": "http://localhost"})
    assert response.status_int == 303
    assert site.admin.channel(OPERATOR, "fresh").name == "fresh"


def test_sign_in_itself_needs_its_csrf_field(site: Site) -> None:
    browser = site.browser()
    response = browser.post(site.url("-/login"), {"token": site.secrets["root"]}, status=400)
    assert response.html.select_one("input[name=token]") is not None
    assert browser.get(site.url("team/")).status_int == 303  # not signed in


def test_a_session_is_no_credential_for_the_machine_endpoints_posts(
    site: Site, tmp_path: Path
) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    browser = site.sign_in("root")
    response = browser.post(
        site.url("team/-/yank"), {"filename": "demo-1.0-py3-none-any.whl"}, status=401
    )
    assert "Authentication is missing" in response.text
    browser.post(site.url("team/"), {":action": "file_upload"}, status=401)
    site.api("GET", "tokens", who=None, status=401)


def test_a_session_reads_files_the_pages_link(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    browser = site.sign_in("team_read")
    page = browser.get(site.url("team/-/packages/python/demo/"))
    link = page.html.select_one("table a[href*='/files/']")["href"]
    assert browser.get(link).body == (tmp_path / "demo-1.0-py3-none-any.whl").read_bytes()
    site.browser().get(link, status=401)  # without the session: the machine answer
    assert site.sign_in("other_write").get(link, status=403)


# -- safety of what is shown -----------------------------------------------------------


SCRIPT = "<script>alert(1)</script>"


def assert_inert(response: webtest.TestResponse) -> None:
    """No markup from the data: no script, no event handler, no javascript: link."""
    if response.content_type != "text/html":
        # The machine endpoints' plain sentences, never rendered as markup.
        assert response.content_type in ("text/plain", ""), response.content_type
        return
    lowered = response.text.lower()
    assert "<script>alert" not in lowered
    assert re.search(r"<[^>]+\son[a-z]+\s*=", lowered) is None
    assert re.search(r"""(href|src|action)\s*=\s*['"]?\s*javascript:""", lowered) is None
    # The only script is the page's own file; there is no inline one.
    assert re.search(r"<script(?![^>]*\bsrc=)", lowered) is None


def test_script_in_a_description_is_escaped_or_removed(site: Site, tmp_path: Path) -> None:
    markdown = (
        f"# Demo {SCRIPT}\n\n<img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))\n\n"
        "<a href='https://example.org' onclick='alert(1)'>ok</a>\n"
    )
    metadata = metadata_text("demo", "1.0", summary=f"Sum {SCRIPT}", metadata_version="2.1")
    metadata = metadata.rstrip("\n") + "\nDescription-Content-Type: text/markdown\n\n" + markdown
    site.upload_python(make_wheel(tmp_path, "demo", "1.0", metadata=metadata))
    rst = f"Title\n=====\n\n.. raw:: html\n\n   {SCRIPT}\n\n`x <javascript:alert(1)>`_\n"
    metadata = metadata_text("demo", "2.0", summary="x").rstrip("\n") + "\n\n" + rst
    site.upload_python(make_sdist(tmp_path, "demo", "2.0", metadata=metadata))
    site.upload_r(
        source_package("abc", "1.0", Title=f"Abc {SCRIPT}", Description=f"Does {SCRIPT} things."),
        "abc_1.0.tar.gz",
    )
    browser = site.sign_in("team_read")
    for path in (
        "team/-/packages/python/demo/?version=1.0",
        "team/-/packages/python/demo/",
        "team/-/packages/cran/abc/",
        "team/",
    ):
        assert_inert(browser.get(site.url(path)))
    one = browser.get(site.url("team/-/packages/python/demo/?version=1.0"))
    assert "Sum &lt;script&gt;" in one.text
    assert one.html.select_one(".description h1") is not None  # Markdown was rendered
    assert "ok" in one.html.select_one(".description").text
    r = browser.get(site.url("team/-/packages/cran/abc/"))
    assert "Abc &lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_script_in_names_urls_and_fields_is_escaped(site: Site) -> None:
    # A hostile record, as a bug elsewhere or a hand-edited storage could leave one.
    key = "channels/team/pypi/projects/evil.json"
    record = {
        "filename": f"evil-1.0.tar.gz{SCRIPT}",
        "size": 1,
        "sha256": "a" * 64,
        "upload_time": 0,
        "project": "evil",
        "version": f"1.0{SCRIPT}",
        "blake2b_256": "b" * 64,
        "yanked": SCRIPT,
        "requires_python": SCRIPT,
    }
    doc = {"name": f"evil{SCRIPT}", "files": {record["filename"]: record}, "deleted": []}
    site.storage.put(key, io.BytesIO(dump_json(doc)))
    site.storage.put(
        "channels/team/pypi/projects.json",
        io.BytesIO(dump_json({"projects": {"evil": f"evil{SCRIPT}"}})),
    )
    site.admin.create_token(OPERATOR, ["team"], Scope.READ, note=f"note {SCRIPT}")
    browser = site.sign_in("root")
    for path in (
        "team/",
        "team/-/packages/python/evil/",
        f"team/?q={SCRIPT}",
        f"team/-/packages/python/{SCRIPT}/",
        f"team/-/packages/{SCRIPT}/x/",
        f"team/-/packages/python/evil/?version={SCRIPT}",
        "-/tokens",
        f"-/login?next={SCRIPT}",
        f"{SCRIPT}/",
    ):
        page = browser.get(site.url(path), expect_errors=True)
        assert page.status_int in (200, 303, 403, 404), path
        assert_inert(page)
    assert "evil&lt;script&gt;" in browser.get(site.url("team/")).text


def test_every_page_has_a_strict_content_security_policy(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    browser = site.sign_in("root")
    for path in (*PAGES, "team/-/packages/python/nope/"):
        page = browser.get(site.url(path), expect_errors=True)
        policy = page.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in policy and "*" not in policy
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        assert " style=" not in page.text and "<style" not in page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
        assert re.search(r"\son[a-z]+=", page.text) is None


def test_static_files(site: Site) -> None:
    browser = site.browser()
    css = browser.get(site.url("-/static/style.css"))
    assert css.content_type == "text/css" and css.headers["X-Content-Type-Options"] == "nosniff"
    js = browser.get(site.url("-/static/pages.js"))
    assert js.content_type == "text/javascript"
    assert browser.get(site.url("-/static/%2E%2E%2Fapp.py"), expect_errors=True).status_int >= 400
    browser.get(site.url("-/static/nope.js"), status=404)
    assert (
        browser.get(
            site.url("-/static/pages.js"), headers={"If-None-Match": js.headers["ETag"]}
        ).status_int
        == 304
    )


# -- browsing --------------------------------------------------------------------------


def test_channel_page_lists_every_ecosystem_and_filters(site: Site, tmp_path: Path) -> None:
    for name in ("alpha", "beta-tools", "gamma"):
        site.upload_python(make_wheel(tmp_path, name, "1.0"))
    site.upload_python(make_wheel(tmp_path, "alpha", "1.1"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    site.upload_r(source_package("betar", "0.1"), "betar_0.1.tar.gz")
    conda = raw_conda({"info/index.json": demo_index("betaconda", "2.0")}, stem="betaconda-2.0-0")
    site.upload_r(conda, "betaconda-2.0-0.conda", filetype="conda_package")
    browser = site.sign_in("team_read")
    page = browser.get(site.url("team/"))
    sections = {
        s.h2.text: [a.text for a in s.select("tbody a")]
        for s in page.html.select("main section")
        if s.h2
    }
    assert sections == {"python": ["alpha", "beta-tools", "gamma"], "cran": ["abc", "betar"],
                        "conda": ["betaconda"]}  # fmt: skip
    row = page.html.select_one("tr[data-name=alpha]")
    assert [td.text for td in row.select("td")][1:] == ["1.1", "2"]
    filtered = browser.get(site.url("team/"), {"q": "BETA"})
    names = [a.text for a in filtered.html.select("main section tbody a")]
    assert names == ["beta-tools", "betar", "betaconda"]
    assert filtered.html.select_one("input#filter")["value"] == "BETA"
    # Setup for every ecosystem, with the real URL and a placeholder.
    snippets = " ".join(pre.text for pre in page.html.select(".snippet pre"))
    assert f"http://__token__:$TOKEN@localhost{site.prefix}/team/simple/" in snippets
    assert (
        f'paste0("http://localhost{site.prefix}/t/", Sys.getenv("PRIVATE_CHANNELS_TOKEN"), "/team")'
        in snippets
    )
    assert 'options(repos = c(getOption("repos"),' in snippets
    assert f'conda install -c "http://localhost{site.prefix}/t/$TOKEN/team"' in snippets
    for secret in site.secrets.values():
        assert secret not in page.text


def test_python_package_page(site: Site, tmp_path: Path) -> None:
    metadata = metadata_text("Demo_Pkg", "1.0", requires_python=">=3.9", summary="A demo.")
    metadata = (
        metadata.rstrip("\n")
        + "\nLicense: MIT\nDescription-Content-Type: text/markdown\n\n# Demo\n\nHello *there*.\n"
    )
    wheel = make_wheel(tmp_path, "Demo_Pkg", "1.0", metadata=metadata)
    site.upload_python(wheel)
    site.upload_python(make_sdist(tmp_path, "Demo_Pkg", "1.0"))
    site.upload_python(make_wheel(tmp_path, "Demo_Pkg", "2.0"))
    site.admin.change(OPERATOR, "team", "yank", "demo-pkg==2.0", reason="Broken build")
    browser = site.sign_in("team_read")
    page = browser.get(site.url("team/-/packages/python/Demo.Pkg/"))  # any spelling
    assert page.html.h1.text == "Demo_Pkg 1.0"  # the newest version not yanked
    assert page.html.select_one(".summary").text == "A demo."
    assert page.html.select_one(".description em").text == "there"
    rows = {tr.td.text: [td.text for td in tr.select("td")] for tr in page.html.select("tbody tr")}
    assert set(rows) == {wheel.name, "demo_pkg-1.0.tar.gz", "demo_pkg-2.0-py3-none-any.whl"}
    assert rows[wheel.name][2] == f"{wheel.stat().st_size} bytes"
    assert rows[wheel.name][3] == __import__("hashlib").sha256(wheel.read_bytes()).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", rows[wheel.name][4])
    assert "Requires-Python >=3.9" in rows[wheel.name][6]
    assert rows["demo_pkg-2.0-py3-none-any.whl"][5] == "yanked: Broken build"
    assert page.html.select_one("dl").text.count("MIT") == 1
    install = page.html.select_one(".snippet pre").text
    index = f"http://__token__:$TOKEN@localhost{site.prefix}/team/simple/"
    assert install == f'pip install --index-url "{index}" Demo_Pkg'
    versions = [li.text for li in page.html.select("ul.versions li")]
    assert versions == ["2.0 (yanked)", "1.0"]
    two = browser.get(site.url("team/-/packages/python/demo-pkg/"), {"version": "2.0"})
    assert two.html.h1.text == "Demo_Pkg 2.0"
    # A reader sees no management buttons; an admin of the channel does.
    assert page.html.select("form[action$='/-/files']") == []
    admin_page = site.sign_in("team_admin").get(site.url("team/-/packages/python/demo-pkg/"))
    assert len(admin_page.html.select("form[action$='/team/-/files']")) == 3


def test_sdist_description_comes_from_its_pkg_info(site: Site, tmp_path: Path) -> None:
    metadata = metadata_text("only-sdist", "1.0").rstrip("\n") + "\n\nPlain *text* here.\n"
    site.upload_python(make_sdist(tmp_path, "only-sdist", "1.0", metadata=metadata))
    page = site.sign_in("team_read").get(site.url("team/-/packages/python/only-sdist/"))
    assert "Plain" in page.html.select_one(".description").text


def test_r_package_page(site: Site) -> None:
    site.upload_r(
        source_package("abc", "1.0", Depends="R (>= 4.1)", Title="Alphabet Things"),
        "abc_1.0.tar.gz",
    )
    site.upload_r(source_package("abc", "1.1", Description="Newer."), "abc_1.1.tar.gz")
    site.upload_r(windows_zip("abc", "1.1"), "abc_1.1.zip", filetype="cran_binary_package")
    page = site.sign_in("team_read").get(site.url("team/-/packages/cran/abc/"))
    assert page.html.h1.text == "abc 1.1"
    links = {a.text: a["href"] for a in page.html.select("tbody a")}
    base = site.url("team/")
    assert links == {
        "abc_1.1.tar.gz": f"{base}src/contrib/abc_1.1.tar.gz",
        "abc_1.1.zip": f"{base}bin/windows/contrib/4.2/abc_1.1.zip",
        "abc_1.0.tar.gz": f"{base}src/contrib/Archive/abc/abc_1.0.tar.gz",
    }
    old = site.sign_in("team_read").get(site.url("team/-/packages/cran/abc/"), {"version": "1.0"})
    assert old.html.select_one(".summary").text == "Alphabet Things"
    assert "Depends R (>= 4.1)" in said(old)
    snippets = [pre.text for pre in page.html.select(".snippet pre")]
    assert snippets[0] == (
        'install.packages("abc", repos = c(getOption("repos"),\n  team = paste0('
        f'"http://localhost{site.prefix}/t/", Sys.getenv("PRIVATE_CHANNELS_TOKEN"), "/team")))'
    )
    assert snippets[1].startswith('local({\n  options(repos = c(getOption("repos"),')


def test_missing_packages_and_ecosystems_are_404_pages(site: Site) -> None:
    browser = site.sign_in("team_read")
    response = browser.get(site.url("team/-/packages/python/nope/"), status=404)
    assert "Channel 'team' has no python package 'nope'." in said(response)
    response = browser.get(site.url("team/-/packages/conda-ish/x/"), status=404)
    assert "There is no ecosystem 'conda-ish' here; there are python, cran, conda." in said(
        response
    )
    browser.get(site.url("other/-/packages/python/x/"), status=403)


# -- uploading -------------------------------------------------------------------------


def upload_form(
    browser: webtest.TestApp, site: Site, kind: str, name: str, data: bytes, **options: str
) -> webtest.TestResponse:
    form = browser.get(site.url("team/-/upload")).forms[1]
    form["kind"] = kind
    for field, value in options.items():
        form[field] = value
    form["content"] = webtest.Upload(name, data)
    return form.submit(expect_errors=True)


def test_upload_page_takes_python_and_r_files_into_the_indexes(site: Site, tmp_path: Path) -> None:
    browser = site.sign_in("team_write")
    wheel = make_wheel(tmp_path, "demo", "1.0")
    response = upload_form(browser, site, "python", wheel.name, wheel.read_bytes())
    assert response.status_int == 303
    assert response.follow().html.select_one(".flash").text == (
        "Uploaded demo-1.0-py3-none-any.whl to channel team."
    )
    again = upload_form(browser, site, "python", wheel.name, wheel.read_bytes()).follow()
    assert "already in channel team, with the same content" in again.html.select_one(".flash").text
    data = source_package("abc", "1.0")
    response = upload_form(browser, site, "cran_source_package", "abc_1.0.tar.gz", data)
    assert (
        response.follow().html.select_one(".flash").text
        == "Uploaded abc_1.0.tar.gz to src/contrib/."
    )
    binary = windows_zip("abc", "1.0")
    upload_form(browser, site, "cran_binary_package", "abc_1.0.zip", binary).follow()
    # The same storage path as twine's and curl's: the indexes have them.
    simple = site.app.get(
        site.url("team/simple/demo/"),
        headers={
            "X-Auth": site.secrets["team_read"],
            "Accept": "application/vnd.pypi.simple.v1+json",
        },
    )
    assert [f["filename"] for f in simple.json["files"]] == [wheel.name]
    packages = site.app.get(
        site.url("team/src/contrib/PACKAGES"), headers={"X-Auth": site.secrets["team_read"]}
    )
    assert "Package: abc" in packages.text
    windows = site.app.get(
        site.url("team/bin/windows/contrib/4.2/PACKAGES"),
        headers={"X-Auth": site.secrets["team_read"]},
    )
    assert "Package: abc" in windows.text


def test_upload_page_gives_the_answers_twine_and_curl_get(site: Site, tmp_path: Path) -> None:
    browser = site.sign_in("team_write")
    bad = source_package("abc", "1.0")
    machine = site.app.post(
        site.url("team"),
        {"filetype": "cran_source_package"},
        upload_files=[("content", "xyz_1.0.tar.gz", bad)],
        headers={"X-Auth": site.secrets["team_write"]},
        status=400,
    )
    page = upload_form(browser, site, "cran_source_package", "xyz_1.0.tar.gz", bad)
    assert page.status_int == 400
    assert page.html.select_one(".problem").text == machine.text.strip()
    wheel = make_wheel(tmp_path, "demo", "1.0")
    upload_form(browser, site, "python", wheel.name, wheel.read_bytes())
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", "demo", "1.0", module_source="x = 2\n")
    conflict = upload_form(browser, site, "python", wheel.name, other.read_bytes())
    assert conflict.status_int == 409
    assert conflict.html.select_one(".problem").text.startswith("File already exists")
    linux = upload_form(
        browser, site, "cran_source_package", "abc_1.0.tar.gz", bad, distribution="bookworm"
    )
    assert linux.status_int == 400
    assert "A distribution names the Linux system of a binary only." in said(linux)
    assert list(site.storage.list("channels/team/cran/")) == []


def test_upload_page_needs_write_access(site: Site) -> None:
    reader = site.sign_in("team_read")
    response = reader.get(site.url("team/-/upload"), status=403)
    assert "This token may not upload to channel 'team'." in said(response)
    writer = site.sign_in("team_write")
    token = writer.get(site.url("team/-/upload")).html.select_one("input[name=csrf_token]")["value"]
    writer.post(
        site.url("other/-/upload"),
        {"kind": "python", "csrf_token": token},
        upload_files=[("content", "x.whl", b"x")],
        status=403,
    )


# -- managing --------------------------------------------------------------------------


def test_yank_unyank_and_delete_from_the_package_page(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    site.upload_python(make_wheel(tmp_path, "demo", "1.1"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    site.upload_r(source_package("abc", "1.1"), "abc_1.1.tar.gz")
    browser = site.sign_in("team_admin")
    page = browser.get(site.url("team/-/packages/python/demo/"))
    form = next(
        f
        for f in page.forms.values()
        if f.get("filename", default=None) is not None
        and f["filename"].value == "demo-1.1-py3-none-any.whl"
    )
    form["reason"] = "Broken on Windows"
    page = form.submit().follow()
    assert page.html.select_one(".flash").text == "Yanked demo-1.1-py3-none-any.whl."
    json_page = site.app.get(
        site.url("team/simple/demo/"),
        headers={
            "X-Auth": site.secrets["team_read"],
            "Accept": "application/vnd.pypi.simple.v1+json",
        },
    )
    assert [f["yanked"] for f in json_page.json["files"]] == [False, "Broken on Windows"]
    # R: the yanked 1.1 leaves PACKAGES, where 1.0 is the latest again.
    r_page = browser.get(site.url("team/-/packages/cran/abc/"))
    yank = next(
        f
        for f in r_page.forms.values()
        if f.get("filename", default=None) is not None
        and f["filename"].value == "abc_1.1.tar.gz"
        and f["action"].value == "yank"
    )
    yank.submit().follow()
    index = site.app.get(
        site.url("team/src/contrib/PACKAGES"), headers={"X-Auth": site.secrets["team_read"]}
    )
    assert "Version: 1.0" in index.text and "1.1" not in index.text
    r_page = browser.get(site.url("team/-/packages/cran/abc/"))
    unyank = next(
        f
        for f in r_page.forms.values()
        if f.get("action", default=None) is not None and f["action"].value == "unyank"
    )
    assert unyank.submit().follow().html.select_one(".flash").text == "Unyanked abc_1.1.tar.gz."
    # Delete asks first, naming the file.
    confirm = browser.get(
        site.url("team/-/files"), {"action": "delete", "filename": "abc_1.0.tar.gz"}
    )
    assert (
        "Deleting abc_1.0.tar.gz removes its bytes for good; its name cannot be uploaded again"
        in said(confirm)
    )
    done = confirm.forms[1].submit().follow()
    assert done.html.select_one(".flash").text == "Deleted abc_1.0.tar.gz."
    assert [a.text for a in done.html.select("tbody a[href*='/src/']")] == ["abc_1.1.tar.gz"]
    # Deleting the last file of a package goes back to the channel.
    confirm = browser.get(
        site.url("team/-/files"), {"action": "delete", "filename": "abc_1.1.tar.gz"}
    )
    done = confirm.forms[1].submit()
    assert done.headers["Location"] == site.url("team/")


def test_file_actions_need_admin_and_a_real_file(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    writer = site.sign_in("team_write")
    writer.get(
        site.url("team/-/files"),
        {"action": "delete", "filename": "demo-1.0-py3-none-any.whl"},
        status=403,
    )
    admin = site.sign_in("team_admin")
    token = admin.get(site.url()).html.select_one("input[name=csrf_token]")["value"]
    response = admin.post(
        site.url("team/-/files"),
        {"action": "yank", "filename": "demo-9.0.tar.gz", "csrf_token": token},
        status=404,
    )
    assert "Channel 'team' has no file 'demo-9.0.tar.gz'." in said(response)
    admin.post(
        site.url("team/-/files"),
        {"action": "explode", "filename": "x", "csrf_token": token},
        status=400,
    )
    admin.post(
        site.url("other/-/files"),
        {"action": "yank", "filename": "x.whl", "csrf_token": token},
        status=403,
    )


def test_tokens_page_creates_shows_once_and_revokes(site: Site) -> None:
    browser = site.sign_in("root")
    page = browser.get(site.url("-/tokens"))
    ids = [code.text for code in page.html.select("tbody code")]
    assert sorted(ids) == sorted(site.ids.values())
    assert (
        "(this session)"
        in page.html.select_one(f"tr:has(code:-soup-contains('{site.ids['root']}'))").text
    )
    form = page.forms[len(page.forms) - 1]
    form["channel"] = ["team"]
    form["scope"] = "read"
    form["expires"] = "30d"
    form["note"] = "laptop"
    created = form.submit()
    assert created.status_int == 201
    secret = created.html.select_one("#new-token").text
    assert re.fullmatch(r"[0-9a-f]{48}", secret)
    assert created.headers["Cache-Control"] == "no-store"
    token = site.admin.tokens.verify(secret)
    assert token is not None and token.channels == {"team"} and token.scope is Scope.READ
    assert token.note == "laptop" and token.expires is not None
    again = browser.get(site.url("-/tokens"))
    assert secret not in again.text  # shown once
    row = again.html.select_one(f"tr:has(code:-soup-contains('{token.id}'))")
    assert [td.text for td in row.select("td")][1:4] == ["team", "read", "laptop"]
    revoke = next(f for f in again.forms.values() if f.action.endswith(f"/{token.id}/revoke"))
    done = revoke.submit().follow()
    assert done.html.select_one(".flash").text == f"Revoked token {token.id}."
    assert TokenStore(site.storage).verify(secret) is None


def test_a_channel_admin_manages_only_its_tokens_and_mints_nothing_wider(site: Site) -> None:
    browser = site.sign_in("team_admin")
    page = browser.get(site.url("-/tokens"))
    shown = sorted(code.text for code in page.html.select("tbody code"))
    assert shown == sorted(site.ids[w] for w in ("team_admin", "team_write", "team_read"))
    offered = [i["value"] for i in page.html.select("input[name=channel]")]
    assert offered == ["team"]
    token = page.html.select_one("input[name=csrf_token]")["value"]
    for fields, sentence in (
        ({"channel": "*", "scope": "read"}, "Only a token for '*' may mint a token for '*'"),
        ({"channel": "other", "scope": "read"}, "This token is not for channel 'other'."),
    ):
        response = browser.post(site.url("-/tokens"), {**fields, "csrf_token": token}, status=403)
        assert sentence in said(response)
    browser.post(
        site.url(f"-/tokens/{site.ids['other_write']}/revoke"), {"csrf_token": token}, status=404
    )
    assert site.admin.tokens.verify(site.secrets["other_write"]) is not None
    site.sign_in("team_write").get(site.url("-/tokens"), status=403)


def test_revoking_the_sessions_own_token_signs_out(site: Site) -> None:
    browser = site.sign_in("team_admin")
    page = browser.get(site.url("-/tokens"))
    mine = next(
        f for f in page.forms.values() if f.action.endswith(f"/{site.ids['team_admin']}/revoke")
    )
    response = mine.submit()
    assert response.headers["Location"] == site.url("-/login")
    assert "this session used it and has ended" in said(response.follow())
    assert browser.get(site.url("team/")).status_int == 303


def test_channels_are_created_and_deleted_by_an_instance_admin(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    browser = site.sign_in("root")
    form = browser.get(site.url()).forms[1]
    form["name"] = "made"
    form["public"] = True
    made = form.submit()
    assert made.headers["Location"] == site.url("made/")
    assert site.admin.channel(OPERATOR, "made").public
    token = browser.get(site.url()).html.select_one("input[name=csrf_token]")["value"]
    taken = browser.post(site.url("-/channels"), {"name": "made", "csrf_token": token}, status=409)
    assert "Channel 'made' exists already." in said(taken)
    browser.post(site.url("-/channels"), {"name": "../x", "csrf_token": token}, status=400)
    confirm = browser.get(site.url("-/channels/team/delete"))
    assert (
        "Channel 'team' holds 1 python package (1 version) and 1 cran package (1 version)"
        in said(confirm)
    )
    wrong = confirm.forms[1]
    wrong["confirm"] = "tea"
    assert "Type the channel's name" in said(wrong.submit(status=400))
    right = browser.get(site.url("-/channels/team/delete")).forms[1]
    right["confirm"] = "team"
    done = right.submit().follow()
    assert done.html.select_one(".flash").text == "Deleted channel team."
    assert list(site.storage.list("channels/team/")) == []
    for who in ("team_admin", "team_write"):
        b = site.sign_in(who)
        assert b.get(site.url()).html.select_one("form[action$='/-/channels']") is None
        b.get(site.url("-/channels/open/delete"), status=403)


def test_wrong_methods_get_a_page(site: Site) -> None:
    browser = site.sign_in("root")
    response = browser.get(site.url("-/logout"), status=405)
    assert "This page takes POST only." in said(response)
    browser.delete(site.url("-/tokens"), status=405)
    assert browser.head(site.url("team/")).status_int == 200


def test_a_mount_prefix_without_a_trailing_slash_reaches_the_channel_list(site: Site) -> None:
    page = site.browser().get(site.prefix)
    assert page.status_int == 308 and page.headers["Location"].endswith(site.url())
    assert page.follow().html.h1.text == "Channels"
    assert site.browser().get(site.url("open")).headers["Location"].endswith(site.url("open/"))


def test_pages_can_be_turned_off() -> None:
    storage: Storage = MemoryStorage()
    app = webtest.TestApp(mounted(make_app(storage, web=False), "/api/repo"))
    for path in ("-/login", "-/api/channels", "-/tokens"):
        response = app.get(f"/api/repo/{path}", headers={"Accept": BROWSER_ACCEPT}, status=401)
        assert response.content_type == "text/plain"


def test_the_access_log_names_the_sessions_token_never_its_secret(
    request: pytest.FixtureRequest,
) -> None:
    log: Records = request.getfixturevalue("records")
    site = Site(MemoryStorage(), access_log="json")
    browser = site.sign_in("team_read")
    browser.get(site.url("team/"))
    logged = [json.loads(line) for line in log.lines]
    assert [r["path"] for r in logged] == [site.url("-/login")] * 2 + [site.url("team/")]
    assert logged[-1]["token_id"] == site.ids["team_read"]
    for line in log.lines:
        assert site.secrets["team_read"] not in line


def test_a_description_is_rendered_once(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from private_channels.web import browse

    rendered: list[str] = []
    render = browse.html.render_description

    def counting(description):  # type: ignore[no-untyped-def]
        rendered.append(description.text)
        return render(description)

    monkeypatch.setattr(browse.html, "render_description", counting)
    metadata = metadata_text("demo", "1.0").rstrip("\n") + "\n\nTitle\n=====\n\nText.\n"
    site.upload_python(make_wheel(tmp_path, "demo", "1.0", metadata=metadata))
    browser = site.sign_in("team_read")
    for _ in range(3):
        page = browser.get(site.url("team/-/packages/python/demo/"))
        assert page.html.select_one(".description h1").text == "Title"
    assert len(rendered) == 1
