"""Every parser of client input, fuzzed: which errors may escape, and what holds after.

Each property names, in ``only(...)``, the one error type its parser documents; any
other exception is a defect (a 500, once a request reaches it).  Where a parser
accepts, the property also checks what its acceptance promises.  The inputs come from
``tests/strategies.py``: mostly what a client would send, with hostile values mixed in.
The cost of each parser on long inputs is ``tests/test_fuzz_linear.py``'s concern, the
whole app ``tests/test_fuzz_app.py``'s, the writers read back by R ``test_fuzz_r.py``'s.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import string
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from packaging.metadata import parse_email
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder

from private_channels import (
    ChannelRegistry,
    MemoryStorage,
    Scope,
    TokenStore,
    mint_signed_token,
    redaction,
)
from private_channels.accesslog import AccessLogMiddleware
from private_channels.app import ecosystems
from private_channels.auth import _basic_pair, credentials, cut_path_token
from private_channels.channels import InvalidChannelNameError, validate_channel_name
from private_channels.conda import package as conda
from private_channels.config import Config, ConfigError, load_config, parse_size
from private_channels.core.limits import Limits
from private_channels.core.manage import find_target
from private_channels.core.upload import parse_upload_form
from private_channels.cran.dcf import DCFError, format_dcf, parse_dcf
from private_channels.cran.description import (
    InvalidPackageError,
    check_dependencies,
    parse_built,
    parse_description,
    r_version_key,
    read_package,
    valid_package_name,
    valid_version,
)
from private_channels.cran.store import directories_for
from private_channels.errors import reason_phrase
from private_channels.pypi import metadata
from private_channels.pypi.manage import InvalidTargetError, parse_target, project_of
from private_channels.pypi.metadata import (
    InvalidDistributionError,
    parse_filename,
    read_distribution,
)
from private_channels.pypi.render import MEDIA_TYPES
from private_channels.pypi.simple import negotiate
from private_channels.redaction import redact_tokens
from private_channels.storage import InvalidKeyError, validate_key
from private_channels.tokens import _SIGNED_SALT as SIGNED_SALT
from private_channels.tokens import parse_duration

from . import strategies as s
from .fuzz import PREFIX, SECRET_KEY, Server, fuzz, multipart
from .test_cran_description import source_package

T = TypeVar("T")


def only(
    errors: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[..., T],
    *args: Any,
    **kwargs: Any,
) -> T | None:
    """``call``'s result, or ``None`` if it raised one of ``errors``; anything else fails."""
    try:
        return call(*args, **kwargs)
    except errors:
        return None


# -- filenames and names -------------------------------------------------------------------

PYTHON_FILENAMES = st.one_of(
    s.texts,
    st.builds("{}-{}{}".format, s.texts, s.texts, st.sampled_from([".tar.gz", ".zip", ""])),
    st.builds("{}-{}-{}-{}-{}.whl".format, s.texts, s.texts, s.texts, s.texts, s.texts),
    s.digits().map(lambda d: f"demo-{d}-py3-none-any.whl"),
    st.sampled_from(
        [
            "demo-1.0-py3-none-any.whl",
            "demo-1.0.tar.gz",
            "_x-1.0.tar.gz",
            "demo-1.0-1-py3-none-any.whl",
            "a-b-c.zip",
        ]
    ),
)


@fuzz(300)
@given(PYTHON_FILENAMES)
@example("demo-" + "1" * 250 + "-py3-none-any.whl")
def test_python_filenames(filename: str) -> None:
    parsed = only(InvalidDistributionError, parse_filename, filename)
    if parsed is not None:
        assert len(filename) <= Limits.max_filename and "/" not in filename
        assert parsed.kind == ("wheel" if filename.endswith(".whl") else "sdist")
        assert only(InvalidTargetError, project_of, filename) == parsed.name


@fuzz(300)
@given(s.hostile_texts)
def test_channel_names(name: str) -> None:
    if only(InvalidChannelNameError, validate_channel_name, name) is not None:
        # A valid channel name is a valid storage key segment (channels/<name>/...).
        assert validate_key(f"channels/{name}/x") and name.lower() != "t"


