"""The one owner of the upload URL: authorization first, one bounded parse, one dispatch."""

from __future__ import annotations

import io
import itertools
import tempfile
import tracemalloc
from typing import Any

import pytest
import webtest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.sansio.multipart import Epilogue, MultipartDecoder, NeedData
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Response

from private_channels import ChannelRegistry, MemoryStorage, Scope, TokenStore, make_app
from private_channels.app import ReadPath
from private_channels.auth import TokenAuthMiddleware
from private_channels.core.ecosystem import Upload
from private_channels.core.limits import Limits
from private_channels.core.upload import (
    _DECODER_PATTERNS,
    MEMORY_SPOOL,
    UploadMiddleware,
    _Decoder,
    parse_upload_form,
)
from private_channels.failures import FailureMiddleware
from private_channels.health import HealthMiddleware
from private_channels.pypi.simple import SimpleIndexMiddleware
from private_channels.routing import ChannelMiddleware
from private_channels.web import PagesMiddleware

from .fuzz import fuzz
from .support import mounted

PREFIX = "/api/repo"
MULTIPART = "multipart/form-data; boundary=b"


class Recorder:
    """An ecosystem that claims ``filetype=rec`` and keeps what it was handed."""

    name, upload_forms, targets = "rec", ("'filetype=rec' (a test)",), ()

    def __init__(self) -> None:
        self.uploads: list[Upload] = []

    def claims(self, form: Any) -> bool:
        return form.get("filetype") == "rec"

    def upload(self, upload: Upload) -> Response:
        self.uploads.append(upload)
        sizes = {name: len(f.stream.read()) for name, f in upload.files.items(multi=True)}
        return Response(repr(sorted(sizes.items())), status=200)


