"""The project's own error type: what a user sees for bad input or config."""

import difflib


def one_line(err: BaseException, limit: int = 160) -> str:
    """An exception's text squeezed onto one short line (libraries' messages span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, valid: list[str]) -> str:
    """"; did you mean 'epochs'?" for the closest valid name, or "" when none is close."""
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class PipelineError(Exception):
    """A problem the user can fix; the message is one line naming the file and the problem."""


class DataError(PipelineError):
    """A data file that cannot be used (unreadable, mismatched, out-of-range labels, ...)."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
