"""The whole app, fuzzed in-process: random methods, paths, headers and bodies.

Every example is one request to ``make_app`` mounted at ``/api/repo`` (as the
standalone server mounts it), over a storage that already holds Python and R packages
in a private channel ``team`` and a public one ``open``, with the access log on.
Requests are built from the URL space the app serves (channels, the path token,
``simple/``, ``files/``, ``src/contrib``, ``bin/``, ``__linux__/``, ``-/health``,
``-/yank``...), from every token form, from the headers clients send, from upload
forms with real and damaged packages, and from random text and bytes in every place.

Whatever the request:

- the status is below 500, and the status line and headers are well formed (no
  control characters, so no header a client could split);
- no secret (any token, the signing key, the token hashing key) is in the response or
  in any log line, wherever the request put it;
- a refused request (4xx) leaves the storage byte for byte as it was: a rejected
  upload, yank or delete writes nothing;
- werkzeug's WSGI linter finds nothing to warn about (warnings are errors here).
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from typing import Any
from unittest.mock import patch
from urllib.parse import quote, urlencode

import pytest
import webtest
from hypothesis import event, example, given
from hypothesis import strategies as st
from werkzeug.middleware.lint import LintMiddleware

from private_channels.app import ReadPath
from private_channels.storage import MemoryStorage, Storage
from private_channels.web.session import COOKIE, CSRF_FIELD

from . import strategies as s
from .conda_packages import demo_index, raw_conda
from .fuzz import (
    PREFIX,
    Server,
    captured_logs,
    fuzz,
    metadata,
    multipart,
    snapshot,
    standalone,
    wheel_bytes,
)
from .test_cran_description import source_package, windows_zip


def _form(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    body, content_type = multipart(fields, files)
    return {"body": body, "content_type": content_type}


# -- the storage every example starts from ------------------------------------------------


class World:
    """A storage with packages in both channels, and the tokens that reach them."""

    def __init__(self) -> None:
        self.server = Server()
        wheel = wheel_bytes(metadata())
        uploads = [
            [(":action", "file_upload"), ("protocol_version", "1")],
            [("filetype", "cran_source_package")],
            [("filetype", "cran_binary_package")],
            [("filetype", "cran_binary_package"), ("distribution", "bookworm")],
            [("filetype", "conda_package")],
        ]
        files = [
            ("content", "demo-1.0-py3-none-any.whl", wheel),
            ("content", "abc_1.0.tar.gz", source_package()),
            ("content", "abc_1.0.zip", windows_zip()),
            ("content", "abc_1.0.tar.gz", source_package(Built=s.LINUX_BUILT)),
            ("content", "demo-1.0-0.conda", raw_conda({"info/index.json": demo_index()})),
        ]
        for channel in ("team", "open"):
            for fields, file in zip(uploads, files, strict=True):
                form = _form(fields, [file])
                self.server.app.post(
                    f"{PREFIX}/{channel}",
                    form["body"],
                    headers={
                        "X-Auth": self.server.tokens["write"],
                        "Content-Type": form["content_type"],
                    },
                    status=200,
                )
        # Older versions, so that Archive/ and Meta/archive.rds have something.
        form = _form(uploads[1], [("content", "abc_0.9.tar.gz", source_package(version="0.9"))])
        self.server.app.post(
            f"{PREFIX}/open",
            form["body"],
            headers={"X-Auth": self.server.tokens["write"], "Content-Type": form["content_type"]},
            status=200,
        )
        # A browser signed in with the operator's token: its session cookie, and a CSRF
        # token of that session for the pages' forms.
        browser = webtest.TestApp(self.server.wsgi, extra_environ={"HTTP_ACCEPT": BROWSER})
        login = browser.get(f"{PREFIX}/-/login").forms[0]
        login["token"] = self.server.tokens["root"]
        login.submit(status=303)
        self.cookie = f"{COOKIE}={browser.cookies[COOKIE]}"
        self.csrf = browser.get(f"{PREFIX}/-/tokens").forms[0][CSRF_FIELD].value
        self.snapshot = self.server.snapshot()
        self.keys = {key: self.server.storage.open(key)[0].read() for key in self.snapshot}
        self.secrets = self.server.secrets
        self.tokens = self.server.tokens
        self.ids = self.server.ids
        self.sha256 = next(
            key.split("/")[4]
            for key in self.snapshot
            if key.startswith("channels/team/pypi/blobs/") and key.endswith(".whl")
        )

    def storage(self) -> Storage:
        """A fresh storage holding exactly the snapshot."""
        storage = MemoryStorage()
        for key, data in self.keys.items():
            storage.create(key, io.BytesIO(data))
        return storage


@pytest.fixture(scope="module")
def world() -> World:
    return World()


# -- requests -------------------------------------------------------------------------------

TOKEN_NAMES = ["read", "write", "admin", "elsewhere", "root", "signed", "signed-compressed"]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# Mostly tokens that may do what is asked, so that examples get past authorization.
LIKELY_TOKENS = st.sampled_from(["admin"] * 8 + ["write"] * 4 + TOKEN_NAMES)
# Mostly the methods clients send, sometimes any word at all.
METHODS = st.integers(0, 9).flatmap(
    lambda n: (
        st.text(st.characters(codec="ascii", categories=["Lu", "Ll"]), min_size=1, max_size=8)
        if n == 0
        else st.sampled_from(
            ["GET"] * 6 + ["HEAD"] * 2 + ["POST"] * 2 + ["PUT", "DELETE", "OPTIONS"]
        )
    )
)
# The URL space, with the parts a client chooses in braces.
PLACES = [
    "", "/", "/{c}", "/{c}/", "/t/", "/T/", "/-/health", "/-/", "/{c}/simple", "/{c}/simple/",
    "/{c}/simple/{name}/", "/{c}/simple/{name}", "/{c}/files/{sha}/{name}-{v}-py3-none-any.whl",
    "/{c}/files/{sha}/{name}-{v}-py3-none-any.whl.metadata", "/{c}/files/{sha}/{name}-{v}.tar.gz",
    "/{c}/src/contrib/PACKAGES", "/{c}/src/contrib/PACKAGES.gz", "/{c}/src/contrib/PACKAGES.rds",
    "/{c}/src/contrib/{name}_{v}.tar.gz", "/{c}/src/contrib/Archive/{name}/{name}_{v}.tar.gz",
    "/{c}/src/contrib/Meta/archive.rds", "/{c}/bin/windows/contrib/{r}/PACKAGES",
    "/{c}/bin/windows/contrib/{r}/{name}_{v}.zip", "/{c}/bin/macosx/{os}/contrib/{r}/PACKAGES.rds",
    "/{c}/bin/macosx/contrib/{r}/{name}_{v}.tgz", "/{c}/__linux__/{os}/src/contrib/PACKAGES",
    "/{c}/__linux__/{os}/src/contrib/{name}_{v}.tar.gz", "/{c}/-/yank", "/{c}/-/unyank",
    "/{c}/-/delete", "/{c}/-/{name}",
    # The HTTP API.
    "/-/api/channels", "/-/api/channels/{c}", "/-/api/channels/{c}/packages",
    "/-/api/channels/{c}/packages/{eco}/{name}", "/-/api/channels/{c}/{action}",
    "/-/api/tokens", "/-/api/tokens/{tid}", "/-/api/{name}",
    # The web pages (for requests that ask for HTML first, as browsers do).
    "/-/login", "/-/login?next={name}", "/-/logout", "/-/static/{name}", "/-/static/style.css",
    "/-/tokens", "/-/tokens/{tid}/revoke", "/-/channels", "/-/channels/{c}/delete",
    "/{c}/-/packages/{eco}/{name}/", "/{c}/-/upload", "/{c}/-/files",
    # conda.
    "/{c}/channeldata.json", "/{c}/{sub}/repodata.json", "/{c}/{sub}/repodata.json.zst",
    "/{c}/{sub}/repodata.json.bz2", "/{c}/{sub}/repodata_shards.msgpack.zst",
    "/{c}/{sub}/shards/{sha}.msgpack.zst", "/{c}/{sub}/current_repodata.json",
    "/{c}/{sub}/{name}-{v}-0.conda", "/{c}/{sub}/{name}-{v}-0.tar.bz2",
]  # fmt: skip

# Names longer than any storage key, in characters every name pattern accepts.
LONG_NAMES = st.builds(str.__mul__, st.sampled_from(["a", "1", "1.", "a-", "x_"]),
                       st.integers(200, 3000))  # fmt: skip
CHANNELS = st.sampled_from(["team"] * 6 + ["open"] * 6 + ["nope", "T", "%74eam", "-"])


def _part(usual: list[str], unit: str, tail: str = "") -> st.SearchStrategy[str]:
    """A part of the URL a client chooses: mostly a usual one, else a long one of the
    right characters (longer than any storage key), else anything."""
    longer = st.integers(900, 3000).map(lambda n: unit * n + tail)
    return st.one_of(st.sampled_from(usual), st.sampled_from(usual), longer, s.hostile_texts)


@st.composite
def paths(draw: st.DrawFn, world: World) -> str:
    """A path below the mount: a place of the URL space with its parts filled in (mostly
    as a client would), sometimes changed further or replaced."""
    token = world.tokens[draw(st.sampled_from(TOKEN_NAMES))]
    parts = {
        "c": draw(CHANNELS),
        "name": draw(_part(["demo", "Demo", "abc", "nope"], "a") | st.just(token)),
        "v": draw(_part(["1.0", "0.9", "1.0.0", "2.0"], "1")),
        "sha": draw(_part([world.sha256, "0" * 64], "0")),
        "r": draw(_part(["4.2", "4.3", "4.10", "1" * 40 + ".1"], "1", ".1")),
        "os": draw(_part(["bookworm", "big-sur-arm64", "jammy"], "a")),
        "eco": draw(_part(["python", "cran", "conda"], "a")),
        "action": draw(_part(["yank", "unyank", "delete"], "a")),
        "tid": draw(_part(sorted(world.ids.values()), "0")),
        "sub": draw(_part(["noarch", "linux-64", "osx-arm64"], "a")),
    }
    place, _, query = draw(st.sampled_from(PLACES)).format(**parts).partition("?")
    change = draw(st.sampled_from(["none"] * 6 + [
        "token-path", "token-segment", "append", "replace", "quote", "insert"]))  # fmt: skip
    text = draw(s.hostile_texts | LONG_NAMES)
    if change == "token-path":  # P/t/<TOKEN>/..., as R sends it
        place = f"/t/{token}{place}"
    elif change == "token-segment":  # a token where no token belongs
        place = place.rstrip("/") + "/" + draw(st.sampled_from([token, quote(token), "x" + token]))
    elif change == "append":
        place += text
    elif change == "replace":
        place = "/" + text
    elif change == "quote":
        place = quote(place + text, safe=draw(st.sampled_from(["/", "", "/%"])))
    elif change == "insert":
        cut = draw(st.integers(0, len(place)))
        place = place[:cut] + text + place[cut:]
    return place + ("?" + query if query else "")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@st.composite
def credentials(draw: st.DrawFn, world: World) -> dict[str, str]:
    token = world.tokens[draw(LIKELY_TOKENS)]
    forms = ["basic", "pypi", "bearer", "x-auth", "session"] * 2 + ["none", "bad", "junk"]
    form = draw(st.sampled_from(forms))
    if form == "basic":
        return {"HTTP_AUTHORIZATION": _basic(token, "x-auth-token")}
    if form == "pypi":
        return {"HTTP_AUTHORIZATION": _basic("__token__", token)}
    if form == "bearer":
        return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if form == "x-auth":
        return {"HTTP_X_AUTH": token}
    if form == "session":  # a signed-in browser (its cookie, maybe beside others)
        cookie = draw(st.sampled_from([world.cookie, f"a=b; {world.cookie}", world.cookie[:-3]]))
        return {"HTTP_COOKIE": cookie, "HTTP_ACCEPT": BROWSER}
    if form == "bad":
        return {"HTTP_AUTHORIZATION": draw(st.sampled_from(
            ["Basic \u00e9", "Basic", "Bearer", _basic(token, "wrong"), f"Digest {token}",
             "Basic " + token, _basic("", token), f"Bearer {token[:-1]}"]))}  # fmt: skip
    if form == "junk":
        return {draw(st.sampled_from(["HTTP_AUTHORIZATION", "HTTP_X_AUTH"])): draw(s.hostile_texts)}
    return {}


HEADERS = {
    "HTTP_ACCEPT": st.sampled_from(["application/vnd.pypi.simple.v1+json, text/html;q=0.01",
                                    "text/html", "application/json", "*/*;q=0", BROWSER]),
    "HTTP_RANGE": st.sampled_from(["bytes=0-10", "bytes=-5", "bytes=100000-", "bytes=5-1",
                                   "bytes=0-1,3-4", "items=0-1", "bytes=x"]),
    "HTTP_IF_NONE_MATCH": st.sampled_from(['"x"', "*", 'W/"a", "b"']),
    "HTTP_IF_MODIFIED_SINCE": st.sampled_from(["Mon, 01 Jan 2024 00:00:00 GMT", "yesterday"]),
    "HTTP_IF_RANGE": st.sampled_from(['"x"', "Mon, 01 Jan 2024 00:00:00 GMT"]),
    "HTTP_USER_AGENT": st.sampled_from(["R/4.3.1 R (4.3.1 x86_64-pc-linux-gnu x86_64 linux-gnu)",
                                        "pip/25.0", "R (1.1." + "1" * 3000]),
    "HTTP_X_REQUEST_ID": st.sampled_from(["lb-1", "a b", "x" * 300]),
    "HTTP_X_FORWARDED_FOR": st.sampled_from(["10.0.0.1", "::1"]),
    "HTTP_COOKIE": st.sampled_from(["session=x", "a=b; c", f"{COOKIE}=x.y.z"]),
    "HTTP_ORIGIN": st.sampled_from(["http://fuzz", "http://evil.example", "null"]),
    "HTTP_REFERER": st.sampled_from(["http://fuzz/api/repo/", "http://evil.example/"]),
    "HTTP_SEC_FETCH_SITE": st.sampled_from(["same-origin", "cross-site", "none"]),
    "HTTP_HOST": st.sampled_from(["fuzz", "evil.example", "fuzz:80"]),
}  # fmt: skip


@st.composite
def headers(draw: st.DrawFn, world: World) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(sorted(HEADERS)), max_size=4, unique=True)):
        tokens = st.sampled_from(TOKEN_NAMES).map(world.tokens.__getitem__)
        chosen[name] = draw(HEADERS[name] | s.hostile_texts | tokens)
    return chosen


PACKAGES = {
    "wheel": ([(":action", "file_upload"), ("protocol_version", "1")],
              s.wheels(), "demo-1.0-py3-none-any.whl"),
    "sdist": ([(":action", "file_upload")], s.sdists(), "demo-1.0.tar.gz"),
    "r-source": ([("filetype", "cran_source_package")], s.r_sources(), "abc_1.0.tar.gz"),
    "r-windows": ([("filetype", "cran_binary_package")], s.r_binaries(), "abc_1.0.zip"),
    "r-mac": ([("filetype", "cran_binary_package")], s.r_binaries(built=s.MAC_BUILT),
              "abc_1.0.tgz"),
    "conda": ([("filetype", "conda_package")], s.conda_packages(".conda"), "demo-1.0-0.conda"),
    "conda-bz2": ([("filetype", "conda_package")], s.conda_packages(".tar.bz2"),
                  "demo-1.0-0.tar.bz2"),
    "r-linux": ([("filetype", "cran_binary_package"), ("distribution", "bookworm")],
                s.r_binaries(built=s.LINUX_BUILT), "abc_1.0.tar.gz"),
}  # fmt: skip
# Fields a form may also carry (twine's, and the management API's), right or wrong.
FIELDS = {
    ":action": st.sampled_from(["file_upload", "submit", ""]),
    "protocol_version": st.sampled_from(["1", "2"]),
    "filetype": st.sampled_from(["bdist_wheel", "sdist", "cran_source_package",
                                 "cran_binary_package", "cran_other", "conda_package"]),
    "distribution": st.sampled_from(["bookworm", "jammy", "Bad Name"]),
    "name": st.sampled_from(["demo", "other"]),
    "version": st.sampled_from(["1.0", "1.0.0", "2.0", "1" * 4400]),
    "sha256_digest": st.sampled_from(["0" * 64, ""]),
    "md5_digest": st.sampled_from(["0" * 32, ""]),
    "filename": st.sampled_from(["demo-1.0-py3-none-any.whl", "demo==1.0", "abc_1.0.tar.gz"]),
    "project": st.sampled_from(["demo", "abc"]),
    "reason": st.sampled_from(["broken", "x" * 2000]),
    # The pages' forms.
    "token": st.sampled_from(["", "x" * 100]),
    "channels": st.sampled_from(["team", "*", "team,open", "nope"]),
    "channel": st.sampled_from(["team", "open", "new-one"]),
    "scope": st.sampled_from(["read", "write", "admin", "root"]),
    "expires": st.sampled_from(["30d", "0s", "1" * 5000 + "d", ""]),
    "note": st.sampled_from(["ci", "a\nb", "x" * 300]),
    "public": st.sampled_from(["on", "1", ""]),
    "action": st.sampled_from(["yank", "unyank", "delete", "x"]),
    "confirm": st.sampled_from(["team", "open", "yes"]),
}  # fmt: skip
# The HTTP API's JSON bodies: its keys, with values of every JSON type.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | s.texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(s.texts, inner, max_size=3),
    max_leaves=8,
)
API_KEYS = ["name", "public", "channels", "scope", "expires", "note", "filename", "reason",
            "python_upstream", "cran_upstream", "upstream_allow", "allow_reupload"]  # fmt: skip


def _name(text: str) -> str:
    """A name as a client puts it in a part's header: no quote, no line end."""
    return "".join(ch for ch in text if ch not in '"\r\n')


