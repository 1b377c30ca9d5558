"""Turns a param_space with unresolved values into concrete trial configs.

A param_space is a nested dict (lists and tuples inside are walked too)
whose leaves are constants or unresolved values:

- ``grid_search([...])`` (or ``{"grid_search": [...]}``): every value is
  used; several grids combine as their cartesian product. Grids are
  enumerated in the sorted order of their paths, the first path's values
  changing fastest.
- a Domain (``uniform(0, 1)``, ``sample_from(fn)``, ...): sampled once per
  variant, in param_space's key order, depth first; a sample_from that reads
  a value not resolved yet is retried on a later pass (20 at most).
- ``{"eval": "expr"}``: a sample_from of a Python expression over ``spec``
  (its ``config``), ``random`` and ``np``.

Paths are tuples of keys (and list indices) from the top of the param_space.
"""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Mapping
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy

from rtrain.tune.search.sample import Categorical, Domain, Function, RandomState

logger = logging.getLogger(__name__)

Path = Tuple[Any, ...]

# Passes over the sample_from functions before a dependency that never
# resolves is reported (Ray's limit).
_MAX_RESOLUTION_PASSES = 20

_EVAL_GLOBALS = {"random": random, "np": numpy}


def grid_search(values: Iterable) -> Dict[str, Iterable]:
    """Every one of values is tried: one variant each, crossed with the
    variants of any other grid_search.

    With num_samples=n, each grid combination is sampled n times, so
    ``{"x": grid_search([10, 20]), "y": grid_search(["a", "b", "c"])}`` with
    num_samples=4 makes 24 trials.
    """
    return {"grid_search": values}


class RecursiveDependencyError(Exception):
    """A sample_from read a value that is not resolved yet."""


def _path_key(path: Path) -> Tuple[Tuple[int, Any], ...]:
    # Sorting paths of mixed keys (list indices beside dict keys) must not
    # raise; ints sort before strings, each in their natural order.
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def _try_resolve(value: Any) -> Tuple[bool, Any]:
    """(True, value) for a constant; (False, its Domain) for an unresolved value."""
    if isinstance(value, Domain):
        return False, value
    if isinstance(value, dict) and len(value) == 1 and "eval" in value:
        expr = value["eval"]
        return False, Function(lambda spec: eval(expr, _EVAL_GLOBALS, {"spec": spec}))
    if isinstance(value, dict) and len(value) == 1 and "grid_search" in value:
        return False, Categorical(value["grid_search"]).grid()
    return True, value


def _is_resolved(value: Any) -> bool:
    return _try_resolve(value)[0]


def _split(spec: Any) -> Tuple[Dict[Path, Any], Dict[Path, Domain]]:
    resolved: Dict[Path, Any] = {}
    unresolved: Dict[Path, Domain] = {}
    items = spec.items() if isinstance(spec, dict) else enumerate(spec)
    for k, v in items:
        ok, v = _try_resolve(v)
        if not ok:
            unresolved[(k,)] = v
        elif isinstance(v, (dict, list, tuple)):
            sub_resolved, sub_unresolved = _split(v)
            resolved.update({(k,) + p: x for p, x in sub_resolved.items()})
            unresolved.update({(k,) + p: x for p, x in sub_unresolved.items()})
        else:
            resolved[(k,)] = v
    return resolved, unresolved


def parse_spec_vars(spec: Dict) -> Tuple[List[Tuple[Path, Any]], List[Tuple[Path, Domain]], List[Tuple[Path, Domain]]]:
    """(constants, domains to sample, grid searches), each as (path, value)
    pairs; grids sorted by path."""
    resolved, unresolved = _split(spec)
    domain_vars = [(p, d) for p, d in unresolved.items() if not d.is_grid()]
    grid_vars = sorted(((p, d) for p, d in unresolved.items() if d.is_grid()), key=lambda pv: _path_key(pv[0]))
    return list(resolved.items()), domain_vars, grid_vars


def has_unresolved_values(spec: Dict) -> bool:
    """Whether spec holds a grid_search, Domain or eval anywhere."""
    return bool(_split(spec)[1])


def get_value(spec: Any, path: Path) -> Any:
    for k in path:
        spec = spec[k]
    return spec


