"""The DCF parser reads as R's read.dcf does; the writer cannot be injected into."""

from __future__ import annotations

import subprocess
import textwrap

import hypothesis
import hypothesis.strategies
import pytest

from private_channels.cran.dcf import DCFError, format_dcf, parse_dcf, validate_field_name

from .support import require_client


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Package: abc\nVersion: 1.0\n", [{"Package": "abc", "Version": "1.0"}]),
        ("Package:abc\n", [{"Package": "abc"}]),
        ("A: 1\n\nA: 2\n", [{"A": "1"}, {"A": "2"}]),
        ("A: 1\n \t \nA: 2", [{"A": "1"}, {"A": "2"}]),
        ("\n\nA: 1\n\n\n", [{"A": "1"}]),
        ("Imports: a,\n    b (>= 1.0),\n\tc  \n", [{"Imports": "a,\nb (>= 1.0),\nc"}]),
        ("D: one\n .\n two\n", [{"D": "one\n\ntwo"}]),
        ("A: 1\r\nB: 2\r\n", [{"A": "1", "B": "2"}]),
        ("A: 1\rB: 2\r", [{"A": "1", "B": "2"}]),
        ("X: \n", [{"X": ""}]),
        ("Authors@R: person()\n", [{"Authors@R": "person()"}]),
        ("", []),
    ],
)
def test_parse(text: str, expected: list[dict[str, str]]) -> None:
    assert parse_dcf(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        " continued: at the start\n",
        "A: 1\n\n continued after a blank line\n",
        "no colon here\n",
        "A: 1\nA: 2\n",
        ": empty name\n",
        "Bad Name: x\n",
    ],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(DCFError):
        parse_dcf(text)


@pytest.mark.parametrize("name", ["", "A B", "A:B", "A\nB", "Ä"])
def test_field_names_are_checked(name: str) -> None:
    with pytest.raises(DCFError):
        validate_field_name(name)
    with pytest.raises(DCFError):
        format_dcf([{name: "x"}])


def test_write_leaves_out_none_and_empty() -> None:
    assert format_dcf([{"A": "1", "B": None, "C": "", "D": "  "}]) == "A: 1\n"
    assert format_dcf([{"A": "1"}, {"A": "2"}]) == "A: 1\n\nA: 2\n"


def test_write_keeps_line_breaks_without_fold() -> None:
    text = format_dcf([{"D": "one\ntwo\n\nthree"}])
    assert text == "D: one\n two\n .\n three\n"
    assert parse_dcf(text) == [{"D": "one\ntwo\n\nthree"}]


def test_fold_wraps_like_write_dcf() -> None:
    value = " ".join(["word"] * 40)
    text = format_dcf([{"Description": value}], fold=True)
    lines = text.splitlines()
    assert len(lines) > 1
    assert all(len(line) <= 80 for line in lines)
    assert all(line.startswith("        word") for line in lines[1:])
    assert parse_dcf(text)[0]["Description"].replace("\n", " ") == value


INJECTIONS = [
    "x\n\nPackage: evil\nVersion: 6.6.6",
    "x\nPackage: evil",
    "x\r\n\r\nPackage: evil",
    "x\rPackage: evil",
    "x\x0bPackage: evil",
    "x\x0c\x0cPackage: evil",
    "x\x85Package: evil",
    "x\u2028\u2029Package: evil",
    "\n\nPackage: evil",
    "x\n.\nPackage: evil",
    "x\n \nPackage: evil\n",
]


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("value", INJECTIONS)
def test_values_cannot_inject_records_or_fields(value: str, fold: bool) -> None:
    text = format_dcf([{"Package": "good", "Imports": value}, {"Package": "other"}], fold=fold)
    records = parse_dcf(text)
    assert [r["Package"] for r in records] == ["good", "other"]
    assert set(records[0]) == {"Package", "Imports"}
    assert "evil" in records[0]["Imports"]


def test_r_reads_the_writer_output_without_injection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rscript = require_client("Rscript")
    path = tmp_path / "PACKAGES"
    records = [{"Package": "good", "Imports": value} for value in INJECTIONS[:4]]
    path.write_text(format_dcf(records, fold=True) + "\n" + format_dcf(records), "utf-8")
    result = subprocess.run(
        [rscript, "-e", f'x <- read.dcf("{path}"); cat(nrow(x), colnames(x), unique(x[, 1]))'],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["8", "Package", "Imports", "good"]


@hypothesis.given(
    name=hypothesis.strategies.sampled_from(["Package", "Depends", "License_is_FOSS", "X"]),
    value=hypothesis.strategies.text(
        alphabet=hypothesis.strategies.sampled_from("ab (>=3.5), é\t\n\u2028-"), max_size=90
    ),
)
def test_folding_a_short_field_is_what_textwrap_gives(name: str, value: str) -> None:
    # format_dcf writes most fields without textwrap; the answer must not change.
    expected = textwrap.wrap(
        " ".join(value.split()), width=72, initial_indent=f"{name}: ",
        subsequent_indent=" " * 8, break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip
    paragraphs = [p for p in "\n".join(line.strip() for line in value.splitlines()).split("\n\n")]
    # One line, by any line end splitlines() knows (U+2028 too: "3\u2028." is "3" and
    # DCF's empty line, as "3\n." is).
    if value.strip() and len(paragraphs) == 1 and len(value.strip().splitlines()) == 1:
        assert format_dcf([{name: value}], fold=True) == "\n".join(expected) + "\n"