@st.composite
def bodies(draw: st.DrawFn, world: World) -> dict[str, Any]:
    """An upload form as a client writes it (mostly), then changed: fields added or
    dropped, the file renamed, the body cut short; a page's form, a JSON body for the
    HTTP API; or none at all."""
    kinds = [*sorted(PACKAGES)] * 2 + ["fields"] * 3 + ["json"] * 3 + ["bytes", "none"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return {}
    if kind == "bytes":
        return {"body": draw(st.binary(max_size=512)),
                "content_type": draw(st.sampled_from(["application/octet-stream",
                                                      "multipart/form-data; boundary=fUzZ",
                                                      "multipart/form-data"]))}  # fmt: skip
    if kind == "json":
        usual = st.fixed_dictionaries(
            {}, optional={k: FIELDS.get(k, JSON_VALUES) | JSON_VALUES for k in API_KEYS}
        )
        text = json.dumps(draw(usual | JSON_VALUES)) if draw(st.integers(0, 9)) else draw(s.texts)
        types = ["application/json", "application/json; charset=utf-8", "text/plain"]
        return {"body": text.encode(), "content_type": draw(st.sampled_from(types))}
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, str, bytes]] = []
    if kind in PACKAGES:
        base, strategy, filename = PACKAGES[kind]
        fields = list(base)
        files = [("content", filename, draw(strategy))]
    else:  # a page's form: this session's CSRF token, mostly
        fields = [(CSRF_FIELD, draw(st.sampled_from([world.csrf, world.csrf, "", "x.y"])))]
    names = draw(st.lists(st.sampled_from(sorted(FIELDS)) | s.texts, max_size=4))
    fields += [(_name(n), draw(FIELDS.get(n, s.hostile_texts) | s.hostile_texts))
               for n in names]  # fmt: skip
    if fields and draw(st.integers(0, 5)) == 0:
        fields.pop(draw(st.integers(0, len(fields) - 1)))
    if files and draw(st.integers(0, 5)) == 0:
        files = [(draw(st.sampled_from(["content", "other"])), _name(draw(s.texts)),
                  files[0][2])]  # fmt: skip
    if kind == "fields" and draw(st.booleans()):
        return {"body": urlencode(fields).encode(),
                "content_type": "application/x-www-form-urlencoded"}  # fmt: skip
    form = _form(fields, files)
    if draw(st.integers(0, 7)) == 0:  # cut short, as by a client that went away
        form["body"] = form["body"][: draw(st.integers(0, len(form["body"])))]
    return form