@fuzz(300)
@given(st.lists(s.hostile_texts, max_size=4).map("/".join))
def test_storage_keys(key: str) -> None:
    if only(InvalidKeyError, validate_key, key) is not None:
        assert not any(part in ("", ".", "..") for part in key.split("/"))
        assert "\\" not in key and "\x00" not in key


@fuzz(300)
@given(s.hostile_texts | s.digits().map(lambda d: d + ".1"))
def test_r_names_and_versions(text: str) -> None:
    if valid_version(text):
        assert len(r_version_key(text)) >= 2
    if valid_package_name(text):
        assert text.isascii() and text[0].isalpha()


# -- Python metadata and archives ------------------------------------------------------------


@fuzz(300)
@given(s.metadata_texts())
@example(b"Metadata-Version: 2.1\nName: demo\nVersion: " + b"1" * 4400 + b"\n\n")
@example(b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Python: ==" + b"1" * 4400)
def test_metadata(text: bytes) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as wheel:
        wheel.writestr("demo-1.0.dist-info/METADATA", text)
    dist = only(InvalidDistributionError, read_distribution, "demo-1.0-py3-none-any.whl", archive)
    if dist is not None:
        assert dist.name == "demo" and dist.metadata == text


@fuzz(500)
@given(s.header_blocks() | s.metadata_texts() | st.binary(max_size=300))
@example(b"Name: demo\nName: demo\n")
@example(b"Name:\n demo\r\nVersion: 1.0\r\n\r\nName: other\n")
@example(b"Name : demo\nVersion: 1.0\n")
def test_the_header_reading_agrees_with_packaging(data: bytes) -> None:
    """Where the upload's own reading of METADATA's header block answers, the checked
    fields are what packaging's ``parse_email`` reads, which then raises nothing; on
    any bytes, that reading raises nothing itself."""
    fields = metadata._header_fields(data)
    if fields is None:
        return
    raw, unparsed = parse_email(data)
    for name, field in metadata._CHECKED.items():
        values = fields.get(field, [])
        assert (raw.get(field), unparsed.get(name.decode())) == (
            (values[0], None) if len(values) == 1 else (None, values or None)
        ), field


@fuzz(100)
@given(s.wheels())
def test_wheels(data: bytes) -> None:
    dist = only(
        InvalidDistributionError, read_distribution, "demo-1.0-py3-none-any.whl", io.BytesIO(data)
    )
    if dist is not None:
        assert dist.name == "demo" and dist.kind == "wheel"


@fuzz(100)
@given(s.sdists())
def test_sdists(data: bytes) -> None:
    dist = only(InvalidDistributionError, read_distribution, "demo-1.0.tar.gz", io.BytesIO(data))
    if dist is not None:
        assert dist.name == "demo" and dist.kind == "sdist"


# -- R DESCRIPTION, DCF, Built, archives ---------------------------------------------------


@fuzz(300)
@given(s.hostile_texts | st.lists(s.hostile_texts, max_size=6).map("\n".join))
def test_dcf_text(text: str) -> None:
    records = only(DCFError, parse_dcf, text)
    if records is not None:
        assert all(records) and all(":" not in name for r in records for name in r)


FIELD_NAMES = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=12,
)


