"""Debian Control File (DCF) text, the format of R's DESCRIPTION and PACKAGES files.

::

    records = parse_dcf("Package: abc\\nVersion: 1.0\\n")   # [{"Package": "abc", ...}]
    text = format_dcf(records)                           # back to DCF, one record each

The parser reads values the way R's ``read.dcf`` does (continuation lines lose their
indentation and are joined with ``\\n``; a line ``.`` is an empty line), so the values
stored from a DESCRIPTION are the ones R itself would put in its index.

The writer is what keeps an uploaded DESCRIPTION from writing into the public
``PACKAGES``: every line after a field's first is indented and blank lines become
``" ."``, and a NUL (where R's reader would end the line) becomes U+FFFD, so no value
can end a record or start a field, whatever it contains, for R's ``read.dcf`` as for
:func:`parse_dcf` (``tests/test_fuzz_r.py`` checks it with R itself).
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Iterable, Mapping

__all__ = ["DCFError", "format_dcf", "parse_dcf", "validate_field_name"]

# R accepts any run of non-blank characters but ':' as a field name; printable ASCII is
# all that real DESCRIPTION files use, and all that a reader of PACKAGES expects.
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
_FIELD_LINE = re.compile(r"([!-9;-~]+):(.*)\Z", re.DOTALL)
# R's write.dcf folds at 0.9 * getOption("width") and indents by 0.1 * width.
FOLD_WIDTH = 72
FOLD_INDENT = " " * 8


class DCFError(ValueError):
    """Text that is not DCF: a stray line, a duplicated field, a bad field name."""


def validate_field_name(name: str) -> str:
    if not _FIELD_NAME.match(name):
        raise DCFError(f"{name!r} is not a valid DCF field name.")
    return name


# Indexes write the same few field names for every record.
_valid_field_name = functools.lru_cache(maxsize=256)(validate_field_name)


def _lines(text: str) -> list[str]:
    # R reads "\n" line ends; CR and CRLF from other systems count as line ends too.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_dcf(text: str) -> list[dict[str, str]]:
    """Parse DCF text into one dict per record, as R's ``read.dcf`` reads it.

    Raises :class:`DCFError` for a continuation line at the start of a record, a line
    that is neither a field nor a continuation, or a field given twice in one record.
    """
    records: list[dict[str, str]] = []
    record: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            if record:
                records.append(_values(record))
            record, current = {}, None
            continue
        if line[0] in " \t":
            if current is None:
                raise DCFError(f"Line {number} continues a field, but no field precedes it.")
            stripped = line.strip()
            current.append("" if stripped == "." else stripped)
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            raise DCFError(f"Line {number} is neither 'Field: value' nor a continuation line.")
        name, value = match.group(1), match.group(2).strip()
        if name in record:
            raise DCFError(f"Field {name!r} appears twice in one record.")
        current = record[name] = [value]
    if record:
        records.append(_values(record))
    return records


def _values(record: dict[str, list[str]]) -> dict[str, str]:
    # R drops the empty lines that end a value (a last line " ."), as trailing whitespace.
    return {name: "\n".join(lines).rstrip("\n") for name, lines in record.items()}


def _field_lines(name: str, value: str, fold: bool) -> list[str]:
    """A field as lines: ``Name: ...`` first, every later line indented."""
    # R's reader ends a line at a NUL (and the rest of the record with it): never write one.
    value = value.replace("\x00", "\ufffd")
    if fold and len(name) + 2 + len(value) <= FOLD_WIDTH and value == " ".join(value.split()):
        # One short, single-spaced line (most fields of an index): what the wrapping
        # below gives it, without textwrap, which cost most of rendering PACKAGES.
        return [f"{name}: {value}"]
    paragraphs: list[list[str]] = [[]]
    # splitlines() also splits on the rarer line ends (\v, \f, \x85, \u2028...), so
    # none of them can smuggle a line start past the indentation below.
    for line in value.splitlines():
        # A line "." is DCF's empty line, except as the first (a field's "Name: .").
        if line.strip() and (line.strip() != "." or paragraphs == [[]]):
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    if not paragraphs[-1]:
        paragraphs.pop()
    head = f"{name}: "
    out: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        if index:
            out.append(" .")  # DCF's escape for an empty line inside a value
        if fold:
            first = head if not out else FOLD_INDENT
            for line in textwrap.wrap(
                " ".join(" ".join(paragraph).split()),
                width=FOLD_WIDTH,
                initial_indent=first,
                subsequent_indent=FOLD_INDENT,
                break_long_words=False,
                break_on_hyphens=False,
            ):
                # A "." wrapped onto a line of its own would read as an empty line (and
                # R's reader would carry that into the next field): it stays on the line
                # before, a little past the width.
                if line.strip() == "." and line.startswith(" ") and out:
                    out[-1] += " ."
                else:
                    out.append(line)
        else:
            for line in paragraph:
                out.append(head + line if not out else " " + line)
    return out


def format_dcf(records: Iterable[Mapping[str, str | None]], *, fold: bool = False) -> str:
    """Write records as DCF text, one blank line between records.

    Fields whose value is ``None`` or empty are left out, as R's ``write_PACKAGES``
    leaves out NA.  With ``fold``, whitespace in each paragraph is collapsed and lines
    are wrapped as R's ``write.dcf`` wraps them; without, line breaks are kept.
    """
    chunks: list[str] = []
    for record in records:
        lines: list[str] = []
        for name, value in record.items():
            _valid_field_name(name)
            if value is None or not value.strip():
                continue
            lines.extend(_field_lines(name, value, fold))
        if lines:
            chunks.append("\n".join(lines) + "\n")
    return "\n".join(chunks)
