"""Any settings or export value as plain JSON (for ``json.dumps``, also as its ``default=``)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .thresholds import ThresholdConfig, settings_to_json


def jsonable(value: Any) -> Any:
    """Dataclasses become objects (thresholds in their codec's form), tuples and sets lists,
    numpy scalars numbers (a non-finite one null); anything else unknown its text."""
    if isinstance(value, ThresholdConfig):
        return settings_to_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # a numpy scalar, without importing numpy here
    if callable(item):
        number = item()
        if isinstance(number, (int, float)):
            return None if isinstance(number, float) and not math.isfinite(number) else number
    return str(value)