@pytest.fixture
def setup() -> tuple[webtest.TestApp, Recorder, str, str]:
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    tokens = TokenStore(storage)
    write, _ = tokens.create(channels=["team"], scope=Scope.WRITE)
    read, _ = tokens.create(channels=["team"], scope=Scope.READ)
    recorder = Recorder()
    limits = Limits(max_upload_size=10_000, max_form_text=1_000, max_form_parts=5)

    def passed_on(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("204 No Content", [])
        return [b""]

    inner = UploadMiddleware(passed_on, [recorder], limits=limits)  # type: ignore[list-item]
    app = TokenAuthMiddleware(ChannelMiddleware(inner, ChannelRegistry(storage)), tokens)
    return webtest.TestApp(mounted(app, PREFIX)), recorder, write, read


def post(app: webtest.TestApp, token: str, fields: list[tuple[str, str]], files=(), status=200):  # type: ignore[no-untyped-def]
    return app.post(
        f"{PREFIX}/team",
        fields,
        upload_files=list(files),
        content_type="multipart/form-data",
        headers={"X-Auth": token},
        status=status,
    )


def test_the_claimed_form_reaches_its_handler_once_parsed(setup) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    answer = post(app, write, [("filetype", "rec"), ("x", "1")], [("content", "f.bin", b"abc")])
    assert answer.text == "[('content', 3)]"
    (upload,) = recorder.uploads
    assert upload.form.getlist("x") == ["1"] and upload.channel.name == "team"
    # Every spooled file is closed once the response is made.
    assert upload.files["content"].stream.closed


def test_both_channel_urls_and_nothing_else(setup) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    app.post(
        f"{PREFIX}/team/",
        {"filetype": "rec"},
        content_type="multipart/form-data",
        headers={"X-Auth": write},
        status=200,
    )
    app.post(f"{PREFIX}/team/simple/", {"filetype": "rec"}, headers={"X-Auth": write}, status=204)
    app.get(f"{PREFIX}/team", headers={"X-Auth": write}, status=204)
    assert len(recorder.uploads) == 1


def test_write_is_checked_before_the_body_is_read(setup) -> None:  # type: ignore[no-untyped-def]
    app, recorder, _, read = setup
    post(app, read, [("filetype", "rec")], status=403)
    app.post(f"{PREFIX}/team", {"filetype": "rec"}, status=401)
    assert recorder.uploads == []


@pytest.mark.parametrize(
    ("fields", "files", "status", "words"),
    [
        # A text field over its bound is a 400 naming that bound, not the file's 413.
        ([("filetype", "rec"), ("description", "x" * 2_000)], [], 400, "1000 bytes in all"),
        ([("filetype", "rec")] + [(f"f{i}", "1") for i in range(5)], [], 400, "more than 5 parts"),
        ([("filetype", "rec")], [("content", "f.bin", b"x" * 20_000)], 413, "limit of 10000"),
        (
            [("filetype", "rec")],
            [("a", "a.bin", b"x" * 6_000), ("b", "b.bin", b"x" * 6_000)],
            413,
            "limit of 10000",
        ),
        ([("filetype", "other")], [], 400, "neither 'filetype=rec' (a test)"),
        ([], [], 400, "neither"),
    ],
)
def test_bounds_and_unclaimed_forms(setup, fields, files, status, words) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    answer = post(app, write, fields, files, status=status)
    assert words in answer.text and words in answer.status
    assert recorder.uploads == []


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"filetype=rec", "application/x-www-form-urlencoded", "not a multipart/form-data"),
        (b"--b\r\n", "multipart/form-data", "not a multipart/form-data"),  # no boundary
        (b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1", MULTIPART, "not a valid"),
        (b"garbage without any boundary", MULTIPART, "not a valid"),
        (b"--b\r\n" + b"X-Long: " + b"h" * 200_000, MULTIPART, "headers longer"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_forms(setup, body: bytes, content_type: str, words: str) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    answer = app.post(
        f"{PREFIX}/team",
        body,
        headers={"X-Auth": write, "Content-Type": content_type},
        status=400,
    )
    assert words in answer.text
    assert recorder.uploads == []


def raw_post(app: webtest.TestApp, token: str, body: bytes, length: int) -> tuple[str, bytes]:
    """POST ``body`` with a declared ``length`` that need not be its own."""
    environ = EnvironBuilder(
        path=f"{PREFIX}/team", method="POST", headers={"X-Auth": token}
    ).get_environ()
    environ.update(
        {
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(length),
            # Set here: EnvironBuilder makes up a boundary of its own for multipart.
            "CONTENT_TYPE": "multipart/form-data; boundary=b",
        }
    )
    iterable, status, _ = run_wsgi_app(app.app, environ)
    return status, b"".join(iterable)


def test_a_body_that_ends_early_is_a_400(setup) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    body = b'--b\r\nContent-Disposition: form-data; name="filetype"\r\n\r\nrec\r\n--b--\r\n'
    status, text = raw_post(app, write, body[:-10], len(body))
    assert status.startswith("400 ") and b"ended before its declared length" in text
    assert recorder.uploads == []


def test_a_huge_text_field_costs_no_memory() -> None:
    """The default bounds: a 20 MB text field is refused with a 400 that names the text
    bound, without the server holding it."""
    storage = MemoryStorage()
    ChannelRegistry(storage).create("team")
    token, _ = TokenStore(storage).create(channels=["team"], scope=Scope.WRITE)
    app = webtest.TestApp(mounted(make_app(storage), PREFIX))
    body = (  # an upload form as twine sends it, with a description of 20 MB
        b'--b\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        b'--b\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
        + b"x" * (20 * 1024 * 1024)
        + b"\r\n--b--\r\n"
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        status, text = raw_post(app, token, body, len(body))
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert status.startswith("400 ")
    assert f"{Limits().max_form_text} bytes in all".encode() in text
    # The test's own 20 MB body is allocated before tracing; the server adds its bound.
    assert peak < Limits().max_form_text + 2 * 1024 * 1024, peak


def test_an_upload_passes_through_seven_layers_to_its_handler() -> None:
    """From the outside: failures, the read path (which sends reads of indexes and files
    elsewhere), health, the pages (which hand P/-/api/ to the API and pass on what is not
    theirs after a look at the path), token authentication, channel routing, the upload
    owner; no ecosystem's middleware sits between the router and the upload owner (before
    the core, an R upload passed six)."""
    app = make_app(MemoryStorage())
    layers = []
    while not isinstance(app, UploadMiddleware):
        layers.append(type(app))
        app = app.app  # type: ignore[attr-defined]
    assert layers == [
        FailureMiddleware,
        ReadPath,
        HealthMiddleware,
        PagesMiddleware,
        TokenAuthMiddleware,
        ChannelMiddleware,
    ]


def test_a_read_passes_through_the_token_and_channel_layers_to_the_read_sides() -> None:
    read_path = make_app(MemoryStorage()).app  # type: ignore[attr-defined]
    assert isinstance(read_path, ReadPath)
    app = read_path.read
    layers = []
    while not isinstance(app, SimpleIndexMiddleware):
        layers.append(type(app))
        app = app.app  # type: ignore[attr-defined]
    assert layers == [TokenAuthMiddleware, ChannelMiddleware]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_form_another_site_makes_a_browser_post_is_refused(setup, headers) -> None:  # type: ignore[no-untyped-def]
    """A browser that holds Basic credentials for this host sends them with any form a
    page of another site posts: uploads refuse such requests before reading them."""
    app, recorder, write, _ = setup
    answer = app.post(
        f"{PREFIX}/team",
        {"filetype": "rec"},
        content_type="multipart/form-data",
        headers={"X-Auth": write, **headers},
        status=403,
    )
    assert "another site" in answer.text
    assert recorder.uploads == []


def test_same_site_browsers_and_clients_without_origin_upload(setup) -> None:  # type: ignore[no-untyped-def]
    app, recorder, write, _ = setup
    for headers in ({}, {"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}):
        app.post(
            f"{PREFIX}/team",
            {"filetype": "rec"},
            content_type="multipart/form-data",
            headers={"X-Auth": write, **headers},
            status=200,
        )
    assert len(recorder.uploads) == 3


def test_file_parts_are_spooled_in_memory_up_to_a_bound_in_all() -> None:
    """Small uploads never touch the disk before the store; many or large file parts
    together never hold more than MEMORY_SPOOL bytes in memory."""
    parts = [(f"f{i}", f"f{i}.bin", bytes([i]) * 400_000) for i in range(6)]
    body = (
        b"".join(
            f'--b\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, filename, data in parts
        )
        + b"--b--\r\n"
    )
    environ = EnvironBuilder(
        method="POST", input_stream=io.BytesIO(body),
        content_type="multipart/form-data; boundary=b", content_length=len(body),
    ).get_environ()  # fmt: skip
    with parse_upload_form(environ, b"b", Limits()) as (_, files):
        spools = [files[name].stream for name, _, _ in parts]
        assert [files[name].read() for name, _, _ in parts] == [data for _, _, data in parts]
    in_memory = sum(
        size
        for spool, (_, _, data) in zip(spools, parts, strict=True)
        for size in [len(data)]
        if isinstance(spool, tempfile.SpooledTemporaryFile) and not spool._rolled
    )
    assert 0 < in_memory <= MEMORY_SPOOL
    assert all(spool.closed for spool in spools)


# -- the decoder: werkzeug's, without a pattern compiled for each boundary -----------------

BOUNDARY = b"a1-b2"
PIECES = [
    b"--" + BOUNDARY, b"--" + BOUNDARY + b"--", BOUNDARY, b"--", b"-", b"\r\n", b"\n", b"\r",
    b" ", b"\t", b"x", b"\r\n\r\n", b'Content-Disposition: form-data; name="f"',
    b'Content-Disposition: form-data; name="c"; filename="c.whl"', b"--a1-b", b"a1-b2--",
    b"Content-Type: text/plain; charset=latin-1", b"\r\n\tcontinued", b"\xff\xfe",
    b"Content-Disposition: form-data; name=plain; filename*=UTF-8''%C3%A9.whl",
]  # fmt: skip


def _events(decoder: MultipartDecoder, chunks: list[bytes]) -> list[object]:
    seen: list[object] = []
    try:
        for chunk in [*chunks, None]:
            decoder.receive_data(chunk)
            while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
                seen.append(event)
            seen.append(event)
            if isinstance(event, Epilogue):
                break
    except Exception as error:  # which error: compared below
        seen.append(type(error))
    return seen


_SLOT = st.lists(st.sampled_from(PIECES), max_size=8).map(b"".join)


@st.composite
def _form(draw: st.DrawFn) -> bytes:
    """A form of two parts with pieces put in at every place: mostly almost valid."""
    skeleton = [b"--a1-b2", b"\r\n", PIECES[12], b"\r\n\r\n", b"value", b"\r\n--a1-b2",
                b"\r\n", PIECES[13], b"\r\n\r\n", b"data", b"\r\n--a1-b2--", b"\r\n"]  # fmt: skip
    return b"".join(draw(_SLOT) + piece for piece in skeleton) + draw(_SLOT)


@fuzz(400)
@given(body=_form() | st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))  # fmt: skip
def test_the_decoder_finds_what_werkzeugs_finds(body: bytes, cuts: list[int]) -> None:
    """The same events (or error) as werkzeug's own decoder, for any body cut anywhere."""
    data = body
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert _events(_Decoder(BOUNDARY, 10_000), chunks) == _events(
        MultipartDecoder(BOUNDARY, 10_000), chunks
    )


def test_an_honest_body_compiles_no_pattern() -> None:
    """A body as clients make them never needs the compiled pattern; one that holds its
    own boundary where none may be is parsed by werkzeug's pattern, compiled then."""
    honest = (
        b"--a1-b2\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n"
        b"--a1-b2\r\nContent-Disposition: form-data; name=\"c\"; filename=\"c.whl\"\r\n\r\n"
        + b"data--a1-b" * 1000 + b"\r\n--a1-b2--\r\n"
    )  # fmt: skip
    assert _DECODER_PATTERNS  # this werkzeug's decoder has the patterns _Decoder replaces
    for size in (1, 7, 64, 1 << 16):
        decoder = _Decoder(BOUNDARY, 1 << 20)
        chunks = [honest[i : i + size] for i in range(0, len(honest), size)]
        assert isinstance(_events(decoder, chunks)[-1], Epilogue)
        assert decoder.preamble_re._compiled is None  # type: ignore[attr-defined]
        assert decoder.boundary_re._compiled is None  # type: ignore[attr-defined]
    hostile = honest.replace(b"data--a1-b" * 1000, b"x--a1-b2x" * 3)
    decoder = _Decoder(BOUNDARY, 1 << 20)
    assert _events(decoder, [hostile]) == _events(MultipartDecoder(BOUNDARY, 1 << 20), [hostile])
    assert decoder.boundary_re._compiled is not None  # type: ignore[attr-defined]


def test_part_headers_are_kept_within_bounds() -> None:
    """What werkzeug makes of a part's header block is kept for blocks of up to 1 KiB,
    512 of them: any number of distinct or long blocks costs no more memory."""
    from private_channels.core.upload import _kept_part_head

    _kept_part_head.cache_clear()
    for i in range(600):
        body = (
            f'--a1-b2\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'
            f'--a1-b2\r\nContent-Disposition: form-data; name="{"n" * 2000}"\r\n\r\nv\r\n'
            "--a1-b2--\r\n"
        ).encode()
        events = _events(_Decoder(BOUNDARY, 1 << 20), [body])
        assert [event.name for event in events[1:4:2]] == [f"f{i}", "n" * 2000]  # type: ignore[attr-defined]
    info = _kept_part_head.cache_info()
    assert info.currsize == 512 and info.misses == 600  # the long blocks were never kept
    _events(_Decoder(BOUNDARY, 1 << 20), [body])
    assert _kept_part_head.cache_info().hits == info.hits + 1


def test_text_fields_are_decoded_by_their_declared_charset_from_a_safe_list() -> None:
    def part(value: bytes, content_type: str | None) -> bytes:
        head = b'--a1-b2\r\nContent-Disposition: form-data; name="f"\r\n'
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n".encode()
        return head + b"\r\n" + value + b"\r\n"

    cases = [
        (b"caf\xc3\xa9", None, "café"),
        (b"caf\xe9", "text/plain; charset=iso-8859-1", "café"),
        (b"caf\xe9", "text/plain; charset=ISO-8859-1", "café"),
        (b"caf\xe9", "text/plain", "caf\ufffd"),  # UTF-8 unless declared
        (b"caf\xe9", "text/plain; charset=cp1252", "caf\ufffd"),  # not on the list
    ]
    body = b"".join(part(value, kind) for value, kind, _ in cases) + b"--a1-b2--\r\n"
    environ = EnvironBuilder(method="POST", input_stream=io.BytesIO(body),
                             content_length=len(body)).get_environ()  # fmt: skip
    with parse_upload_form(environ, BOUNDARY, Limits()) as (form, _):
        assert form.getlist("f") == [text for _, _, text in cases]
