"""One R process that reads index files with R's own readers, for many examples.

::

    with RSession() as r:
        r.read_dcf(path)        # [{"Package": "abc", ...}, ...] as read.dcf() reads it
        r.read_rds(path)        # the character matrix readRDS() gives, as rows of dicts

Starting R costs a few hundred milliseconds, so property tests keep one session and send
it one file name a line; it answers each value as hexadecimal UTF-8 (``NA`` for R's NA),
so that nothing R reads is lost or reinterpreted on the way back.  A warning is an
error here (``options(warn = 2)``): R that only warns about an index still refuses it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from .support import require_client

_PROGRAM = r"""
options(warn = 2)
hex <- function(s) {
  if (is.na(s)) return("NA")
  paste0("x", paste(as.character(charToRaw(enc2utf8(s))), collapse = ""))
}
table <- function(m) {
  cat("rows", nrow(m), "\n")
  cat("cols", vapply(colnames(m), hex, ""), "\n")
  if (!is.null(rownames(m))) cat("names", vapply(rownames(m), hex, ""), "\n")
  for (i in seq_len(nrow(m))) cat("row", vapply(m[i, ], hex, ""), "\n")
}
input <- file("stdin", "r")
while (length(line <- readLines(input, n = 1)) > 0) {
  parts <- strsplit(line, "\t", fixed = TRUE)[[1]]
  tryCatch({
    m <- switch(parts[1],
      dcf = read.dcf(parts[2]),
      gz = read.dcf(parts[2]),  # read.dcf reads a file name through gzfile()
      rds = readRDS(parts[2]))
    if (!is.matrix(m) || !is.character(m)) stop("not a character matrix")
    table(m)
  }, error = function(e) cat("error", hex(conditionMessage(e)), "\n"))
  cat("done\n")
  flush(stdout())
}
"""


class RError(Exception):
    """R refused to read the file; the message is R's."""


def _text(cell: str) -> str | None:
    return None if cell == "NA" else bytes.fromhex(cell[1:]).decode("utf-8")


class RSession:
    def __init__(self) -> None:
        rscript = require_client("Rscript")
        self.process = subprocess.Popen(
            [rscript, "--vanilla", "-e", _PROGRAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # R's UTF-8 locale: read.dcf then reads the files as UTF-8, as on a user's machine.
            env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        )

    def __enter__(self) -> RSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _table(self, how: str, path: Path) -> tuple[list[str], list[str] | None, list[dict]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{how}\t{path}\n")
        self.process.stdin.flush()
        columns: list[str] = []
        names: list[str] | None = None
        rows: list[dict[str, str | None]] = []
        error = None
        while (line := self.process.stdout.readline()) != "done\n":
            if not line:
                raise RError(f"R exited with {self.process.wait()}")
            kind, *cells = line.split()
            if kind == "error":
                error = _text(cells[0])
            elif kind == "cols":
                columns = [str(_text(c)) for c in cells]
            elif kind == "names":
                names = [str(_text(c)) for c in cells]
            elif kind == "row":
                rows.append(dict(zip(columns, map(_text, cells), strict=True)))
        if error is not None:
            raise RError(error)
        return columns, names, rows

    def read_dcf(self, path: Path, *, gz: bool = False) -> list[dict[str, str]]:
        """The records of a DCF file as ``read.dcf`` reads them (NA: a field the record
        does not have, left out here)."""
        _, _, rows = self._table("gz" if gz else "dcf", path)
        return [{k: v for k, v in row.items() if v is not None} for row in rows]

    def read_rds(self, path: Path) -> tuple[list[str] | None, list[dict[str, str | None]]]:
        """The row names and rows of the character matrix ``readRDS`` reads."""
        _, names, rows = self._table("rds", path)
        return names, rows
