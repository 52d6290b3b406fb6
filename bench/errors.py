"""Errors that carry enough context to print as one line naming the file."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing error: its message is one line naming the file and the problem."""


class SuiteError(BenchError):
    """A suite failed validation; holds every problem found, each already formatted."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class DataError(BenchError):
    """A dataset file or folder is missing, empty or unreadable."""


class CheckpointError(BenchError):
    """A checkpoint is missing, has the wrong hash, or does not fit the architecture."""


class OutputError(BenchError):
    """A model produced unusable outputs (NaN, wrong shape)."""


def not_utf8(path, raw: bytes, e: UnicodeDecodeError) -> str:
    """'FILE:LINE: not UTF-8 text (byte 0x.. at column N)' for a failed decode of `raw`."""
    line = raw.count(b"\n", 0, e.start) + 1
    col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    hint = ": a UTF-16 byte-order mark" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
    return f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col}{hint}); save the file as UTF-8"


def read_text(path, error: type = DataError) -> str:
    """A text file's contents, or `error` with one line naming the file: missing, a folder, unreadable, not UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(not_utf8(path, raw, e)) from None


def one_line(exc: BaseException) -> str:
    """The single line to show for an exception, including those re-raised from DataLoader workers."""
    text = str(exc).strip()
    if "Original Traceback" in text:  # torch's ExceptionWrapper: the real message is the last line
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith(("Error", "Exception")) else last
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, BenchError) or "Original Traceback" in str(exc):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
