"""The defects the first fuzzing pass found (issue 17), each as its minimal example.

Each test answers the question "does it still happen?" the way a user would meet it:
through the whole app under a mount prefix where a request could trigger it, with its
cost measured where the defect was a cost.  Several of them (the archive ones, the
upload form's and the admin API's version checks) were fixed by the shared
hostile-archive reader and the upload handler before the fuzzing suite landed; their
tests keep them fixed.
"""

from __future__ import annotations

import base64
import gc
import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from private_channels.auth import redact_tokens
from private_channels.config import ConfigError, load_config
from private_channels.core.ecosystem import Target
from private_channels.cran.description import (
    InvalidPackageError,
    parse_built,
    parse_description,
)
from private_channels.cran.index import render
from private_channels.cran.store import CranRecord, Directory
from private_channels.pypi.manage import matches
from private_channels.pypi.store import PythonStore

from .archives import member, raw_zip, tar
from .fuzz import PREFIX, Server, captured_logs, cost, metadata, multipart, wheel_bytes
from .rsession import RSession
from .test_cran_description import WINDOWS_BUILT, description, source_package, windows_zip

TOKEN = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"
# A bound on a hostile input's cost: a few milliseconds of CPU where the defect took
# seconds; the least of three runs (tests/archives.least_cpu).
MAX_CPU = 0.1


@pytest.fixture
def server() -> Server:
    return Server()


def upload(  # type: ignore[no-untyped-def]
    server: Server,
    fields: dict[str, str],
    filename: str,
    data: bytes,
    status: int,
    *,
    channel: str = "team",
):
    body, content_type = multipart(list(fields.items()), [("content", filename, data)])
    before = server.snapshot()
    response = server.app.post(
        f"{PREFIX}/{channel}",
        body,
        headers={"X-Auth": server.tokens["write"], "Content-Type": content_type},
        status=status,
    )
    if status != 200:
        assert server.snapshot() == before
    return response


def twine(version: str | None = None) -> dict[str, str]:
    fields = {":action": "file_upload", "protocol_version": "1", "filetype": "bdist_wheel"}
    if version is not None:
        fields["version"] = version
    return fields


R_SOURCE = {"filetype": "cran_source_package"}
R_BINARY = {"filetype": "cran_binary_package"}


# -- 500s where a 4xx belongs -------------------------------------------------------------


def test_a_version_past_the_integer_digit_limit_in_metadata(server: Server) -> None:
    data = wheel_bytes(metadata(version="1" * 4400))
    response = upload(server, twine(), "demo-1.0-py3-none-any.whl", data, 400)
    # Quoted short, and redacted: 48 digits or more may be a token's run of hex digits.
    assert "invalid version '<redacted>...'" in response.text and len(response.text) < 300


def test_a_version_past_the_digit_limit_in_the_upload_form(server: Server) -> None:
    # Fixed on main before this suite (the form's check catches ValueError).
    data = wheel_bytes(metadata())
    response = upload(server, twine("1" * 4400), "demo-1.0-py3-none-any.whl", data, 400)
    assert "The form says version" in response.text


def test_a_version_past_the_digit_limit_in_the_admin_api(server: Server) -> None:
    # Fixed on main before this suite: the version comparison catches ValueError, and
    # over HTTP the target's length bound (512 characters) answers first.
    upload(server, twine(), "demo-1.0-py3-none-any.whl", wheel_bytes(metadata()), 200)
    response = server.app.post(
        f"{PREFIX}/team/-/yank",
        {"project": "demo", "version": "1" * 4400},
        headers={"X-Auth": server.tokens["admin"]},
        status=400,
    )
    assert "longer than 512 characters" in response.text
    target = Target("python", "demo", version="1" * 4400)
    record = PythonStore(server.storage).project(server.channel, "demo").files[0]  # type: ignore[union-attr]
    assert not matches(target, record)


def test_an_r_version_past_the_digit_limit_in_built(server: Server) -> None:
    built = f"R {'9' * 5000}.1; ; 2024-01-01; windows"
    response = upload(server, R_BINARY, "abc_1.0.zip", windows_zip(built=built), 400)
    assert "Built is not" in response.text
    with pytest.raises(InvalidPackageError):
        parse_built(built)


def _lzma_zip_with_damaged_properties() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("abc/DESCRIPTION", description(Built=WINDOWS_BUILT))
    data = bytearray(buffer.getvalue())
    # The member's data: 2 bytes of LZMA SDK version, 2 of properties' size, 5 of properties.
    start = data.index(b"abc/DESCRIPTION") + len("abc/DESCRIPTION")
    data[start + 4 : start + 9] = b"\xff" * 5
    return bytes(data)


