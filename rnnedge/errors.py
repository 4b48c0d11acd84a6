"""The few exceptions rnnedge raises. The CLI catches RnnEdgeError at the edge and prints one line.

Tree:
    RnnEdgeError                 anything rnnedge refuses or cannot do (exit code 2 in the CLI)
      BadInputError              a file, array or option that is missing, corrupt, unsafe or of the wrong shape
        UnsafeFileError          a file that could make rnnedge run code or read outside its folder
      ExportError                a module that cannot be exported as asked
      ParityError                outputs differ beyond tolerance (exit code 1 in the CLI)
"""


class RnnEdgeError(Exception):
    """Base class: every error rnnedge raises on purpose."""

    exit_code = 2


class BadInputError(RnnEdgeError, ValueError):
    """Missing, empty, truncated or corrupt files; wrong shapes, dtypes, lengths or options."""


class UnsafeFileError(BadInputError):
    """A pickle, or an ONNX external-data path that leaves the model's folder."""


class ExportError(RnnEdgeError):
    """The module (or option combination) cannot be exported."""


class ParityError(RnnEdgeError):
    """A check failed: outputs differ beyond tolerance. Carries the report."""

    exit_code = 1

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report
