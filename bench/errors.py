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