def _environ(
    method: str, path: str, query: str, extra: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    data = body.get("body", b"")
    # WSGI strings are bytes as latin-1 (PEP 3333): what a server would hand over.
    path = path.encode("utf-8", "surrogatepass").decode("latin-1")
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": PREFIX + path,
        "QUERY_STRING": query.encode().decode("latin-1"), "SERVER_NAME": "fuzz",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_URI": quote(PREFIX + path, safe="/%"), "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(data)) if body else "",
    }  # fmt: skip
    if "content_type" in body:
        environ["CONTENT_TYPE"] = body["content_type"]
    for key, value in extra.items():
        environ[key] = value.encode("utf-8", "surrogatepass").decode("latin-1")
    return environ


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    body = app(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return started[0], started[1], data


# -- the properties ---------------------------------------------------------------------------


def _check(
    world: World, method: str, path: str, query: str, extra: dict[str, str], body: dict[str, Any]
) -> None:
    storage = world.storage()
    app = standalone(storage)
    if method != "HEAD":  # the linter counts a HEAD's Content-Length against no body
        app = LintMiddleware(app)
    environ = _environ(method, path, query, extra, body)
    with captured_logs() as logs, warnings.catch_warnings():
        # RFC 9110 allows a relative Location, which the index's redirects use (so that
        # any mount prefix and the path token survive them); the linter wants RFC 2616's.
        warnings.filterwarnings("ignore", "Absolute URLs required for location header")
        status, headers, data = _call(app, environ)
    code = int(status.split(" ", 1)[0])
    event(f"{method if method in ('GET', 'HEAD', 'POST') else 'other'} {code}")
    assert code < 500, f"{status}\n{data[:2000]!r}\n" + "\n".join(logs.lines)
    for text in [status, *(f"{k}: {v}" for k, v in headers)]:
        assert not any(ch in text for ch in "\r\n\x00"), text
        text.encode("latin-1")
    answer = status + "".join(f"{k}: {v}\n" for k, v in headers) + data.decode("latin-1")
    lines = "\n".join(logs.lines)
    for secret in world.secrets:
        assert secret not in answer, f"a secret in the response to {method} {path}"
        assert secret not in lines, f"a secret in the log of {method} {path}"
    if code >= 400:
        assert snapshot(storage) == world.snapshot, f"{status}: storage changed"


REQUESTS = dict(
    method=METHODS,
    query=st.sampled_from(["", "format=application/vnd.pypi.simple.v1+json", "format=x"]) | s.texts,
)


@fuzz(300)
@given(data=st.data(), **REQUESTS)
def test_any_request(world: World, data: st.DataObject, method: str, query: str) -> None:
    path = data.draw(paths(world))
    extra = {**data.draw(credentials(world)), **data.draw(headers(world))}
    body = data.draw(bodies(world)) if method not in ("GET", "HEAD") else {}
    _check(world, method, path, query, extra, body)


@fuzz(150)
@given(data=st.data())
@example(data=None)
def test_any_upload(world: World, data: st.DataObject | None) -> None:
    """``POST P/<CHANNEL>`` with a form: twine's, curl's, or damaged, by any token."""
    if data is None:  # the minimal form that once broke the channel (issue 17)
        body = _form(
            [("filetype", "cran_source_package")],
            [("content", "abc_1.0.tar.gz", source_package(License="MIT\n .\n \x00 w"))],
        )
        _check(world, "POST", "/team", "", {"HTTP_X_AUTH": world.tokens["write"]}, body)
        return
    channel = data.draw(st.sampled_from(["/team"] * 3 + ["/team/"] * 2 + ["/open"] * 2 + ["/nope"]))
    extra = {**data.draw(credentials(world)), **data.draw(headers(world))}
    _check(world, "POST", channel, "", extra, data.draw(bodies(world)))


@fuzz(100)
@given(data=st.data())
def test_any_management_request(world: World, data: st.DataObject) -> None:
    """``POST P/<CHANNEL>/-/yank|unyank|delete`` by any token, with any form."""
    action = data.draw(st.sampled_from(["yank", "unyank", "delete"]))
    channel = data.draw(st.sampled_from(["team"] * 3 + ["open"] * 3 + ["nope"]))
    extra = {**data.draw(credentials(world)), **data.draw(headers(world))}
    _check(world, "POST", f"/{channel}/-/{action}", "", extra, data.draw(bodies(world)))


def _answer(storage: Storage, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    status, headers, data = _call(standalone(storage), environ)
    # The access log's request id is new for every app, and werkzeug's conditional
    # answers carry the second they were made in; everything else must agree.
    return status, [(k, v) for k, v in headers if k not in ("X-Request-ID", "Date")], data


@fuzz(200)
@given(data=st.data(), method=st.sampled_from(["GET"] * 4 + ["HEAD"] * 2 + ["POST", "PUT"]))
def test_read_path_answers_as_the_whole_composition(
    world: World, data: st.DataObject, method: str
) -> None:
    """:class:`~private_channels.app.ReadPath` sends reads past the health endpoint, the
    pages, uploads and management: each of those must pass on every request it takes,
    so that such a request gets the answer the whole composition gives."""
    path = data.draw(paths(world))
    query = data.draw(REQUESTS["query"])
    extra = {**data.draw(credentials(world)), **data.draw(headers(world))}
    mounted = _environ(method, path, query, extra, {})
    mounted["PATH_INFO"] = mounted["PATH_INFO"].removeprefix(PREFIX)
    taken = ReadPath.takes(mounted)
    event(f"read path {'taken' if taken else 'not taken'}")
    if not taken:
        return  # the whole composition answers it either way
    storage = world.storage()  # one for both: ETags name the storage's versions
    shortened = _answer(storage, _environ(method, path, query, extra, {}))
    with patch.object(ReadPath, "takes", staticmethod(lambda environ: False)):
        assert _answer(storage, _environ(method, path, query, extra, {})) == shortened


def test_read_path_takes_the_reads_it_should(world: World) -> None:
    """The read path is taken (else the property above proves nothing) for the reads
    of indexes and files, and not for what a layer it leaves out answers."""

    def takes(method: str, path: str, extra: dict[str, str]) -> bool:
        return ReadPath.takes({"REQUEST_METHOD": method, "PATH_INFO": path, **extra})

    auth = {"HTTP_X_AUTH": world.tokens["read"]}
    for path in ["/team/simple/demo/", "/team/src/contrib/PACKAGES", "/open/noarch/repodata.json",
                 f"/t/{world.tokens['read']}/team/src/contrib/PACKAGES.rds"]:  # fmt: skip
        assert takes("GET", path, auth) and takes("HEAD", path, {})
    for method, path, extra in [
        ("GET", "/-/health", {}), ("GET", "/team/", {"HTTP_ACCEPT": BROWSER}),
        ("GET", "/team", {}), ("GET", "/team/simple/demo/", {"HTTP_COOKIE": world.cookie}),
        ("GET", "/team/-/files", auth),
        ("POST", "/team/simple/demo/", auth), ("GET", "/-/api/channels", auth),
        ("POST", "/team/", auth), ("GET", "/team/-/yank", auth), ("GET", "/", {}),
    ]:  # fmt: skip
        assert not takes(method, path, extra)