@fuzz(300)
@given(
    st.lists(
        st.dictionaries(FIELD_NAMES, s.hostile_texts | s.field_values(), min_size=1, max_size=4),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
def test_the_dcf_writer_round_trips_through_the_reader(
    records: list[dict[str, str]], fold: bool
) -> None:
    """No value ends a record or starts a field; values come back as the writer meant:
    the same words, a NUL as U+FFFD.  (A line "." is DCF's empty line, in our reader
    and in R's alike: a value's "." that lands alone on a line is not carried.)"""
    text = format_dcf(records, fold=fold)
    read = parse_dcf(text)
    written = [{k: v for k, v in r.items() if v.strip()} for r in records]
    written = [r for r in written if r]
    assert [list(r) for r in read] == [list(r) for r in written]
    for got, sent in zip(read, written, strict=True):
        for name, value in sent.items():
            # The reader strips what Python calls whitespace from each line, and the
            # writer splits at what Python calls a line end: compare the words.
            # A "." alone on a written line is read as an empty line, so "." words are
            # left out of the comparison.
            words = value.replace("\x00", "\ufffd").split()
            assert [w for w in got[name].split() if w != "."] == [w for w in words if w != "."]


@fuzz(300)
@given(s.descriptions())
@example(b"Package: abc\nVersion: 1.0\nLicense: MIT\n .\n \x00 word\n")
def test_descriptions(raw: bytes) -> None:
    fields = only(InvalidPackageError, parse_description, raw)
    if fields is not None:
        assert valid_package_name(fields["Package"]) and valid_version(fields["Version"])
        assert not any("\x00" in value for value in fields.values())


@fuzz(300)
@given(s.built_values())
@example("R " + "9" * 5000 + ".1; ; 2024; windows")
@example("R 1." + "1" * 600)
def test_built(value: str) -> None:
    built = only(InvalidPackageError, parse_built, value)
    if built is not None:
        assert r_version_key(built.r_version) and built.os
        assert re.fullmatch(r"[0-9]{1,4}\.[0-9]{1,4}", built.r_version)


@fuzz(300)
@given(st.sampled_from(["Depends", "Imports"]), st.lists(s.hostile_texts, max_size=4).map(",".join))
def test_dependency_fields(name: str, value: str) -> None:
    only(InvalidPackageError, check_dependencies, name, value)


@pytest.mark.parametrize(
    ("strategy", "binary", "linux"),
    [
        (s.r_sources(), False, False),
        (s.r_binaries(), True, False),
        (s.r_binaries(built=s.MAC_BUILT), True, False),
        (s.r_binaries(built=s.LINUX_BUILT), True, True),
    ],
    ids=["source", "windows", "mac", "linux"],
)
@fuzz(60)
@given(data=st.data())
def test_r_packages(
    strategy: st.SearchStrategy[bytes], binary: bool, linux: bool, data: st.DataObject
) -> None:
    archive = data.draw(strategy)
    package = only(
        InvalidPackageError, read_package, io.BytesIO(archive), binary=binary, linux=linux
    )
    if package is not None:
        assert package.name == "abc"
        assert "\x00" not in "".join(package.fields.values())
        # Where it is stored is decided from what was accepted, without an error.
        directories_for(package, "bookworm" if linux else None)


# -- conda ---------------------------------------------------------------------------------

CONDA_FILENAMES = st.one_of(
    s.texts,
    st.builds("{}-{}-{}{}".format, s.texts, s.texts, s.texts, st.sampled_from(conda.EXTENSIONS)),
    st.sampled_from(["demo-1.0-0.conda", "demo-1.0-py_0.tar.bz2", "_x-1!2.0-0.conda",
                     "a-b-c-d.conda", "demo-1.0-0.zip", "Demo-1.0-0.conda"]),
)  # fmt: skip


@fuzz(300)
@given(CONDA_FILENAMES)
def test_conda_filenames(filename: str) -> None:
    parsed = only(conda.InvalidPackageError, conda.parse_filename, filename)
    if parsed is not None:
        assert str(parsed) == filename and "/" not in filename


CONDA_VERSIONS = (s.texts | s.digits().map(lambda d: f"1!{d}.1")).map(lambda v: v[:64])


@fuzz(300)
@given(CONDA_VERSIONS, CONDA_VERSIONS)
def test_conda_versions_order(a: str, b: str) -> None:
    """Any two versions a filename can carry (64 characters) compare, consistently."""
    ka, kb = conda.version_key(a), conda.version_key(b)
    assert (ka < kb) + (kb < ka) + (ka == kb) == 1
    assert ka != kb or hash(ka) == hash(kb)


@fuzz(300)
@given(st.dictionaries(st.sampled_from(s.INDEX_KEYS) | s.texts, s.json_values) | s.conda_index())
def test_conda_index_json(doc: dict[str, Any]) -> None:
    name = conda.parse_filename("demo-1.0-0.conda")
    found = only(conda.InvalidPackageError, conda.check_index, doc, name)
    if found is not None:
        subdir, index = found
        assert subdir in conda.SUBDIRS and index["name"] == "demo"


@pytest.mark.parametrize("extension", conda.EXTENSIONS)
@fuzz(100)
@given(data=st.data())
def test_conda_packages(extension: str, data: st.DataObject) -> None:
    archive = data.draw(s.conda_packages(extension))
    filename = f"demo-1.0-0{extension}"
    package = only(conda.InvalidPackageError, conda.read_package, filename, io.BytesIO(archive))
    if package is not None:
        assert package.name == "demo" and package.subdir in conda.SUBDIRS


# -- multipart -----------------------------------------------------------------------------

LIMITS = Limits(max_upload_size=4096, max_form_text=2048, max_form_parts=8, max_part_header=512)


def _parse(body: bytes, boundary: bytes) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    environ = EnvironBuilder(
        method="POST", input_stream=io.BytesIO(body), content_length=len(body)
    ).get_environ()
    with parse_upload_form(environ, boundary, LIMITS) as (form, files):
        read = {name: f.stream.read() for name, f in files.items()}
        return form.to_dict(flat=False), read


def _refused(error: HTTPException) -> None:
    assert error.code in (400, 413)


@fuzz(300)
@given(st.binary(max_size=2048), st.sampled_from([b"fUzZ", b"b", b"-" * 70, b"\xff"]))
def test_multipart_random_bodies(body: bytes, boundary: bytes) -> None:
    try:
        _parse(body, boundary)
    except HTTPException as error:
        _refused(error)


FORM_NAMES = st.text(st.characters(codec="ascii", exclude_characters='"\r\n\\'), max_size=12)


@fuzz(300)
@given(
    st.lists(st.tuples(FORM_NAMES, s.texts), max_size=10),
    st.lists(st.tuples(FORM_NAMES, FORM_NAMES, st.binary(max_size=3000)), max_size=3),
    st.lists(st.tuples(st.integers(0, 1 << 13), st.integers(0, 255)), max_size=3),
)
def test_multipart_forms(
    fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]], edits: list[tuple[int, int]]
) -> None:
    body, _ = multipart(fields, files)
    damaged = bytearray(body)
    for position, value in edits:
        damaged[position % len(damaged)] = value
    try:
        form, read = _parse(bytes(damaged), b"fUzZ")
    except HTTPException as error:
        _refused(error)
        return
    if not edits:
        # What the form said arrives: every text field (as UTF-8), the last file of a name.
        assert form == {n: [v for m, v in fields if m == n] for n, _ in fields} or not fields
        assert read == {name: next(d for n, _, d in files if n == name) for name, _, _ in files}