def assign_value(spec: Any, path: Path, value: Any) -> None:
    """Sets the value at path, rebuilding a tuple on the way if it holds it."""
    parent, parent_key = None, None
    for k in path[:-1]:
        parent, parent_key = spec, k
        spec = spec[k]
    key = path[-1]
    if not isinstance(spec, tuple):
        spec[key] = value
        return
    if parent is None:
        raise ValueError("Cannot assign value to a tuple.")
    parent[parent_key] = spec[:key] + (value,) + spec[key + 1 :]


class _ConfigView(dict):
    """What a sample_from function is called with: the config so far.

    It reads as the config (``c["a"]``, ``c.get("a")``, ``c.a``) and as
    Ray's spec (``spec.config.a``, ``spec["config"]["a"]``): "config" names
    the view itself unless the config has a key of that name. Reading a
    value that is still unresolved raises RecursiveDependencyError, which
    defers the function to the next pass.
    """

    def __getitem__(self, key: Any) -> Any:
        if key == "config" and not dict.__contains__(self, "config"):
            return self
        value = dict.__getitem__(self, key)
        if not _is_resolved(value):
            raise RecursiveDependencyError(f"`{key}` recursively depends on {value}")
        return _ConfigView(value) if isinstance(value, dict) else value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self or key == "config":
            return self[key]
        return default


def _resolve_domain_vars(
    spec: Dict, domain_vars: List[Tuple[Path, Domain]], allow_fail: bool = False, random_state: RandomState = None
) -> Tuple[bool, Dict[Path, Any]]:
    resolved: Dict[Path, Any] = {}
    error: Optional[RecursiveDependencyError] = None
    for _ in range(_MAX_RESOLUTION_PASSES):
        error = None
        for path, domain in domain_vars:
            if path in resolved:
                continue
            try:
                value = domain.sample(_ConfigView(spec), random_state=random_state)
            except RecursiveDependencyError as e:
                error = e
            except Exception as e:
                raise ValueError(f"Failed to evaluate expression: {path}: {domain}") from e
            else:
                assign_value(spec, path, value)
                resolved[path] = value
        if error is None:
            return True, resolved
    if not allow_fail:
        raise error
    return False, resolved


def _grid_search_generator(spec: Dict, grid_vars: List[Tuple[Path, Domain]]) -> Iterator[Dict]:
    if not grid_vars:
        yield spec
        return
    # The grid's own values are blanked before copying: the skeleton is
    # deep-copied once per combination and the values may be large.
    skeleton = copy.deepcopy(spec)
    for path, _ in grid_vars:
        assign_value(skeleton, path, None)
    sizes = [len(values) for _, values in grid_vars]
    if not all(sizes):
        return
    indices = [0] * len(grid_vars)
    while True:
        variant = copy.deepcopy(skeleton)
        for i, (path, values) in enumerate(grid_vars):
            assign_value(variant, path, values[indices[i]])
        yield variant
        # Odometer step, the first grid changing fastest.
        i = 0
        while i < len(indices):
            indices[i] += 1
            if indices[i] < sizes[i]:
                break
            indices[i] = 0
            i += 1
        if i == len(indices):
            return


def _generate(spec: Dict, constant_grid_search: bool, random_state: RandomState) -> Iterator[Tuple[Dict[Path, Any], Dict]]:
    spec = copy.deepcopy(spec)
    _, domain_vars, grid_vars = parse_spec_vars(spec)
    if not domain_vars and not grid_vars:
        yield {}, spec
        return

    to_resolve = domain_vars
    constant: Dict[Path, Any] = {}
    all_resolved = True
    if constant_grid_search:
        # Sample first, into spec itself, so every grid variant shares the
        # values; what depends on a grid value waits for each variant.
        all_resolved, constant = _resolve_domain_vars(spec, domain_vars, allow_fail=True, random_state=random_state)
        to_resolve = [(p, d) for p, d in domain_vars if p not in constant]

    for grid_spec in _grid_search_generator(spec, grid_vars):
        resolved_vars = dict(constant)
        if not constant_grid_search or not all_resolved:
            _, per_variant = _resolve_domain_vars(grid_spec, to_resolve, random_state=random_state)
            resolved_vars.update(per_variant)
        # A sample_from may return new unresolved values (a grid, a domain).
        for nested, variant in _generate(grid_spec, constant_grid_search, random_state):
            out = dict(resolved_vars)
            for path, _ in grid_vars:
                out[path] = get_value(variant, path)
            for k, v in nested.items():
                if k in out and v != out[k] and _is_resolved(out[k]):
                    raise ValueError(
                        f"The variable `{k}` could not be unambiguously resolved to a single value. "
                        "Consider simplifying your configuration."
                    )
                out[k] = v
            yield out, variant


