"""Helpers the searchers share: nested dicts to "a/b" keys and back."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


def flatten_dict(dt: Dict, delimiter: str = "/", prevent_delimiter: bool = False) -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}; with prevent_delimiter a key that holds
    the delimiter is an error (it could not be unflattened)."""
    out: Dict[str, Any] = {}

    def walk(prefix: str, d: Dict) -> None:
        for k, v in d.items():
            if prevent_delimiter and delimiter in str(k):
                raise ValueError(f"Found delimiter `{delimiter}` in key when trying to flatten array: {k}")
            key = f"{prefix}{delimiter}{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                walk(key, v)
            else:
                out[key] = v

    walk("", dt)
    return out


def unflatten_dict(dt: Dict[str, Any], delimiter: str = "/") -> Dict:
    """{"a/b": 1} -> {"a": {"b": 1}}."""
    out: Dict = {}
    for key, value in dt.items():
        parts = key.split(delimiter)
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out


def validate_warmstart(
    parameter_names: Any,
    points_to_evaluate: Optional[List],
    evaluated_rewards: Optional[List],
    validate_point_name_lengths: bool = True,
) -> None:
    """Checks points_to_evaluate (a list of dicts or lists) against
    evaluated_rewards (one per point) and the space's parameter names."""
    if points_to_evaluate:
        if not isinstance(points_to_evaluate, list):
            raise TypeError(f"points_to_evaluate expected to be a list, got {type(points_to_evaluate)}.")
        for point in points_to_evaluate:
            if not isinstance(point, (dict, list)):
                raise TypeError(f"points_to_evaluate expected to include list or dict, got {point}.")
            if validate_point_name_lengths and len(point) != len(parameter_names):
                raise ValueError(
                    f"Dim of point {point} and parameter_names {parameter_names} do not match."
                )
    if points_to_evaluate and evaluated_rewards:
        if not isinstance(evaluated_rewards, list):
            raise TypeError(f"evaluated_rewards expected to be a list, got {type(evaluated_rewards)}.")
        if len(evaluated_rewards) != len(points_to_evaluate):
            raise ValueError(
                f"Dim of evaluated_rewards {evaluated_rewards} and points_to_evaluate {points_to_evaluate} do not match."
            )
