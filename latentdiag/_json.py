"""JSON for results that hold numpy values and non-finite floats."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values and NaN / ±inf as None.

    What every JSON latentdiag writes goes through, so any JSON parser reads it
    (``json.dumps(..., allow_nan=False)`` holds).
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
