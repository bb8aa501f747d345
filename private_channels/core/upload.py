"""The one owner of the upload URL, ``POST P/<CHANNEL>`` (trailing ``/`` accepted).

::

    app = UploadMiddleware(app, [python, cran], limits=Limits())

    $ twine upload --repository-url https://host/api/repo/team -u __token__ -p TOKEN dist/*
    $ curl -F filetype=cran_source_package -F content=@abc_2.1.tar.gz \\
           -H "X-Auth: TOKEN" https://host/api/repo/team

twine, ``uv publish`` and curl all post a multipart form to the channel itself, and
``wsgi.input`` can be read only once, so this middleware alone reads it: it authorizes
write access before reading a byte, parses the body once (streaming, files spooled to
anonymous temporary files, bounded in file bytes, in the bytes of all text fields
together and in the number of parts), hands the form to the one ecosystem that claims
it (:meth:`~.ecosystem.Ecosystem.claims`) and closes every spooled file afterwards.
A form no ecosystem claims gets a 400 naming the forms this server accepts.  Every
other request passes on untouched.
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING

from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio import multipart
from werkzeug.sansio.multipart import (
    LINE_BREAK,
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)
from werkzeug.wsgi import get_input_stream

from ..auth import authorize, refuse_other_sites
from ..errors import http_error
from ..routing import current_channel
from ..tokens import Scope
from .ecosystem import Upload
from .limits import Limits

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.sansio.multipart import Event

    from .ecosystem import Ecosystem

__all__ = ["UploadMiddleware", "is_upload", "parse_upload_form"]

READ_SIZE = 64 * 1024
#: The file parts of one upload are spooled in memory up to this many bytes in all, then
#: to anonymous temporary files: a small wheel never touches the disk before the store.
MEMORY_SPOOL = 1024 * 1024


def is_upload(environ: WSGIEnvironment) -> bool:
    """A POST to the channel itself (``P/<CHANNEL>`` or ``P/<CHANNEL>/``)."""
    return environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "") in ("", "/")


class UploadMiddleware:
    """Serve posts to the channel URL through the ecosystem whose form they carry."""

    def __init__(
        self,
        app: WSGIApplication,
        ecosystems: Sequence[Ecosystem],
        *,
        limits: Limits | None = None,
    ) -> None:
        self.app = app
        self.ecosystems = tuple(ecosystems)
        self.limits = limits or Limits()
        forms = [form for ecosystem in self.ecosystems for form in ecosystem.upload_forms]
        self.accepted = " nor ".join(forms)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not is_upload(environ):
            return self.app(environ, start_response)
        try:
            response: WSGIApplication = self.upload(environ)
        except HTTPException as error:
            response = error
        return response(environ, start_response)

    def upload(self, environ: WSGIEnvironment) -> WSGIApplication:
        channel = current_channel(environ)
        # Before the body is read: nobody without write access makes the server spool,
        # and no other site's page makes a browser that holds credentials upload.
        token = authorize(environ, channel, Scope.WRITE)
        refuse_other_sites(environ)
        content_type, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
        boundary = options.get("boundary", "").encode("latin-1", "replace")
        if content_type != "multipart/form-data" or not boundary:
            raise self._unclaimed("The upload is not a multipart/form-data body, so it")
        with parse_upload_form(environ, boundary, self.limits) as (form, files):
            for ecosystem in self.ecosystems:
                if ecosystem.claims(form):
                    return ecosystem.upload(Upload(channel, token, form, files, self.limits))
            raise self._unclaimed("The upload form")

    def _unclaimed(self, what: str) -> HTTPException:
        return http_error(400, f"{what} has neither {self.accepted}.")


@contextlib.contextmanager
def parse_upload_form(
    environ: WSGIEnvironment, boundary: bytes, limits: Limits
) -> Iterator[tuple[MultiDict[str, str], MultiDict[str, FileStorage]]]:
    """Parse the request's multipart body once, within ``limits``; close its files after.

    Raises 413 past ``limits.max_upload_size`` bytes of files, 400 past the bounds on
    text fields and parts, for a body that is not a multipart form, and for one that
    ends before its declared length.
    """
    files: MultiDict[str, FileStorage] = MultiDict()
    try:
        form = _parse(environ, boundary, limits, files)
        yield form, files
    finally:
        for _, upload in files.items(multi=True):
            with contextlib.suppress(Exception):
                upload.close()


def _parse(
    environ: WSGIEnvironment,
    boundary: bytes,
    limits: Limits,
    files: MultiDict[str, FileStorage],
) -> MultiDict[str, str]:
    # The decoder's own bound is on what it buffers: a preamble or part headers that
    # never end (file data passes through in chunks of READ_SIZE).
    decoder = (_Decoder if _DECODER_PATTERNS else MultipartDecoder)(
        boundary, limits.max_part_header + READ_SIZE
    )
    stream = get_input_stream(environ, max_content_length=None)
    fields: MultiDict[str, str] = MultiDict()
    text = bytearray()
    spool: IO[bytes] | None = None
    part: Field | File | None = None
    parts = text_bytes = file_bytes = 0
    try:
        while True:
            chunk = stream.read(READ_SIZE)
            decoder.receive_data(chunk or None)
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData | Epilogue):
                    break
                if isinstance(event, Field | File):
                    parts += 1
                    if parts > limits.max_form_parts:
                        raise http_error(
                            400, f"The upload form has more than {limits.max_form_parts} parts."
                        )
                    part = event
                    if isinstance(event, File):
                        spool = _spool(MEMORY_SPOOL - file_bytes)
                        files.add(
                            event.name,
                            FileStorage(spool, event.filename, event.name, headers=event.headers),
                        )
                elif isinstance(event, Data):
                    if isinstance(part, File):
                        assert spool is not None
                        file_bytes += len(event.data)
                        if file_bytes > limits.max_upload_size:
                            raise http_error(
                                413,
                                "The upload is larger than this server's limit of "
                                f"{limits.max_upload_size} bytes.",
                            )
                        spool.write(event.data)
                        if not event.more_data:
                            spool.seek(0)
                    else:
                        text_bytes += len(event.data)
                        if text_bytes > limits.max_form_text:
                            raise http_error(
                                400,
                                "The upload form's text fields hold more than "
                                f"{limits.max_form_text} bytes in all; shorten the description.",
                            )
                        text += event.data
                        if not event.more_data:
                            assert part is not None
                            fields.add(part.name, _decode(text, part.headers))
                            text.clear()
            if isinstance(event, Epilogue) or not chunk:
                break
    except ClientDisconnected:
        raise http_error(
            400, "The upload ended before its declared length; send it again."
        ) from None
    except RequestEntityTooLarge:
        raise http_error(
            400, f"The upload form has part headers longer than {limits.max_part_header} bytes."
        ) from None
    except ValueError:
        raise http_error(400, "The upload body is not a valid multipart form.") from None
    if not decoder.complete or not isinstance(event, Epilogue):
        raise http_error(400, "The upload body is not a valid multipart form.")
    return fields


class _Decoder(MultipartDecoder):
    """werkzeug's decoder without its two patterns compiled for each boundary.

    It compiles a pattern that finds the boundary line (``--BOUNDARY`` after a line
    break, then ``--`` or the end of the line) for every decoder: two ``re.compile``
    calls, a tenth of a small upload's time, and every client makes up a new boundary
    for every request.  Here both are :class:`_BoundaryLine`: ``bytes.find`` for the
    boundary and one pattern compiled once for what follows it.  The decoder is
    werkzeug's own otherwise (its patterns for the placeholder boundary come from the
    ``re`` module's cache), but for what it makes of a part's headers, which is kept
    (see :meth:`next_event`).
    """

    def __init__(self, boundary: bytes, max_form_memory_size: int) -> None:
        super().__init__(b"-", max_form_memory_size)
        self.boundary = boundary
        self.preamble_re = _BoundaryLine(boundary, preamble=True)  # type: ignore[assignment]
        self.boundary_re = _BoundaryLine(boundary, preamble=False)  # type: ignore[assignment]

    def next_event(self) -> Event:
        # A part's headers: werkzeug parses them, and then their Content-Disposition,
        # for every part (a fifth of a small upload's parse).  A twine form sends the
        # same header block for each of its ten text fields upload after upload, so
        # what werkzeug makes of a block is kept (_part_head); the rest of the step is
        # werkzeug's, as it has it.
        if self.state is not multipart.State.PART:
            return super().next_event()
        match = multipart.BLANK_LINE_RE.search(self.buffer, self._search_position)
        if match is None:
            return super().next_event()
        items, name, filename = _part_head(bytes(self.buffer[: match.start()]))
        del self.buffer[: (match.start() + match.end()) // 2]  # after the first line break
        event: Event
        if filename is not None:
            event = File(filename=filename, headers=Headers(items), name=name)
        else:
            event = Field(headers=Headers(items), name=name)
        self.state = multipart.State.DATA_START
        self._search_position = 0
        self._parts_decoded += 1
        if self.max_parts is not None and self._parts_decoded > self.max_parts:
            raise RequestEntityTooLarge()
        return event


def _part_head(block: bytes) -> tuple[tuple[tuple[str, str], ...], str, str | None]:
    """What werkzeug's decoder makes of a part's header block: the headers, and the name
    and file name from their Content-Disposition (``ValueError`` without one)."""
    return _kept_part_head(block) if len(block) <= _KEPT_HEAD else _parse_part_head(block)


def _parse_part_head(block: bytes) -> tuple[tuple[tuple[str, str], ...], str, str | None]:
    headers = _HEAD_PARSER._parse_headers(block)
    if "content-disposition" not in headers:
        raise ValueError("Missing Content-Disposition header")
    _, extra = parse_options_header(headers["content-disposition"])
    return tuple(headers.items()), extra.get("name"), extra.get("filename")  # type: ignore[return-value]


# Blocks of at most 1 KiB, 512 of them (a few hundred KiB at most, whatever is sent).
_KEPT_HEAD = 1024
_kept_part_head = functools.lru_cache(maxsize=512)(_parse_part_head)
# werkzeug's _parse_headers reads nothing of its decoder: any one will do.
_HEAD_PARSER = MultipartDecoder(b"-")


# What _Decoder replaces or steps, where this werkzeug has it (else its own decoder).
_DECODER_PATTERNS = {
    "preamble_re", "boundary_re", "_search_position", "_parts_decoded", "max_parts"
} <= set(vars(MultipartDecoder(b"-"))) and all(
    hasattr(multipart, name) for name in ("BLANK_LINE_RE", "State")
) and hasattr(MultipartDecoder, "_parse_headers")  # fmt: skip

# What follows the boundary on its line, as werkzeug's patterns have it: "--" (the
# last boundary) and blanks up to an optional line break, or blanks and a line break.
_AFTER_BOUNDARY = re.compile(rb"(--[^\S\n\r]*%s?|[^\S\n\r]*%s)" % (LINE_BREAK, LINE_BREAK))


class _BoundaryMatch:
    """What werkzeug asks of a match: where it starts and ends, and what followed."""

    __slots__ = ("_after", "_end", "_start")

    def __init__(self, start: int, end: int, after: bytes) -> None:
        self._start, self._end, self._after = start, end, after

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        assert index == 1
        return self._after


class _BoundaryLine:
    """``search`` as werkzeug's compiled pattern for one boundary, without compiling it.

    A match holds ``--BOUNDARY``, so it is at the first place ``bytes.find`` finds that
    (from ``pos``), or nowhere when that place fails and there is no later one.  When
    it fails and there is a later one (a body that holds its own boundary where no
    honest client puts it), werkzeug's pattern is compiled and asked from then on, so
    a hostile body costs what it costs werkzeug.
    """

    __slots__ = ("_compiled", "_needle", "_preamble", "boundary")

    def __init__(self, boundary: bytes, *, preamble: bool) -> None:
        self.boundary = boundary
        self._needle = b"--" + boundary
        self._preamble = preamble  # the first boundary need not follow a line break
        self._compiled: re.Pattern[bytes] | None = None

    def search(
        self, data: bytes | bytearray, pos: int = 0
    ) -> _BoundaryMatch | re.Match[bytes] | None:
        if self._compiled is not None:
            return self._compiled.search(data, pos)
        at = data.find(self._needle, pos)
        if at < 0:
            return None
        # werkzeug's line break is \r\n, \n or \r, tried in that order, leftmost first.
        if at - 2 >= pos and data[at - 2 : at] == b"\r\n":
            start = at - 2
        elif at - 1 >= pos and data[at - 1] in b"\r\n":
            start = at - 1
        else:
            start = at
        after = _AFTER_BOUNDARY.match(data, at + len(self._needle))
        if after is not None and (self._preamble or start < at):
            return _BoundaryMatch(start, after.end(), after.group(1))
        if data.find(self._needle, at + 1) < 0:
            return None
        decoder = MultipartDecoder(self.boundary)
        self._compiled = decoder.preamble_re if self._preamble else decoder.boundary_re
        return self._compiled.search(data, pos)


def _spool(memory: int) -> IO[bytes]:
    """A file for one part: in memory up to ``memory`` bytes (then on disk), or on disk."""
    # Never SpooledTemporaryFile(max_size=0), which would stay in memory however large.
    if memory > 0:
        return tempfile.SpooledTemporaryFile(max_size=memory)
    return tempfile.TemporaryFile()


def _decode(data: bytes | bytearray, headers: Headers) -> str:
    # As werkzeug's own parser: a declared charset from a short safe list, else UTF-8.
    # (Not headers.get: a missing header costs it a werkzeug exception, made and caught.)
    content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
    charset = parse_options_header(content_type)[1].get("charset", "") if content_type else ""
    if charset.lower() not in ("ascii", "us-ascii", "utf-8", "iso-8859-1"):
        charset = "utf-8"
    return bytes(data).decode(charset, "replace")
