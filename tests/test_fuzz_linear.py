"""No regular expression, and no parser, costs more than linear time in what a client sends.

Two properties, both measured in CPU time (the least of three runs, so that a loaded
machine does not fail them) on inputs of 1 KiB and 64 KiB: the larger may cost at
most 64 times the smaller plus 20 ms (``tests/fuzz.py``'s :func:`assert_linear`), where
a pattern that backtracks over what it already scanned costs 4,096 times as much.

- Every regular expression in ``private_channels`` is listed in :data:`PATTERNS`, found
  by reading the source (``re.compile``, ``re.fullmatch``... with whatever pattern they
  are given), so that a new one fails :func:`test_every_pattern_is_listed` until it is
  listed here.  Those applied to what a client (or an upstream) sends are timed the way
  the code applies them (``match``, ``search``, ``sub``...) on inputs built to make a
  backtracking engine slow: a prefix and a unit cut from a string the pattern matches,
  the unit pumped to the size, then a tail that fails the match.
- Every parser of client input, and the whole app on a request whose path and headers
  have those sizes, is timed the same way; a field with a length bound is cheap at any
  size, one without costs linear time at most.
"""

from __future__ import annotations

import ast
import importlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

import private_channels
from private_channels import accesslog, channels, config, errors, redaction, tokens
from private_channels.app import ecosystems
from private_channels.auth import credentials
from private_channels.conda import package as conda_package
from private_channels.core import archive, proxy
from private_channels.core import upload as core_upload
from private_channels.core.answers import Answers
from private_channels.core.limits import Limits
from private_channels.core.manage import find_target
from private_channels.core.upload import parse_upload_form
from private_channels.cran import dcf, description, repository, store
from private_channels.cran import manage as cran_manage
from private_channels.cran import upstream as cran_upstream
from private_channels.pypi import links, metadata, simple
from private_channels.pypi.metadata import read_distribution
from private_channels.storage import MemoryStorage, base, s3

from .fuzz import LARGE, PREFIX, SMALL, Server, assert_linear, fuzz, multipart, wheel_bytes

# -- every regular expression -----------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A regular expression of the package, how the code applies it, and to what."""

    regex: re.Pattern[Any]
    methods: tuple[str, ...]  # as the code calls it
    why: str  # where its input comes from, and its bound
    #: What it matches (one string, or several); None: not applied to client input.
    sample: str | bytes | tuple[str, ...] | None = None

    @property
    def samples(self) -> tuple[str | bytes, ...]:
        return (
            ()
            if self.sample is None
            else (self.sample if isinstance(self.sample, tuple) else (self.sample,))
        )

    @property
    def key(self) -> tuple[str | bytes, int]:
        return self.regex.pattern, self.regex.flags