def generate_variants(
    param_space: Dict, constant_grid_search: bool = False, random_state: RandomState = None
) -> Iterator[Tuple[Dict[Path, Any], Dict]]:
    """Yields (resolved_vars, config) for each variant of one sample of param_space.

    resolved_vars maps the path of each grid and sampled value to the value
    it got. With constant_grid_search, the random values are sampled once and
    kept for every grid combination (those that depend on a grid value are
    still sampled per combination).
    """
    yield from _generate(param_space, constant_grid_search, random_state)


def _preset_variants(
    param_space: Dict, point: Dict, constant_grid_search: bool = False, random_state: RandomState = None
) -> Iterator[Tuple[Dict[Path, Any], Dict]]:
    """The variants of param_space with point's values put in first; a
    grid_search the point sets is no longer enumerated."""
    spec = copy.deepcopy(param_space)
    resolved, _, _ = parse_spec_vars(point)
    for path, val in resolved:
        name = "/".join(str(p) for p in path)
        try:
            domain = get_value(spec, path)
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(
                f"Pre-set config key `{name}` does not correspond to a valid key in the search space "
                "definition. Please add this path to the `param_space` variable passed to `tune.Tuner()`."
            ) from exc
        if isinstance(domain, dict):
            # A point may replace a whole sub-dict; a grid is checked as a choice.
            domain = Categorical(domain["grid_search"]) if "grid_search" in domain else None
        if isinstance(domain, Domain):
            if not domain.is_valid(val):
                logger.warning(f"Pre-set value `{val}` is not within valid values of parameter `{name}`: {domain.domain_str}")
        elif domain is not None and domain != val:
            logger.warning(f"Pre-set value `{val}` is not equal to the value of parameter `{name}`: {domain}")
        assign_value(spec, path, val)
    return _generate(spec, constant_grid_search, random_state)


def count_spec_samples(param_space: Dict, num_samples: int = 1) -> int:
    """num_samples times the number of grid combinations."""
    _, _, grid_vars = parse_spec_vars(param_space)
    count = num_samples
    for _, domain in grid_vars:
        count *= len(domain.categories)
    return count


def _deep_update(d: Any, u: Mapping) -> Any:
    for k, v in u.items():
        d[k] = _deep_update(d.get(k, {}), v) if isinstance(v, Mapping) else v
    return d


def count_variants(param_space: Dict, num_samples: int = 1, points_to_evaluate: Optional[Sequence[Dict]] = None) -> int:
    """How many trials BasicVariantGenerator makes of param_space.

    Each point to evaluate takes one of the num_samples (all points are
    run, even beyond num_samples) and yields the grid combinations it
    leaves open; the remaining samples yield every combination each.
    """
    total = 0
    remaining = num_samples
    for point in points_to_evaluate or []:
        preset = _deep_update(copy.deepcopy(param_space), point)
        total += count_spec_samples(preset, 1)
        remaining -= 1
    if remaining > 0:
        total += count_spec_samples(param_space, remaining)
    return total


def _clean_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", str(value)).strip("_")


def format_vars(resolved_vars: Dict[Path, Any]) -> str:
    """"last_key=value,..." for resolved_vars, sorted by path, safe in a
    directory name: floats to 4 places, other characters than [A-Za-z0-9_-]
    replaced by "_" (so a value may become empty)."""
    items = sorted(resolved_vars.items(), key=lambda kv: _path_key(kv[0]))
    return ",".join(f"{_clean_value(k[-1])}={_clean_value(v)}" for k, v in items)


def flatten_resolved_vars(resolved_vars: Dict[Path, Any]) -> Dict[str, Any]:
    """resolved_vars keyed by "a/b/c" paths (Ray's trial.evaluated_params)."""
    return {"/".join(str(p) for p in path): value for path, value in resolved_vars.items()}


__all__ = [
    "RecursiveDependencyError",
    "assign_value",
    "count_spec_samples",
    "count_variants",
    "flatten_resolved_vars",
    "format_vars",
    "generate_variants",
    "get_value",
    "grid_search",
    "has_unresolved_values",
    "parse_spec_vars",
]
