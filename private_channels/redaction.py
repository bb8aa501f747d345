"""Redaction of anything that looks like a token, in log lines, paths and sentences.

::

    redact_tokens("GET /api/repo/t/46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35/x/")
    # 'GET /api/repo/t/<redacted>/x/'

The access log, the standalone server's request log and every error sentence
(:mod:`~private_channels.errors`) pass through :func:`redact_tokens`, so a token sent
where no token belongs (as a channel or project name, a User-Agent, after an encoded
slash) is never written back.  It runs on whole request paths, so every pattern here
is linear in its input (``tests/test_fuzz_linear.py`` measures it).
"""

from __future__ import annotations

import re

__all__ = ["redact_tokens"]

# The path form as a log line may spell it: servers log the raw request path, so "/t/",
# "%74" for "t" and "%2F" for "/" all occur, and so do their encodings encoded again
# ("%252F": a client that quoted a quoted URL); case-insensitive because "/T/<TOKEN>"
# reaches the app (as an unknown channel) and is logged too.  Each alternative starts
# with its own character, so the scan stays linear in the line.
_LOGGED_PATH_TOKEN = re.compile(r"(?i)(?:/|%(?:25)*2f)(?:t|%(?:25)*74)(?:/|%(?:25)*2f)+[^/\s\"'?]+")
# Tokens sent where no token belongs (say, as a channel name, or after an encoded
# slash: "x%2F<TOKEN>", "%252F<TOKEN>"): the default form is 48 lowercase hexadecimal
# digits, so every run of 48 or more is redacted, whatever follows it ("<TOKEN>simple",
# a token pasted twice, a token and a stray digit), except a digest where a digest
# belongs (see _DIGEST_BEFORE).  The lookbehind lets a match start only where a run of
# hex digits starts, and the greedy run never backtracks, so the scan stays linear.
_BARE_TOKEN = re.compile(r"(?<![0-9a-f])[0-9a-f]{48,}")
_BARE_LENGTH = 48  # no shorter text holds a match
# What precedes a sha256 (or blake2b_256) digest in our own URLs and sentences: the
# files' paths (files/<sha256>/..., files/upstream/sha256/<sha256>/...), conda's
# shards, a hash fragment, and the storage key of a token's record (the sha256 of the
# token, kept at rest instead of it: no secret).  A run of exactly 64 digits after one
# of these is kept, for whoever reads the log; any other run of 48 or more could hold a
# token.
_DIGEST_BEFORE = ("files/", "tokens/", "sha256/", "blake2b_256/", "shards/", "sha256=", "sha256:")


def _redact_hex(match: re.Match[str]) -> str:
    run, start = match[0], match.start()
    if len(run) == 64 and match.string.endswith(_DIGEST_BEFORE, 0, start):
        return run
    keep = 0
    if match.string.endswith("%", 0, start):
        # The digits of a percent escape stay ("%2f<TOKEN>", "%252f<TOKEN>"), unless
        # fewer than a token's 48 would be left to redact.
        keep = 4 if run.startswith("25") else 2
        keep = keep if len(run) - keep >= 48 else 0
    return run[:keep] + "<redacted>"


# itsdangerous' signed form: base64 of '{"...' ("eyJ"), or "." and base64 of zlib data
# (".eJ", when compressing made it shorter), then a dot and the signature.  Found in
# each run of such characters by str.find: the pattern eyJ[\w-]*\.[\w.-]+ costs the
# square of a run that repeats "eyJ" without a dot.
_WORD_RUN = re.compile(r"[\w.-]+")
_SIGNED_STARTS = ("eyJ", ".eJ")  # the starts redact_tokens looks for before the scan


def _redact_signed(match: re.Match[str]) -> str:
    run = match[0]
    starts = [i for i in (run.find(s) for s in _SIGNED_STARTS) if i >= 0]
    if not starts:
        return run
    start = min(starts)
    dot = run.find(".", start + 3)
    if dot < 0 or dot + 1 == len(run):
        return run
    return run[:start] + "<redacted>"


# Texts that redact_tokens gave back as they were, remembered: the same paths and
# User-Agents come back request after request, and a scan of one costs microseconds
# (pip's User-Agent is some 300 characters of JSON).  Only those: a text that had
# anything redacted is never kept, so nothing is remembered that a log would not have
# shown.  Bounded in entries and in their length; emptied when full.
_UNCHANGED: dict[str, None] = {}
_UNCHANGED_ENTRIES = 4096
_UNCHANGED_LONGEST = 512


def redact_tokens(text: str) -> str:
    """``text`` (a log line, a path) with anything that looks like a token redacted.

    >>> redact_tokens("GET /api/repo/t/46e98d3dbf2378bb26e2107867652ee734eb098ea5b96f35/x/")
    'GET /api/repo/t/<redacted>/x/'
    """
    if text in _UNCHANGED:
        return text
    redacted = _redacted(text)
    if redacted == text and len(text) <= _UNCHANGED_LONGEST:
        if len(_UNCHANGED) >= _UNCHANGED_ENTRIES:
            _UNCHANGED.clear()
        _UNCHANGED[text] = None
    return redacted


def _redacted(text: str) -> str:
    # Every line of the access log passes here, four fields each: a pattern runs only
    # on text that holds what its every match must hold ("/t/" or a percent sign;
    # 48 characters; one of the signed form's starts), which ``in`` and ``len`` find
    # in far less time than a pattern's scan, and nothing else is left out.
    if "%" in text or "/t/" in text or "/T/" in text:  # unescaped, a match is "/t/..."
        text = _LOGGED_PATH_TOKEN.sub("/t/<redacted>", text)
    if len(text) >= _BARE_LENGTH:
        text = _BARE_TOKEN.sub(_redact_hex, text)
    if "eyJ" in text or ".eJ" in text:
        text = _WORD_RUN.sub(_redact_signed, text)
    return text