# -- credentials, path tokens, redaction -----------------------------------------------------

HEX_TOKENS = st.text("0123456789abcdef", min_size=48, max_size=48)
SIGNED_TOKENS = st.lists(st.text("abcdefgh", min_size=1, max_size=8), min_size=1, max_size=40).map(
    lambda channels: mint_signed_token(SECRET_KEY, channels=channels, scope=Scope.READ)
)
TOKENS = HEX_TOKENS | SIGNED_TOKENS
HEADERS = st.one_of(
    s.hostile_texts,
    st.builds(
        "{} {}".format, st.sampled_from(["Basic", "basic", "Bearer", "Digest", ""]), s.hostile_texts
    ),
    st.builds(lambda t: "Basic " + base64.b64encode(t.encode()).decode(), s.hostile_texts),
)


@fuzz(300)
@given(st.none() | HEADERS, st.none() | s.hostile_texts)
@example("Basic \u00e9", None)
def test_credentials(authorization: str | None, x_auth: str | None) -> None:
    environ = {}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    if x_auth is not None:
        environ["HTTP_X_AUTH"] = x_auth
    found = credentials(environ)  # no exception at all
    assert found is None or isinstance(found, str)


@fuzz(300)
@given(
    st.one_of(
        s.hostile_texts,
        st.builds(lambda t: base64.b64encode(t.encode()).decode(), s.hostile_texts),
        st.builds(lambda t: base64.b64encode(t).decode(), st.binary(max_size=64)),
    )
)
@example(" dXNlcjpwYXNz ")
@example("dXNlcjpwYXNz=")
@example("\u00e9")
def test_basic_credentials_decode_as_base64_b64decode_validating_does(value: str) -> None:
    """What the request path decodes with binascii directly is what the standard
    library's validating decoder gives, refusals included."""
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        expected: tuple[str, str] | None = (user, password)
    except ValueError:
        expected = None
    assert _basic_pair(value) == expected


