from __future__ import annotations

import pytest
import webtest

from private_channels.errors import MAX_REASON, http_error, reason_phrase


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("The file is too large.", "The file is too large."),
        ("Two\r\nlines\tand  spaces.", "Two lines and spaces."),
        ("Name 'caf\u00e9' is latin-1.", "Name 'caf\u00e9' is latin-1."),
        ("Name '\u2603' is not.", "Name '?' is not."),
        ("Controls \x00, \x1b[31m and \x7f.", "Controls ?, ?[31m and ?."),
        ("x" * 500, "x" * MAX_REASON),
    ],
)
def test_reason_phrase(sentence: str, expected: str) -> None:
    assert reason_phrase(sentence) == expected


def test_http_error_says_its_sentence_in_status_and_body() -> None:
    error = http_error(409, "File already exists.", headers=[("X-Extra", "1")])
    response = webtest.TestApp(error).get("/", status=409)
    assert response.status == "409 File already exists."
    assert response.text == "File already exists.\n"
    assert response.headers["X-Extra"] == "1"
