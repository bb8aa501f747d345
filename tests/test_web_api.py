"""The HTTP JSON API under P/-/api/: every endpoint, its status codes and error bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from private_channels.admin import OPERATOR
from private_channels.storage import MemoryStorage
from private_channels.tokens import Scope, TokenStore

from .conda_packages import demo_index, raw_conda
from .packages import make_sdist, make_wheel
from .test_cran_description import source_package, windows_zip
from .web import PREFIXES, Site


@pytest.fixture(params=PREFIXES)
def site(request: pytest.FixtureRequest) -> Site:
    return Site(MemoryStorage(), request.param)


def error(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == {"error"} and body["error"].endswith(".")
    return str(body["error"])


# -- channels --------------------------------------------------------------------------


def test_channel_list_is_what_the_token_may_read(site: Site) -> None:
    names = lambda who: [c["name"] for c in site.api("GET", "channels", who).json["channels"]]  # noqa: E731
    assert names(None) == ["open"]
    assert names("team_read") == ["open", "team"]
    assert names("root") == ["open", "other", "team"]
    channel = site.api("GET", "channels", "root").json["channels"][0]
    assert channel["public"] is True and channel["allow_reupload"] is False
    assert isinstance(channel["created"], float)


def test_create_a_channel(site: Site) -> None:
    response = site.api("POST", "channels", "root", {"name": "made", "public": True})
    assert response.status_int == 201
    assert response.json["name"] == "made" and response.json["public"] is True
    assert site.api("GET", "channels/made", None).json["name"] == "made"  # public
    again = site.api("POST", "channels", "root", {"name": "made"})
    assert error(again, 409) == "Channel 'made' exists already."
    private = site.api("POST", "channels", "root", {"name": "quiet"}).json
    assert private["public"] is False
    error(site.api("GET", "channels/quiet", None), 401)


def test_a_channel_with_an_upstream_never_shows_its_credentials(site: Site) -> None:
    body = {"name": "mirror", "python_upstream": "https://robot:s3cret@pypi.example/simple/",
            "upstream_allow": ["acme"], "upstream_min_age": 3}  # fmt: skip
    made = site.api("POST", "channels", "root", body)
    assert made.status_int == 201
    listed = next(c for c in site.api("GET", "channels", "root").json["channels"]
                  if c["name"] == "mirror")  # fmt: skip
    for shown in (made.json, listed, site.api("GET", "channels/mirror", "root").json):
        assert shown["python_upstream"] == "https://pypi.example/simple/"
        assert shown["upstream_credentials"] == {"python": True, "cran": False}
        assert shown["upstream_allow"] == ["acme"] and shown["upstream_min_age"] == 3.0
        assert "s3cret" not in str(shown) and "robot" not in str(shown)


def test_update_a_channel_changes_only_what_the_body_names(site: Site) -> None:
    body = {"name": "mirror", "python_upstream": "https://robot:s3cret@pypi.example/simple/",
            "upstream_allow": ["acme"]}  # fmt: skip
    assert site.api("POST", "channels", "root", body).status_int == 201
    changed = site.api(
        "PATCH", "channels/mirror", "root", {"cran_upstream": "https://cran.example/"}
    )
    assert changed.status_int == 200
    shown = site.api("GET", "channels/mirror", "root").json
    assert shown["cran_upstream"] == "https://cran.example/"
    assert shown["python_upstream"] == "https://pypi.example/simple/"
    assert shown["upstream_credentials"] == {"python": True, "cran": False}
    assert shown["upstream_allow"] == ["acme"] and shown["public"] is False
    removed = site.api("PATCH", "channels/mirror", "root", {"python_upstream": None}).json
    assert removed["python_upstream"] is None and removed["cran_upstream"] is not None
    assert "s3cret" not in str(changed.json) + str(removed)
    refused = site.api("PATCH", "channels/mirror", "root", {"upstream_ttl": "soon"})
    assert "seconds" in error(refused, 400)
    assert "'name'" in error(site.api("PATCH", "channels/mirror", "root", {"name": "x"}), 400)
    error(site.api("PATCH", "channels/mirror", "team_admin", {"public": True}), 403)
    error(site.api("PATCH", "channels/nosuch", "root", {"public": True}), 404)
    assert site.api("GET", "channels/mirror", "root").json["public"] is False


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        ({"name": "x", "python_upstream": "ftp://x"}, "must start with http:// or https://"),
        ({"name": "x", "upstream_ttl": "10m"}, "The upstream TTL must be a number of seconds."),
        ({"name": "../x"}, "Channel name '../x' is invalid"),
        ({}, "The body needs 'name'."),
        ({"name": 7}, "'name' must be a string."),
        ({"name": "x", "public": "yes"}, "'public' must be a boolean (true or false)."),
        ({"name": "x", "colour": "red"}, "A channel has no setting 'colour'"),
        (["x"], "The body must be a JSON object."),
    ],
)
def test_create_a_channel_refuses_bad_bodies(site: Site, body: object, sentence: str) -> None:
    assert sentence in error(site.api("POST", "channels", "root", body), 400)


def test_only_an_admin_for_every_channel_creates_or_deletes_channels(site: Site) -> None:
    for who in ("team_admin", "team_write"):
        sentence = error(site.api("POST", "channels", who, {"name": "x"}), 403)
        assert sentence == "Only an admin token for '*' may create channels."
        assert error(site.api("DELETE", "channels/team", who), 403) == (
            "Only an admin token for '*' may delete channels."
        )
    error(site.api("POST", "channels", None, {"name": "x"}), 401)


def test_delete_a_channel_says_what_it_held(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    site.upload_python(make_wheel(tmp_path, "demo", "1.1"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    response = site.api("DELETE", "channels/team", "root")
    assert response.status_int == 200
    assert response.json == {
        "deleted": True,
        "name": "team",
        "packages": {
            "python": {"packages": 1, "versions": 2},
            "cran": {"packages": 1, "versions": 1},
            "conda": {"packages": 0, "versions": 0},
        },
        "tokens": 3,
        "summary": "Channel 'team' holds 1 python package (2 versions) and 1 cran package "
        "(1 version); 3 tokens name it and will not work on a new channel of that name.",
    }
    assert list(site.storage.list("channels/team/")) == []
    assert (
        error(site.api("DELETE", "channels/team", "root"), 404) == "Channel 'team' does not exist."
    )


def test_a_recreated_channel_refuses_the_tokens_of_the_old_one(site: Site) -> None:
    site.api("DELETE", "channels/team", "root")
    site.api("POST", "channels", "root", {"name": "team"})
    for who in ("team_read", "team_write", "team_admin"):
        sentence = error(site.api("GET", "channels/team/packages", who), 403)
        assert sentence == "This token is not for channel 'team'."
        response = site.app.get(
            site.url("team/simple/"), headers={"X-Auth": site.secrets[who]}, status=403
        )
        assert "not for channel 'team'" in response.text
    # A token for '*' covers channels made after it; a new token for the channel works.
    assert site.api("GET", "channels/team/packages", "root").status_int == 200
    made = site.api("POST", "tokens", "root", {"channels": ["team"], "scope": "read"}).json
    response = site.app.get(site.url("team/simple/"), headers={"X-Auth": made["token"]})
    assert response.status_int == 200


# -- packages --------------------------------------------------------------------------


def test_package_listing_covers_every_ecosystem(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "Zeta", "2.0"))
    site.upload_python(make_wheel(tmp_path, "Zeta", "10.0"))
    site.upload_python(make_sdist(tmp_path, "alpha", "1.0"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    site.upload_r(source_package("abc", "1.10"), "abc_1.10.tar.gz")
    site.upload_r(windows_zip("abc", "1.2"), "abc_1.2.zip", filetype="cran_binary_package")
    for version in ("1.10", "1.9", "1!0.1"):
        data = raw_conda({"info/index.json": demo_index("abc", version)}, stem=f"abc-{version}-0")
        site.upload_r(data, f"abc-{version}-0.conda", filetype="conda_package")
    body = site.api("GET", "channels/team/packages", "team_read").json
    assert body == {
        "python": [
            {"name": "alpha", "versions": ["1.0"]},
            {"name": "Zeta", "versions": ["2.0", "10.0"]},
        ],
        "cran": [{"name": "abc", "versions": ["1.0", "1.2", "1.10"]}],
        # conda's order: an epoch outranks every version without one
        "conda": [{"name": "abc", "versions": ["1.9", "1.10", "1!0.1"]}],
    }
    empty = {"python": [], "cran": [], "conda": []}
    assert site.api("GET", "channels/open/packages", None).json == empty
    error(site.api("GET", "channels/team/packages", None), 401)
    error(site.api("GET", "channels/team/packages", "other_write"), 403)
    assert error(site.api("GET", "channels/nope/packages", "root"), 404) == (
        "Channel 'nope' does not exist."
    )
    error(site.api("GET", "channels/nope/packages", "team_read"), 403)  # may not know


def test_one_package_with_its_files(site: Site, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0", requires_python=">=3.9")
    site.upload_python(wheel)
    body = site.api("GET", "channels/team/packages/python/Demo", "team_read").json
    assert body["name"] == "demo" and body["ecosystem"] == "python"
    assert body["version"] == "1.0" and body["summary"] == "A test package."
    (entry,) = body["files"]
    assert entry["filename"] == wheel.name and entry["size"] == wheel.stat().st_size
    assert entry["url"].startswith("files/") and entry["yanked"] is None
    assert entry["details"] == {"Type": "wheel", "Requires-Python": ">=3.9"}
    site.upload_r(source_package("abc", "1.0", Depends="R (>= 4.0)"), "abc_1.0.tar.gz")
    r = site.api("GET", "channels/team/packages/cran/abc", "team_read").json
    assert r["files"][0]["details"]["Depends"] == "R (>= 4.0)"
    missing = site.api("GET", "channels/team/packages/cran/nope", "team_read")
    assert error(missing, 404) == "Channel 'team' has no cran package 'nope'."
    error(site.api("GET", "channels/team/packages/npm/x", "team_read"), 404)


# -- yank, unyank, delete ---------------------------------------------------------------


def test_yank_unyank_delete_for_python_and_r(site: Site, tmp_path: Path) -> None:
    site.upload_python(make_wheel(tmp_path, "demo", "1.0"))
    site.upload_r(source_package("abc", "1.0"), "abc_1.0.tar.gz")
    site.upload_r(source_package("abc", "1.1"), "abc_1.1.tar.gz")
    yank = site.api(
        "POST",
        "channels/team/yank",
        "team_admin",
        {"filename": "demo-1.0-py3-none-any.whl", "reason": "Broken"},
    )
    assert yank.json == {
        "action": "yank",
        "ecosystem": "python",
        "package": "demo",
        "files": ["demo-1.0-py3-none-any.whl"],
    }
    r = site.api("POST", "channels/team/yank", "team_admin", {"filename": "abc==1.1"})
    assert r.json == {
        "action": "yank",
        "ecosystem": "cran",
        "package": "abc",
        "files": ["abc_1.1.tar.gz"],
    }
    index = site.app.get(
        site.url("team/src/contrib/PACKAGES"), headers={"X-Auth": site.secrets["team_read"]}
    )
    assert "Version: 1.0" in index.text
    site.api("POST", "channels/team/unyank", "team_admin", {"filename": "abc_1.1.tar.gz"})
    index = site.app.get(
        site.url("team/src/contrib/PACKAGES"), headers={"X-Auth": site.secrets["team_read"]}
    )
    assert "Version: 1.1" in index.text
    deleted = site.api("POST", "channels/team/delete", "root", {"filename": "abc_1.0.tar.gz"})
    assert deleted.json["files"] == ["abc_1.0.tar.gz"]
    gone = site.api("POST", "channels/team/delete", "root", {"filename": "abc_1.0.tar.gz"})
    assert error(gone, 404) == "Channel 'team' has no file 'abc_1.0.tar.gz'."


@pytest.mark.parametrize(
    ("who", "body", "status", "sentence"),
    [
        ("team_write", {"filename": "x.whl"}, 403, "This token may not administer channel 'team'."),
        (
            None,
            {"filename": "x.whl"},
            401,
            "Authentication is missing: send a token for this channel.",
        ),
        ("team_admin", {}, 400, "The body needs 'filename'."),
        (
            "team_admin",
            {"filename": "garbage"},
            400,
            "'garbage' is neither a wheel or sdist filename",
        ),
        ("team_admin", {"filename": "a/b.whl"}, 400, "is a path"),
        (
            "team_admin",
            {"filename": "demo-1.0.tar.gz", "reason": "x" * 1001},
            400,
            "longer than 1000",
        ),
    ],
)
def test_change_refusals(
    site: Site, who: str | None, body: dict[str, str], status: int, sentence: str
) -> None:
    assert sentence in error(site.api("POST", "channels/team/yank", who, body), status)


# -- tokens ----------------------------------------------------------------------------


def test_create_list_revoke_tokens(site: Site) -> None:
    made = site.api(
        "POST",
        "tokens",
        "root",
        {"channels": ["team"], "scope": "write", "expires": "30d", "note": "ci"},
    )
    assert made.status_int == 201
    body = made.json
    assert len(body["token"]) == 48 and body["channels"] == ["team"] and body["scope"] == "write"
    assert body["note"] == "ci" and body["state"] == "active" and body["expires"] > body["created"]
    listed = site.api("GET", "tokens", "root").json["tokens"]
    assert body["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)
    assert body["token"] not in site.api("GET", "tokens", "root").text
    one = site.api("GET", f"tokens/{body['id']}", "root").json
    assert one["id"] == body["id"] and "token" not in one
    revoked = site.api("DELETE", f"tokens/{body['id']}", "root")
    assert revoked.json == {"id": body["id"], "revoked": True, "stored": True}
    assert TokenStore(site.storage).verify(body["token"]) is None
    assert site.api("GET", f"tokens/{body['id']}", "root").json["state"] == "revoked"
    # The revoked token is refused at once by this process.
    error(site.api("GET", "tokens", None, X_Auth=body["token"]), 401)


def test_a_channel_admin_mints_nothing_wider_than_itself(site: Site) -> None:
    cases = [
        (
            {"channels": ["*"], "scope": "read"},
            403,
            "Only a token for '*' may mint a token for '*'",
        ),
        ({"channels": ["other"], "scope": "read"}, 403, "This token is not for channel 'other'."),
        ({"channels": ["team", "other"], "scope": "read"}, 403, "not for channel 'other'"),
        ({"channels": ["nope"], "scope": "read"}, 403, "This token is not for channel 'nope'."),
        (
            {"channels": ["team"], "scope": "owner"},
            400,
            "Scope 'owner' is not one of read, write, admin.",
        ),
        ({"channels": ["team"], "scope": "read", "expires": "soon"}, 400, "Duration 'soon'"),
        ({"channels": "team", "scope": "read"}, 400, "'channels' must be a list."),
        ({"channels": [], "scope": "read"}, 400, "Name at least one channel"),
    ]
    for body, status, sentence in cases:
        assert sentence in error(site.api("POST", "tokens", "team_admin", body), status), body
    made = site.api("POST", "tokens", "team_admin", {"channels": ["team"], "scope": "admin"})
    assert made.status_int == 201
    # Tokens it may see: those naming only its channels.
    ids = {t["id"] for t in site.api("GET", "tokens", "team_admin").json["tokens"]}
    assert ids == {site.ids[w] for w in ("team_admin", "team_write", "team_read")} | {
        made.json["id"]
    }
    missing = site.api("DELETE", f"tokens/{site.ids['root']}", "team_admin")
    assert error(missing, 404) == f"No token you manage has id '{site.ids['root']}'."
    for who in ("team_write", "team_read"):
        assert error(site.api("GET", "tokens", who), 403) == "Managing tokens needs an admin token."
    assert site.api("DELETE", f"tokens/{site.ids['team_read']}", "team_admin").status_int == 200
    error(site.api("GET", "tokens", None), 401)


def test_an_expiring_admin_mints_only_tokens_that_expire_no_later(site: Site) -> None:
    secret, _ = site.admin.create_token(OPERATOR, ["team"], Scope.ADMIN, expires_in=3600)
    site.secrets["brief"] = secret
    never = site.api("POST", "tokens", "brief", {"channels": ["team"], "scope": "read"})
    assert "must expire no later" in error(never, 403)
    later = site.api(
        "POST", "tokens", "brief", {"channels": ["team"], "scope": "read", "expires": "2h"}
    )
    error(later, 403)
    sooner = site.api(
        "POST", "tokens", "brief", {"channels": ["team"], "scope": "read", "expires": "30m"}
    )
    assert sooner.status_int == 201


def test_tokens_are_minted_only_for_channels_that_exist(site: Site) -> None:
    response = site.api("POST", "tokens", "root", {"channels": ["later"], "scope": "read"})
    assert "Channel 'later' does not exist; create it first" in error(response, 404)
    every = site.api("POST", "tokens", "root", {"channels": ["*"], "scope": "read"})
    site.api("POST", "channels", "root", {"name": "later"})
    assert (
        site.app.get(site.url("later/simple/"), headers={"X-Auth": every.json["token"]}).status_int
        == 200
    )


# -- the protocol ------------------------------------------------------------------------


def test_every_token_form_but_the_path_one(site: Site) -> None:
    secret = site.secrets["root"]
    import base64

    basic = base64.b64encode(f"{secret}:x-auth-token".encode()).decode()
    for headers in (
        {"X-Auth": secret},
        {"Authorization": f"Bearer {secret}"},
        {"Authorization": f"Basic {basic}"},
    ):
        response = site.api("GET", "tokens", None, **headers)
        assert response.status_int == 200, headers
    path = site.app.get(f"{site.prefix}/t/{secret}/-/api/tokens", expect_errors=True)
    assert "not in the URL" in error(path, 400)
    assert secret not in path.text


def test_unauthenticated_is_401_with_the_challenge(site: Site) -> None:
    response = site.api("POST", "channels", None, {"name": "x"})
    assert error(response, 401) == "Authentication is missing: send a token for this channel."
    assert response.headers["WWW-Authenticate"] == 'Basic realm="private-channels"'
    bad = site.api("GET", "channels", None, X_Auth="0" * 48)
    assert error(bad, 401) == "The token is invalid or expired."


def test_a_browser_session_is_not_a_token_for_the_api(site: Site) -> None:
    browser = site.sign_in("root")
    channels = browser.get(site.url("-/api/channels")).json["channels"]
    assert [c["name"] for c in channels] == ["open"]  # what anonymous callers get
    browser.post(
        site.url("-/api/channels"), '{"name": "x"}', content_type="application/json", status=401
    )


def test_bodies_must_be_json_and_small(site: Site) -> None:
    form = site.app.post(
        site.url("-/api/channels"),
        {"name": "x"},
        headers={"X-Auth": site.secrets["root"]},
        expect_errors=True,
    )
    assert error(form, 415) == "Send the body as JSON, with Content-Type: application/json."
    bad = site.app.post(
        site.url("-/api/channels"),
        b"{nope",
        content_type="application/json",
        headers={"X-Auth": site.secrets["root"]},
        expect_errors=True,
    )
    assert error(bad, 400) == "The body is not valid JSON."
    big = site.api("POST", "channels", "root", {"name": "x", "pad": "y" * 70_000})
    assert "larger than" in error(big, 413)


def test_unknown_urls_and_methods(site: Site) -> None:
    assert "Nothing is at this URL of the API" in error(site.api("GET", "nope", "root"), 404)
    error(site.api("GET", "channels/team/yank", "root"), 405)
    response = site.api("PUT", "channels", "root")
    assert error(response, 405) == "This URL takes GET, HEAD, POST."
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert site.api("GET", "channels/", "root").status_int == 200