@fuzz(200)
@given(TOKENS, st.sampled_from(["basic", "pypi", "bearer", "x-auth"]))
def test_every_credential_form_gives_the_token(token: str, form: str) -> None:
    environ = {
        "basic": {
            "HTTP_AUTHORIZATION": "Basic "
            + base64.b64encode(f"{token}:x-auth-token".encode()).decode()
        },
        "pypi": {
            "HTTP_AUTHORIZATION": "Basic "
            + base64.b64encode(f"__token__:{token}".encode()).decode()
        },
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {token}"},
        "x-auth": {"HTTP_X_AUTH": token},
    }[form]
    assert credentials(environ) == token


PATH_PIECES = st.sampled_from(
    ["/", "%2F", "%2f", "t", "%74", "T", "team", "simple", "//", "?", "%", "%25", "a"]
)


@fuzz(300)
@given(
    TOKENS,
    st.lists(PATH_PIECES | s.texts, max_size=6).map("".join),
    st.booleans(),
    st.sampled_from(["", "/api/repo"]),
)
def test_path_tokens_leave_no_trace(token: str, rest: str, quote: bool, script: str) -> None:
    from urllib.parse import quote as urlquote
    from urllib.parse import unquote

    segment = urlquote(token, safe="") if quote else token
    uri = f"{script}/t/{segment}/{rest}"
    environ = {
        "PATH_INFO": f"/t/{token}/{rest}",
        "SCRIPT_NAME": script,
        "REQUEST_URI": uri,
        "RAW_URI": uri,
    }
    assume(f"t/{token}" not in rest)  # the same token again later in the path is the client's
    assert cut_path_token(environ) == token
    assert environ["PATH_INFO"] == f"/{rest}"
    for key in ("REQUEST_URI", "RAW_URI"):
        assert f"/t/{token}" not in unquote(environ[key])


BOUNDARIES = st.sampled_from(
    [
        "",
        "/",
        " ",
        "%2F",
        "%2f",
        "%20",
        "%252F",
        "=",
        "?",
        "&",
        '"',
        "'",
        ":",
        "@",
        "\t",
        "(",
        ",",
        ";",
        "<",
        "é",
    ]
)


@fuzz(300)
@given(s.texts, BOUNDARIES, TOKENS, BOUNDARIES, s.texts)
@example("/api/repo/x", "%2F", "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35", "/", "")
def test_redaction(before: str, left: str, token: str, right: str, after: str) -> None:
    # A token is told from its surroundings only where they differ from it: the text
    # before does not end in a hex digit, the text after starts with no token character.
    assume((before + left)[-1:] not in "0123456789abcdef" or left.startswith("%"))
    assume(not (right + after)[:1].isalnum() and (right + after)[:1] not in "._-")
    text = before + left + token + right + after
    redacted = redact_tokens(text)
    assert token not in redacted
    assert redact_tokens(redacted) == redacted


@fuzz(300)
@given(st.one_of(s.hostile_texts, st.builds(str.__add__, s.texts, TOKENS), s.texts,
                 st.text("/tT%2fF574x", max_size=30)))  # fmt: skip
@example("/t/x")
@example("/T//x")
@example("/api/t/x")
@example("/x/%74/y")
@example("%2574%2fx")
@example("x.eJy.z")
@example("ab" * 24)
def test_redaction_skips_only_patterns_that_cannot_match(text: str) -> None:
    # redact_tokens runs a pattern only on text that holds what its matches need (the
    # access log's fast path): the same as running all three, every time.
    every = redaction._LOGGED_PATH_TOKEN.sub("/t/<redacted>", text)
    every = redaction._BARE_TOKEN.sub(redaction._redact_hex, every)
    every = redaction._WORD_RUN.sub(redaction._redact_signed, every)
    assert redact_tokens(text) == every


