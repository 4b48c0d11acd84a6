"""What every family's config shares: building the dataclass from a dict (parsed JSON), strictly."""

from __future__ import annotations

import dataclasses
from typing import Any

from rnnedge.errors import BadInputError


def config_from_dict(cls, d: Any, what: str):
    """`cls(**d)` for a config dataclass; not a dict, unknown keys or missing required keys -> BadInputError naming `what`."""
    if not isinstance(d, dict):
        raise BadInputError(f"{what} must be a JSON object, got {type(d).__name__}")
    fields = dataclasses.fields(cls)
    unknown = sorted(set(d) - {f.name for f in fields})
    if unknown:
        raise BadInputError(f"{what}: unknown key(s) {', '.join(unknown)}")
    missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d]
    if missing:
        raise BadInputError(f"{what}: missing key(s) {', '.join(missing)}")
    return cls(**d)