def test_lzma_members_with_damaged_properties(server: Server) -> None:
    # Fixed on main before this suite, by the shared reader (core/archive.py).
    response = upload(server, R_BINARY, "abc_1.0.zip", _lzma_zip_with_damaged_properties(), 400)
    assert "DESCRIPTION cannot be read" in response.text


def test_a_zip_member_with_an_empty_name(server: Server) -> None:
    # Fixed on main before this suite, by the shared reader (core/archive.py).
    data = raw_zip([(b"abc/DESCRIPTION", description(Built=WINDOWS_BUILT).encode()), (b"", b"x")])
    response = upload(server, R_BINARY, "abc_1.0.zip", data, 400)
    assert "unsafe path: it is empty" in response.text


@pytest.mark.parametrize("pax", [{"GNU.sparse.map": "x"}, {"GNU.sparse.size": "x"}])
def test_a_bad_pax_sparse_map_in_an_r_source_tarball(server: Server, pax: dict[str, str]) -> None:
    # Fixed on main before this suite, by the shared reader (core/archive.py).
    data = gzip.compress(tar(("abc/DESCRIPTION", description().encode()), member("abc/x", pax=pax)))
    response = upload(server, R_SOURCE, "abc_1.0.tar.gz", data, 400)
    assert "sparse file" in response.text


def test_a_wheel_whose_central_directory_needs_zip_6_4(server: Server) -> None:
    # Fixed on main before this suite, by the shared reader (core/archive.py).
    data = raw_zip([(b"demo-1.0.dist-info/METADATA", metadata().encode())], version=64)
    response = upload(server, twine(), "demo-1.0-py3-none-any.whl", data, 400)
    assert "not a valid zip archive" in response.text


@pytest.mark.parametrize("path", ["/open/simple/", "/team/simple/", "/-/health", "/nowhere"])
def test_basic_credentials_that_are_not_ascii(server: Server, path: str) -> None:
    response = server.app.get(
        PREFIX + path, headers={"Authorization": "Basic \u00e9"}, status="*", expect_errors=True
    )
    # The health endpoint needs no token and never reads one; everything else refuses it.
    assert response.status_int == (200 if path == "/-/health" else 401)