@fuzz(300)
@given(st.none() | s.hostile_texts | TOKENS | st.builds(str.__add__, s.texts, TOKENS))
def test_request_ids(incoming: str | None) -> None:
    app = AccessLogMiddleware(lambda e, r: [], format="json")
    given_id = app.request_id({} if incoming is None else {"HTTP_X_REQUEST_ID": incoming})
    assert re.fullmatch(r"[A-Za-z0-9._:+/=-]{1,128}", given_id)
    assert redact_tokens(given_id) == given_id


@fuzz(300)
@given(s.hostile_texts)
def test_reason_phrases(sentence: str) -> None:
    phrase = reason_phrase(sentence)
    # RFC 9112: reason-phrase = *( HTAB / SP / VCHAR / obs-text ), on one line.
    assert len(phrase) <= 200 and not re.search(r"[\x00-\x1f\x7f]", phrase)
    phrase.encode("latin-1")


@fuzz(200)
@given(s.hostile_texts | st.builds(str.__add__, TOKENS, s.texts.filter(bool)) | SIGNED_TOKENS)
def test_token_verification(secret: str) -> None:
    """Only a token this server made or signed is a token; anything else is None."""
    storage = MemoryStorage()
    signed = TokenStore(storage, secret_key=SECRET_KEY).verify(secret)
    assert TokenStore(storage).verify(secret) is None
    minted = only(Exception, lambda: URLSafeSerializer(SECRET_KEY, salt=SIGNED_SALT).loads(secret))
    # itsdangerous decodes base64 leniently ("<token>:\r" loads): one spelling only.
    canonical = set(secret) <= set(string.ascii_letters + string.digits + "-_.")
    assert (signed is not None) == (minted is not None and canonical)


# -- negotiation ---------------------------------------------------------------------------

MEDIA = st.sampled_from(
    [
        *MEDIA_TYPES,
        "application/vnd.pypi.simple.latest+json",
        "text/*",
        "*/*",
        "application/json",
        "*",
        "text/html;level=1",
    ]
)
QUALITIES = st.sampled_from(["", ";q=0", ";q=0.5", ";q=1", ";q=1.0", ";q=x", ";q=-1", ";q=2"])


@fuzz(300)
@given(
    st.none()
    | s.hostile_texts
    | st.lists(st.builds(str.__add__, MEDIA, QUALITIES), max_size=5).map(", ".join)
)
def test_negotiation(accept: str | None) -> None:
    assert negotiate.__wrapped__(accept) in (*MEDIA_TYPES, None)


# -- configuration, durations, sizes ---------------------------------------------------------

SETTINGS = [f.name for f in dataclasses.fields(Config)]
TOML_VALUES = st.one_of(
    st.sampled_from(
        [
            "inf",
            "-inf",
            "nan",
            "1e400",
            "0",
            "-1",
            "11",
            "true",
            '""',
            "[]",
            "{}",
            '"500m"',
            '"/api/repo"',
            '["docs", "t"]',
            "1979-05-27",
            "[[1]]",
            "0x10",
        ]
    ),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats().map(lambda f: repr(f).replace("inf", "inf").replace("nan", "nan")),
    s.texts.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
)


