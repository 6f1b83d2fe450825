"""The project's own error type: what a user sees for bad input or config."""


def one_line(err: BaseException, limit: int = 160) -> str:
    """An exception's text squeezed onto one short line (libraries' messages span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PipelineError(Exception):
    """A problem the user can fix; the message is one line naming the file and the problem."""


class DataError(PipelineError):
    """A data file that cannot be used (unreadable, mismatched, out-of-range labels, ...)."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
