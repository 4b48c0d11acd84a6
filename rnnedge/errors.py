"""The few exceptions rnnedge raises. The CLI catches them at the edge and prints one line.

Tree (exit codes: the table `rnnedge.cli.EXIT_CODES`):
    RnnEdgeError                 anything rnnedge refuses or cannot do (exit code 2)
      BadInputError              a file, array or option that is missing, corrupt, unsafe or of the wrong shape
        UnsafeFileError          a file that could make rnnedge run code or read outside its folder
      ExportError                a module that cannot be exported as asked
      ParityError                a check failed: outputs differ beyond tolerance (exit code 1)
"""


class RnnEdgeError(Exception):
    """Base class: every error rnnedge raises on purpose."""


class BadInputError(RnnEdgeError, ValueError):
    """Missing, empty, truncated or corrupt files; wrong shapes, dtypes, lengths or options."""


class UnsafeFileError(BadInputError):
    """A pickle, or an ONNX external-data path that leaves the model's folder."""


class ExportError(RnnEdgeError):
    """The module (or option combination) cannot be exported."""


class ParityError(RnnEdgeError):
    """A check failed: outputs differ beyond tolerance. Carries the report."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """One readable line of an error (the one helper for cutting messages): a torch summary's root cause
    (`<class ...>: message`) where there is one, else the first non-empty line; at most `limit` characters."""
    text = str(exc).strip().splitlines()
    causes = [line for line in text if line.startswith("<class ")]
    if causes:
        return causes[-1].split(": ", 1)[-1][:limit]
    fallback = type(exc).__name__ if isinstance(exc, BaseException) else ""
    return next((line.strip() for line in text if line.strip()), fallback)[:limit]