@fuzz(300)
@given(
    values=st.dictionaries(st.sampled_from(SETTINGS), TOML_VALUES, max_size=4),
    table=st.booleans(),
    env=st.dictionaries(st.sampled_from(SETTINGS), s.hostile_texts, max_size=3),
)
def test_configuration(
    values: dict[str, str],
    table: bool,
    env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("config") / "c.toml"
    text = "".join(f"{k} = {v}\n" for k, v in values.items())
    path.write_text(("[private-channels]\n" if table else "") + text)
    environ = {f"PRIVATE_CHANNELS_{k.upper()}": v.replace("\x00", "") for k, v in env.items()}
    only(ConfigError, load_config, environ, path=path)


@fuzz(200)
@given(data=st.binary(max_size=300))
def test_configuration_files_of_any_bytes(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path: Path = tmp_path_factory.mktemp("config") / "c.toml"
    path.write_bytes(data)
    only(ConfigError, load_config, {}, path=path)


DURATIONS = st.builds(str.__add__, s.digits(), st.sampled_from([*"smhdwx", "", " "]))


@fuzz(300)
@given(s.hostile_texts | DURATIONS)
def test_durations(text: str) -> None:
    seconds = only(ValueError, parse_duration, text)
    if seconds is not None:
        assert 0 < seconds <= 10 * 366 * 86400


@fuzz(300)
@given(
    s.hostile_texts
    | st.builds(str.__add__, s.digits(), st.sampled_from(["", "k", "MiB", "g"]))
    | st.integers()
)
def test_sizes(text: str | int) -> None:
    size = only(ValueError, parse_size, text)
    if size is not None:
        assert size > 0


# -- admin targets ---------------------------------------------------------------------------


@fuzz(300)
@given(
    PYTHON_FILENAMES
    | s.hostile_texts
    | st.builds("{}=={}".format, s.texts, s.texts)
    | s.digits().map(lambda d: f"demo=={d}")
)
def test_admin_targets(text: str) -> None:
    storage = MemoryStorage()
    channel = ChannelRegistry(storage).create("team")
    target = only(ValueError, find_target, ecosystems(storage), channel, text)
    if target is not None:
        assert target.filename or target.version
        assert "/" not in (target.filename or "") and "\\" not in (target.filename or "")
    only(InvalidTargetError, parse_target, text)


# -- the Linux binary a User-Agent chooses ---------------------------------------------------

AGENTS = st.one_of(
    s.hostile_texts,
    st.builds(
        "R/{0} R ({0} {1} x86_64 linux-gnu)".format,
        st.sampled_from(["4.3.1", "4.3.0", "4.2.2", "4.3", "44.3.1", "4.3.1-devel"]),
        st.sampled_from(["x86_64-pc-linux-gnu", "aarch64-unknown-linux-gnu", ""]),
    ),
    st.builds(str.__add__, st.just("R (1.1."), s.digits()),
)


@pytest.fixture(scope="module")
def linux_server() -> Server:
    """A public channel with abc 1.0 as a source and as a Linux binary for R 4.3 on
    x86_64 (bookworm)."""
    server = Server()
    forms = [
        ([("filetype", "cran_source_package")], source_package()),
        (
            [("filetype", "cran_binary_package"), ("distribution", "bookworm")],
            source_package(Built=s.LINUX_BUILT),
        ),
    ]
    for fields, data in forms:
        body, content_type = multipart(fields, [("content", "abc_1.0.tar.gz", data)])
        headers = {"X-Auth": server.tokens["write"], "Content-Type": content_type}
        server.app.post(f"{PREFIX}/open", body, headers=headers, status=200)
    return server


# The first "R (...)" of an agent decides, as R's HTTPUserAgent option writes it.
_FIRST_R = re.compile(r"\bR \(([0-9]{1,3}\.[0-9]{1,3})\.[0-9]\S* (\S+) \S+ \S+\)")


@fuzz(200)
@given(AGENTS)
@example("R/4.3.1 R (4.3.1 x86_64-pc-linux-gnu x86_64 linux-gnu)")
@example("R (1.1." + "1" * 32768)
def test_user_agents(linux_server: Server, agent: str) -> None:
    """Any User-Agent downloads the binary built for the R and platform it names, or
    the source; nothing else, and never an error."""
    url = f"{PREFIX}/open/__linux__/bookworm/src/contrib/abc_1.0.tar.gz"
    environ = {"HTTP_USER_AGENT": agent.encode("utf-8").decode("latin-1")}
    response = linux_server.app.get(url, extra_environ=environ, status=200)
    with tarfile.open(fileobj=io.BytesIO(response.body)) as archive:
        description = archive.extractfile("abc/DESCRIPTION")
        assert description is not None
        binary = b"Built:" in description.read()
    match = _FIRST_R.search(environ["HTTP_USER_AGENT"])
    named = match is not None and match.groups() == ("4.3", "x86_64-pc-linux-gnu")
    assert binary == (named and len(environ["HTTP_USER_AGENT"]) <= 512)