@pytest.mark.parametrize("setting", ["trusted_proxies", "redirect_downloads", "token_cache_ttl"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_infinity_in_the_toml_config(tmp_path: Path, setting: str, value: str) -> None:
    file = tmp_path / "config.toml"
    file.write_text(f"{setting} = {value}\n")
    with pytest.raises(ConfigError, match=setting):
        load_config({}, path=file)


@pytest.mark.parametrize(
    "text", ["private-channels = 5", "x = " + "[" * 5000 + "]" * 5000], ids=["not-a-table", "deep"]
)
def test_toml_shapes_that_are_no_configuration(tmp_path: Path, text: str) -> None:
    # Found by the same properties (tests/test_fuzz_parsers.py): a TypeError and a
    # RecursionError escaped where a ConfigError belongs.
    file = tmp_path / "config.toml"
    file.write_text(text)
    with pytest.raises(ConfigError):
        load_config({}, path=file)


# -- CPU that grew with the square of the input --------------------------------------------


def test_parse_built_on_digits_without_a_semicolon() -> None:
    assert cost(lambda: parse_built("R 1." + "1" * 65536)) < MAX_CPU


def test_a_description_whose_built_field_is_a_megabyte_of_digits() -> None:
    text = description(Built="R 1." + "1" * (1000 * 1000)).encode()
    assert cost(lambda: parse_built(parse_description(text)["Built"])) < MAX_CPU


def test_redacting_a_long_path_that_repeats_eyj(server: Server) -> None:
    path = "/eyJ" + "eyJ" * 20_000
    assert cost(lambda: redact_tokens(path)) < MAX_CPU
    # An anonymous request on a public channel, with the access log on (as by default).
    request = f"{PREFIX}/open/simple{path}/"
    with captured_logs():
        assert cost(lambda: server.app.get(request, status=404)) < MAX_CPU


def test_the_user_agent_of_a_linux_download(server: Server) -> None:
    # No token: a public channel, and a download R would make of a Linux repository.
    upload(server, R_SOURCE, "abc_1.0.tar.gz", source_package(), 200, channel="open")
    agent = "R (1.1." + "1" * 32768
    url = f"{PREFIX}/open/__linux__/bookworm/src/contrib/abc_1.0.tar.gz"
    assert cost(lambda: server.app.get(url, headers={"User-Agent": agent}, status=200)) < MAX_CPU


# -- one upload could break every R client of a channel ------------------------------------

NUL_LICENSE = "MIT\n .\n \x00 word"


def test_a_nul_in_a_description_continuation_is_refused(server: Server) -> None:
    data = source_package(License=NUL_LICENSE)
    response = upload(server, R_SOURCE, "abc_1.0.tar.gz", data, 400)
    assert "NUL character" in response.text


def test_a_stored_nul_never_reaches_r(tmp_path: Path) -> None:
    """A record stored before uploads were checked still gives indexes R reads whole."""
    fields = {"Package": "abc", "Version": "1.0", "License": "MIT\n\n\x00 word"}
    records = tuple(
        CranRecord(
            filename=f"{name}_1.0.tar.gz", sha256="0" * 64, size=1, upload_time=0.0,
            package=name, version="1.0", md5="0" * 32,
            fields={**fields, "Package": name, "MD5sum": "0" * 32},
        )
        for name in ("abc", "def")
    )  # fmt: skip
    directory = Directory(path="src/contrib", records=records, stat=None)
    for name in ("PACKAGES", "PACKAGES.rds"):
        (tmp_path / name).write_bytes(render(directory, name))
    with RSession() as r:
        rows = r.read_dcf(tmp_path / "PACKAGES")
        assert [row["Package"] for row in rows] == ["abc", "def"]
        assert rows[0]["License"] == "MIT\n\n\ufffd word"
        names, matrix = r.read_rds(tmp_path / "PACKAGES.rds")
        assert names == ["abc", "def"] and matrix[0]["License"] == "MIT\n\n\ufffd word"


# -- also seen -------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["%2F", "%2f", "%20", "%252F"])
def test_a_token_right_after_a_percent_escape_is_redacted(escape: str) -> None:
    assert redact_tokens(f"/api/repo/x{escape}{TOKEN}/y") == f"/api/repo/x{escape}<redacted>/y"


@pytest.mark.parametrize(
    "incoming",
    [TOKEN, f"lb/t/{TOKEN}", "eyJhbGciOi.sig", "x" * 65536, "id\nwith a new line"],
    ids=["token", "path-token", "signed", "long", "newline"],
)
def test_a_request_id_is_bounded_and_never_a_token(server: Server, incoming: str) -> None:
    with captured_logs() as logs:
        response = server.app.get(f"{PREFIX}/-/health", headers={"X-Request-ID": incoming})
    given = response.headers["X-Request-ID"]
    assert given != incoming and len(given) == 32
    [line] = [line for line in logs.lines if line.startswith("private_channels.access")]
    record = json.loads(line.split(" ", 2)[2])
    assert record["request_id"] == given
    assert TOKEN not in line and "eyJhbGciOi" not in line


def test_a_plain_request_id_is_kept(server: Server) -> None:
    response = server.app.get(f"{PREFIX}/-/health", headers={"X-Request-ID": "lb-1234.abc"})
    assert response.headers["X-Request-ID"] == "lb-1234.abc"


def test_client_fields_of_the_access_log_are_redacted(server: Server) -> None:
    credentials = base64.b64encode(f"{TOKEN}:x".encode()).decode()
    with captured_logs() as logs:
        server.app.get(
            f"{PREFIX}/open/simple/",
            headers={"User-Agent": f"pip/25 {TOKEN}", "Authorization": f"Basic {credentials}"},
            status="*",
        )
    assert logs.lines and not any(TOKEN in line for line in logs.lines)


# -- found by this suite ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "after", ["0", "f" * 16, TOKEN, "simple"], ids=["digit", "16", "twice", "word"]
)
def test_a_token_run_into_more_characters_is_redacted(server: Server, after: str) -> None:
    # Found by the long profile: "/team/-/<TOKEN>0" was logged whole, the run of 49 hex
    # digits taken for no token.
    with captured_logs() as logs:
        server.app.get(f"{PREFIX}/team/-/{TOKEN}{after}", status="*")
    assert logs.lines and not any(TOKEN in line for line in logs.lines)


@pytest.mark.parametrize("path", ["simple/{t}", "simple/{t}/", "simple/{T}/"])
def test_a_token_as_a_project_name_is_not_redirected_back(server: Server, path: str) -> None:
    """PEP 503's redirect to the normalized name carried the token in its Location."""
    url = f"{PREFIX}/open/" + path.format(t=TOKEN, T=TOKEN.upper())
    response = server.app.get(url, status=404)
    assert TOKEN not in str(response.headers) + response.text


def test_a_management_form_cut_short_leaves_no_open_file(server: Server) -> None:
    """werkzeug's form parser spooled a file part to a temporary file that a body cut
    short left open (a ResourceWarning, an error here, when it was collected)."""
    body, content_type = multipart(
        [("filename", "demo-1.0-py3-none-any.whl")], [("content", "x.whl", b"x" * 1000)]
    )
    headers = {"X-Auth": server.tokens["admin"], "Content-Type": content_type}
    server.app.post(f"{PREFIX}/team/-/yank", body[:607], headers=headers, status=400)
    gc.collect()


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_token_as_the_host_is_not_redirected_back(server: Server) -> None:
    """Found by the long profile: the pages' redirect to a path with its trailing slash
    was werkzeug's, absolute, with the Host header the client sent (a token) in it."""
    response = server.app.get(
        PREFIX, headers={"Host": TOKEN, "Accept": BROWSER}, extra_environ={"HTTP_HOST": TOKEN}
    )
    assert response.status_int == 308
    assert response.headers["Location"] == f"{PREFIX}/"
    assert TOKEN not in str(response.headers) and TOKEN not in response.text


@pytest.mark.parametrize("cut", [None, 700], ids=["whole", "cut-short"])
def test_a_refused_web_upload_leaves_its_body_unread(server: Server, cut: int | None) -> None:
    """Found by the long profile: an upload from the web page without a session was
    answered with the sign-in form, whose "next" was looked up in the body, so werkzeug
    parsed an upload of any size, its files spooled to temporary files left open."""
    body, content_type = multipart(
        [("next", "/api/repo/team/")], [("content", "x.whl", b"x" * 600_000)]
    )
    headers = {"Content-Type": content_type, "Accept": BROWSER}
    response = server.app.post(f"{PREFIX}/team/-/upload", body[:cut], headers=headers, status=401)
    assert "Authentication is missing" in response.text
    gc.collect()  # an unclosed temporary file is a ResourceWarning, an error here


@pytest.mark.parametrize("path", ["/", "/team/", "/-/login", "/team/-/yank"])
def test_a_host_header_that_is_no_host_name(server: Server, path: str) -> None:
    """werkzeug's routing map (the web pages') raised BadHost, uncaught, for a Host
    whose label is longer than 63 characters: a 500 for any browser-like request."""
    headers = {"Host": "a" * 70, "Accept": BROWSER}
    server.app.request(PREFIX + path, headers=headers, status=400)


@pytest.mark.parametrize("path", ["/-/static/{t}", "/team/-/packages/python/{t}/", "/{t}/"])
def test_a_token_in_a_page_path_is_not_echoed(server: Server, path: str) -> None:
    """Every page's sign-in form (and the redirect to sign in) carried the page's path
    back as the place to return to, a token in it too."""
    url = PREFIX + path.format(t=TOKEN)
    response = server.app.get(url, headers={"Accept": BROWSER}, status="*")
    assert TOKEN not in str(response.headers) + response.text
    login = server.app.get(
        f"{PREFIX}/-/login", {"next": f"{PREFIX}/x/{TOKEN}"}, headers={"Accept": BROWSER}
    )
    assert TOKEN not in login.text


def test_a_path_of_slashes_through_the_standalone_mount(server: Server) -> None:
    """werkzeug's DispatcherMiddleware (which the standalone server mounted the app
    with) copies the path at every slash: 64 KiB of slashes cost a second of CPU."""
    path = PREFIX + "/" * 65536
    assert cost(lambda: server.app.get(path, status=404)) < MAX_CPU


@pytest.mark.parametrize(
    "junk", [":\r", "=", " x", "\n"], ids=["colon-cr", "pad", "space", "newline"]
)
def test_a_signed_token_is_spelled_one_way_only(junk: str) -> None:
    """Found by the long profile: itsdangerous decodes base64 leniently, so a signed
    token followed by ':\\r' (or any character outside URL-safe base64) verified."""
    from private_channels import MemoryStorage, Scope, TokenStore
    from private_channels.tokens import mint_signed_token

    key = "k" * 32
    signed = mint_signed_token(key, channels=["a"], scope=Scope.READ)
    store = TokenStore(MemoryStorage(), secret_key=key)
    assert store.verify(signed) is not None
    assert store.verify(signed + junk) is None