TOKEN = "46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35"
AGENT = "R/4.2.2 R (4.2.2 x86_64-pc-linux-gnu x86_64 linux-gnu)"
SIGNED = (f"x%2F{TOKEN}/y", "/eyJpZCI6.bYi6K-x/", "/.eJw9kE.dT-n7/")
P = Pattern
PATTERNS = [
    P(accesslog._REQUEST_ID, ("match",), "X-Request-ID, bounded to 256 first", "lb-1234.ab"),
    P(channels._NAME, ("match",), "a channel name from the URL", "data-team"),
    P(config._SIZE, ("fullmatch",), "max_upload_size in the configuration"),
    P(config._PREFIX, ("fullmatch",), "prefix in the configuration"),
    P(archive._DIGIT_RUN, ("search",), "pax headers (max_extended_header)", b"9" * 33),
    P(archive._PAX_LENGTH, ("match",), "a pax record of an uploaded tar", b"30 "),
    P(core_upload._AFTER_BOUNDARY, ("match",), "what follows a multipart boundary", b"-- \r\n"),
    P(dcf._FIELD_NAME, ("match",), "DESCRIPTION field names", "Package"),
    P(dcf._FIELD_LINE, ("match",), "each DESCRIPTION line (max_metadata_size)", "Package: abc"),
    P(description._NAME, ("match",), "Package of a DESCRIPTION", "data.table"),
    P(description._VERSION, ("match",), "Version, bounded to 64 first", "1.2-3"),
    P(description._DEPENDENCY, ("match",), "each entry of Depends, Imports...", "R (>= 4.1.0)"),
    P(description._BUILT_R, ("match",), "Built, bounded to MAX_BUILT first", "R 4.3.1"),
    P(description._VERSION_SEPARATOR, ("split",), "a version already valid", "1.2-3"),
    P(description._PLATFORM, ("match",), "Built's platform, a filename's tail", "x86_64-pc"),
    P(repository._INDEX, ("fullmatch",), "the path below a channel",
      "/bin/macosx/big-sur-arm64/contrib/4.3/PACKAGES.rds"),
    P(repository._DOWNLOAD, ("fullmatch",), "the path below a channel",
      "/src/contrib/abc_1.0-1.tar.gz"),
    P(repository._ARCHIVED, ("fullmatch",), "the path below a channel",
      "/src/contrib/Archive/abc/abc_0.9.tar.gz"),
    P(repository._LINUX, ("match",), "the path below a channel", "/__linux__/bookworm/src/"),
    P(repository._R_AGENT, ("search",), "User-Agent, bounded to MAX_AGENT first", AGENT),
    P(store._DIRECTORY, ("fullmatch",), "a directory from the path", "bin/windows/contrib/4.3"),
    P(store._LINUX, ("fullmatch",), "a directory from the path and the agent",
      "linux/bookworm/4.3"),
    P(re.compile(store.DISTRIBUTION_PATTERN), ("fullmatch",), "an upload's distribution",
      "bookworm"),
    P(errors._NOT_IN_REASON, ("sub",), "a sentence, cut to MAX_REASON first", "a\tb\nc"),
    P(metadata._FILENAME, ("match",), "a filename, bounded by max_filename first",
      "demo-1.0-py3-none-any.whl"),
    P(metadata._METADATA["wheel"][0], ("fullmatch",), "member paths of a wheel",
      "demo-1.0.dist-info/METADATA"),
    P(metadata._METADATA["sdist"][0], ("fullmatch",), "member paths of an sdist",
      "demo-1.0/PKG-INFO"),
    P(metadata._BLOCK, ("match",), "METADATA's header block (max_metadata_size)",
      b"Name: demo\n folded\n"),
    P(metadata._FIELD, ("finditer",), "METADATA's header block, in lower case",
      b"\nname: demo\n folded"),
    P(simple._PROJECT_NAME, ("match",), "a project name from the URL", "Demo_Pkg.x"),
    P(simple._SHA256, ("match",), "a digest from the URL", "0a" * 32),
    P(redaction._LOGGED_PATH_TOKEN, ("sub",), "whole paths and log lines",
      f"/api/repo/t/{TOKEN}/team/"),
    P(redaction._BARE_TOKEN, ("sub",), "whole paths and log lines", SIGNED),
    P(redaction._WORD_RUN, ("sub",), "whole paths and log lines", SIGNED),
    P(base._SEGMENT, ("match",), "storage keys built from names in URLs", "demo-1.0.tar.gz"),
    P(base._KEY, ("match",), "storage keys built from names in URLs", "p/demo/demo-1.0.tar.gz"),
    P(re.compile(r"[A-Za-z0-9._+~=,@-]*"), ("fullmatch",), "storage prefixes of the code"),
    P(s3._BUCKET, ("match",), "the bucket of an s3:// storage URL"),
    P(s3._SIZE, ("match",), "a part size in an s3:// storage URL"),
    P(tokens._HEX_TOKEN, ("match",), "a secret, bounded to 4096 first", TOKEN),
    P(tokens.TOKEN_ID, ("match",), "a token id (signed payloads, revoke)", TOKEN[:12]),
    P(tokens._DURATION, ("match",), "an expiry (command line, HTTP API)", "30d"),
    P(cran_manage.FILENAME, ("match",), "an R yank/delete target", "abc_1.0-1.tar.gz"),
    P(cran_upstream._ARCHIVE_FILE, ("fullmatch",), "an upstream's Meta/archive.rds names",
      "abc/abc_0.9.tar.gz"),
    P(cran_upstream._MD5, ("match",), "an upstream's MD5sum", "0a" * 16),
    P(proxy._HEX, ("match",), "an upstream's digest, its length checked first", "0a" * 32),
    P(channels._ALLOWED_NAME, ("match",), "upstream-allow names (command line, HTTP API)",
      "demo-pkg"),
    P(re.compile(r"/t/[^/]+/"), ("search",), "an upstream URL (command line, HTTP API)",
      f"https://h/a/t/{TOKEN}/x"),
    P(re.compile(r"[A-Za-z0-9._-]{1,200}"), ("fullmatch",), "an upstream's project names",
      "demo-pkg"),
    P(re.compile(r"[^A-Z0-9]"), ("sub",), "a channel name, already valid"),
    P(links._TAG_NAME, ("match",), "an upstream's HTML page", "a"),
    P(links._SPACE, ("match",), "an upstream's HTML page", " \t\n"),
    P(links._ATTRIBUTE_NAME, ("match",), "an upstream's HTML page", "data-requires-python"),
    P(links._UNQUOTED, ("match",), "an upstream's HTML page", "../x.whl#sha256=0a"),
    P(conda_package._FILENAME, ("fullmatch",), "a conda filename (bounded parts)",
      "demo-pkg-1.0_rc1-py_0"),
    P(conda_package._VERSION_PART, ("findall",), "a conda version, bounded to 64",
      "1!2.0rc1.post3"),
]  # fmt: skip
CLIENT = [p for p in PATTERNS if p.sample is not None]


def _re_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
        and node.args
    ]


def _evaluate(node: ast.expr, namespace: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<pattern>", "eval"), namespace)  # noqa: S307


def _patterns_in_source() -> set[tuple[str | bytes, int]]:
    """Every pattern the package hands to the ``re`` module, evaluated in its module
    (modules without one are not imported: ``__main__`` runs the command line)."""
    found = set()
    root = Path(private_channels.__file__).parent
    for path in sorted(root.rglob("*.py")):
        calls = _re_calls(ast.parse(path.read_text()))
        if not calls:
            continue
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        namespace = vars(importlib.import_module(name.removesuffix(".__init__")))
        for call in calls:
            flags = call.args[1:2] if call.func.attr == "compile" else []  # type: ignore[attr-defined]
            flags += [k.value for k in call.keywords if k.arg == "flags"]
            compiled = re.compile(
                _evaluate(call.args[0], namespace), _evaluate(flags[0], namespace) if flags else 0
            )
            found.add((compiled.pattern, compiled.flags))
    return found


def test_every_pattern_is_listed() -> None:
    listed = {p.key for p in PATTERNS}
    in_source = _patterns_in_source()
    assert in_source - listed == set(), "patterns in private_channels/ that PATTERNS lacks"
    assert listed - in_source == set(), "patterns listed here that the source no longer has"


def _alphabet(regex: re.Pattern[Any]) -> str:
    source = regex.pattern.decode("latin-1") if isinstance(regex.pattern, bytes) else regex.pattern
    return "".join(sorted(set(source) | set("09aZ /.-_\x00\u00e9")))


def _apply(regex: re.Pattern[Any], method: str) -> Callable[[Any], object]:
    if method == "sub":
        return lambda text: regex.sub("", text)
    if method == "finditer":  # lazy: each match is found as the iterator is read
        return lambda text: list(regex.finditer(text))
    return getattr(regex, method)  # type: ignore[no-any-return]


def _samples(regex: re.Pattern[Any]) -> st.SearchStrategy[Any]:
    """Strings that hold a match of the pattern (Hypothesis writes them from it; not
    for a lookbehind, which it does not write)."""
    source = regex.pattern.decode("latin-1") if isinstance(regex.pattern, bytes) else regex.pattern
    if "(?<" in source.replace("(?P<", ""):
        return st.just(b"" if isinstance(regex.pattern, bytes) else "")
    return st.from_regex(regex)


@st.composite
def pumped(draw: st.DrawFn, regex: re.Pattern[Any]) -> Callable[[int], Any]:
    """``n -> prefix + unit * k + tail``, ``n`` characters long: the prefix and the
    unit cut from a string the pattern matches (or the unit from the pattern's own
    characters), the tail from that string or not, so that the match fails late."""
    binary = isinstance(regex.pattern, bytes)
    sample = draw(_samples(regex))
    sample = sample.decode("latin-1") if binary else sample
    letters = st.sampled_from(_alphabet(regex))
    # Often from the start: a search pumps the beginning of a match (eyJeyJeyJ...).
    start = draw(st.just(0) | st.integers(0, len(sample)))
    end = draw(st.integers(start, min(len(sample), start + 6)))
    prefix = sample[:start]
    unit = sample[start:end] if end > start and draw(st.booleans()) else ""
    unit = unit or draw(st.text(letters, min_size=1, max_size=6))
    tail = draw(st.just(sample[end:]) | st.text(letters, max_size=3))

    def make(n: int) -> Any:
        body = (unit * (n // len(unit) + 1))[: max(n - len(prefix) - len(tail), 1)]
        text = prefix + body + tail
        return text.encode("latin-1", "replace") if binary else text

    return make


@pytest.mark.parametrize("pattern", CLIENT, ids=[repr(p.regex.pattern)[:40] for p in CLIENT])
@fuzz(20)
@given(data=st.data())
def test_client_patterns_are_linear(pattern: Pattern, data: st.DataObject) -> None:
    make = data.draw(pumped(pattern.regex))
    for method in pattern.methods:
        apply = _apply(pattern.regex, method)
        assert_linear(lambda n, m=make, a=apply: lambda: a(m(n)), f"{pattern.why} ({method})")


def _shapes(sample: str | bytes) -> list[tuple[Any, Any, Any]]:
    """(prefix, unit, tail) at every position of ``sample``: each one or three of its
    characters pumped, followed by the rest of it, or by nothing."""
    shapes = set()
    for start in range(len(sample)):
        for length in (1, 3):
            unit = sample[start : start + length]
            for tail in (sample[start + length :], sample[:0]):
                shapes.add((sample[:start], unit, tail))
    return sorted(shapes)


@pytest.mark.parametrize("pattern", CLIENT, ids=[repr(p.regex.pattern)[:40] for p in CLIENT])
def test_client_patterns_are_linear_at_every_position(pattern: Pattern) -> None:
    """A deterministic sweep of each pattern's sample, beside the random shapes above."""
    for method in pattern.methods:
        apply = _apply(pattern.regex, method)
        for prefix, unit, tail in (shape for text in pattern.samples for shape in _shapes(text)):

            def make(n: int, p: Any = prefix, u: Any = unit, t: Any = tail,
                     a: Callable[[Any], object] = apply) -> Callable[[], object]:  # fmt: skip
                text = p + (u * (n // len(u) + 1))[: max(n - len(p) - len(t), 1)] + t
                return lambda: a(text)

            assert_linear(make, f"{pattern.why}: {prefix!r} + {unit!r}... + {tail!r}")


# The shapes that were quadratic before (issue 17), kept as examples whatever is drawn.
KNOWN = [
    (redaction._BARE_TOKEN, "sub", lambda n: "eyJ" * (n // 3)),
    (redaction._BARE_TOKEN, "sub", lambda n: "a" * n),
    (redaction._BARE_TOKEN, "sub", lambda n: ("a" * 47 + "%2F") * (n // 50)),
    (repository._R_AGENT, "search", lambda n: "R (1.1." + "1" * n),
    (repository._R_AGENT, "search", lambda n: "R (1.1.1 " * (n // 9)),
    (description._BUILT_R, "match", lambda n: "R 1." + "1" * n),
    (redaction._LOGGED_PATH_TOKEN, "sub", lambda n: "/t" + "%2f" * (n // 3) + "?"),
    (redaction._LOGGED_PATH_TOKEN, "sub", lambda n: "%2525" * (n // 5)),
    (repository._DOWNLOAD, "fullmatch", lambda n: "/src/contrib/a" + "." * n),
    (description._DEPENDENCY, "match", lambda n: "a" + " " * n + "(>= 1" + ".1" * 10),
]


@pytest.mark.parametrize(("regex", "method", "make"), KNOWN)
def test_known_quadratic_shapes_are_linear(
    regex: re.Pattern[str], method: str, make: Callable[[int], str]
) -> None:
    apply = _apply(regex, method)
    assert_linear(lambda n: lambda: apply(make(n)), regex.pattern)


# -- every parser, and the whole app ----------------------------------------------------------

UNITS = st.text(st.sampled_from("09aZ ./-_;:,()=%\"'\n\t\x00\u00e9eyJR"), min_size=1, max_size=5)


def _pump(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def _request(server: Server, path: str, headers: dict[str, str], method: str = "GET") -> None:
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "fuzz", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }  # fmt: skip
    body = server.wsgi(environ, lambda status, headers, exc_info=None: None)
    b"".join(body)
    getattr(body, "close", lambda: None)()


LOG = accesslog.AccessLogMiddleware(lambda e, r: [], format="json")
ECOSYSTEMS = ecosystems(MemoryStorage())
_ANSWERED = MemoryStorage()
ANSWERS = Answers.of(_ANSWERED, ttl=5.0, tokens=tokens.TokenStore(_ANSWERED))
assert ANSWERS is not None


def _kept_answer(text: str) -> object:
    """The key of a kept answer, made from a path and credentials of that text."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/" + text, "HTTP_AUTHORIZATION": text}
    assert ANSWERS is not None
    return ANSWERS(environ, lambda status, headers: None, lambda environ, start: [])


PARSERS: dict[str, Callable[[str], object]] = {
    "redact_tokens": redaction.redact_tokens,
    "reason_phrase": errors.reason_phrase,
    "http_error": lambda text: errors.http_error(400, text).get_response().get_data(),
    "parse_filename": metadata.parse_filename,
    "parse_dcf": dcf.parse_dcf,
    "parse_description": lambda text: description.parse_description(text.encode()),
    "parse_built": description.parse_built,
    "check_dependencies": lambda text: description.check_dependencies("Imports", text),
    "negotiate": simple.negotiate.__wrapped__,
    "credentials": lambda text: credentials({"HTTP_AUTHORIZATION": text}),
    "basic": lambda text: credentials({"HTTP_AUTHORIZATION": "Basic " + text}),
    "request_id": lambda text: LOG.request_id({"HTTP_X_REQUEST_ID": text}),
    "parse_duration": tokens.parse_duration,
    "parse_size": config.parse_size,
    "validate_channel_name": channels.validate_channel_name,
    "validate_key": base.validate_key,
    "find_target": lambda text: find_target(ECOSYSTEMS, channels.Channel("team"), text),
    "verify": tokens.TokenStore(MemoryStorage(), secret_key="k" * 32).verify,
    "conda_filename": lambda text: conda_package.parse_filename(text + ".conda"),
    "conda_version_key": conda_package.version_key,
    "kept_answer": _kept_answer,
}


#: What parsers look for first, so that a pumped unit gets past it.
PREFIXES = [
    "",
    "R 1.",
    "R (1.1.",
    "eyJ",
    ".eJ",
    "/t/",
    "%2F",
    "Basic ",
    "Bearer ",
    "a==",
    "demo-",
    "Package: abc\nVersion: 1.0\nLicense: ",
    "abc (>= ",
    "a;q=",
    "1",
    "x\n ",
]


@pytest.mark.parametrize("name", sorted(PARSERS))
@fuzz(15)
@given(prefix=st.sampled_from(PREFIXES), unit=UNITS, tail=st.text(max_size=3))
@example(prefix="", unit="eyJ", tail="")
@example(prefix="R 1.", unit="1", tail="")
def test_parsers_are_linear(name: str, prefix: str, unit: str, tail: str) -> None:
    parse = PARSERS[name]
    assert_linear(lambda n: lambda: parse(prefix + _pump(unit, n) + tail), name)


@pytest.fixture(scope="module")
def server() -> Server:
    return Server()


HEADERS = ["User-Agent", "Accept", "X-Request-ID", "Authorization", "X-Auth", "Range",
           "If-None-Match", "If-Modified-Since", "Content-Type", "Cookie"]  # fmt: skip
PATHS = ["/open/simple/", "/open/src/contrib/", "/open/__linux__/bookworm/src/contrib/",
         "/team/files/", "/open/bin/windows/contrib/", "/", "/t/", "/open/-/"]  # fmt: skip


@fuzz(30)
@given(
    where=st.sampled_from(["path", *HEADERS]),
    base=st.sampled_from(PATHS),
    unit=UNITS,
    method=st.sampled_from(["GET", "HEAD", "POST"]),
)
@example(where="User-Agent", base=PATHS[2], unit="1", method="GET")
@example(where="path", base="/open/simple/", unit="eyJ", method="GET")
def test_the_whole_app_is_linear(
    server: Server, where: str, base: str, unit: str, method: str
) -> None:
    def make(n: int) -> Callable[[], None]:
        text = _pump(unit, n).encode("utf-8").decode("latin-1")
        if where == "path":
            return lambda: _request(server, PREFIX + base + text, {}, method)
        return lambda: _request(server, PREFIX + base + "abc_1.0.tar.gz", {where: text}, method)

    assert_linear(make, f"{method} {base} with {where} of {unit!r} pumped")


# -- uploads: multipart bodies and the metadata in them ---------------------------------------

LIMITS = Limits()


@fuzz(15)
@given(unit=st.binary(min_size=1, max_size=6) | st.sampled_from(
           [b"\r\n", b"--fUzZ", b"-", b"\r", b"--fUzZx", b"\n--fUzZ!"]),
       where=st.sampled_from(["value", "file", "name", "preamble"]))  # fmt: skip
def test_multipart_bodies_are_linear(unit: bytes, where: str) -> None:
    def make(n: int) -> Callable[[], object]:
        pumped_bytes = (unit * (n // len(unit) + 1))[:n]
        text = pumped_bytes.decode("latin-1")
        fields = [("name", text if where == "value" else "x")]
        files = [("content", "a.bin", pumped_bytes if where == "file" else b"x")]
        if where == "name":
            fields = [(text.replace('"', ""), "x")]
        body, _ = multipart(fields, files)
        if where == "preamble":
            body = pumped_bytes + b"\r\n" + body

        def parse() -> object:
            environ = EnvironBuilder(method="POST", input_stream=io.BytesIO(body),
                                     content_length=len(body)).get_environ()  # fmt: skip
            with parse_upload_form(environ, b"fUzZ", LIMITS) as (form, _):
                return form

        return parse

    assert_linear(make, f"multipart with {where} of {unit!r} pumped")


@fuzz(15)
@given(field=st.sampled_from(["Summary", "Version", "Name", "Requires-Python", "Description"]),
       unit=UNITS)  # fmt: skip
def test_metadata_fields_are_linear(field: str, unit: str) -> None:
    def make(n: int) -> Callable[[], object]:
        value = _pump(unit, n).replace("\n", " ").replace("\r", " ")
        lines = {"Metadata-Version": "2.1", "Name": "demo", "Version": "1.0", field: value}
        text = "".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n"
        data = wheel_bytes(text)
        return lambda: read_distribution("demo-1.0-py3-none-any.whl", io.BytesIO(data))

    assert_linear(make, f"METADATA {field} of {unit!r} pumped")


@pytest.mark.parametrize(
    "line", ["Classifier: a\n", " folded\n", "Name: demo\n", "X-Y:\r\n", "Summary:\t\t \n"]
)
def test_metadata_header_lines_are_linear(line: str) -> None:
    """The header block read line by line (``_header_fields``): many lines cost each
    its own, and so does an answer from it or the email parser's behind it."""

    def make(n: int) -> Callable[[], object]:
        text = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n" + _pump(line, n) + "\n"
        data = wheel_bytes(text)
        return lambda: read_distribution("demo-1.0-py3-none-any.whl", io.BytesIO(data))

    assert_linear(make, f"METADATA with lines of {line!r} pumped")


def test_sizes_are_what_the_issue_asks() -> None:
    assert (SMALL, LARGE) == (1024, 64 * 1024)
