"""Search-space primitives: the domains a param_space draws values from.

Each public function (uniform, loguniform, randint, choice, ...) returns a
Domain with one sampler, with Ray Tune's semantics to the rounding:

- quantized domains first move their bounds inward to multiples of q
  (lower up, upper down), sample in those bounds, then round value / q to
  the nearest integer (numpy's half-to-even) and multiply by q. Rounding
  makes the quantized upper bound reachable, so qrandint(0, 10, 5) gives
  0, 5 or 10. A q of exactly 1 skips the rounding altogether, as in Ray:
  qrandint(a, b, 1) is randint(a, b) (upper exclusive) and quniform(a, b, 1)
  returns unrounded floats.
- randint and lograndint exclude the upper bound; loguniform samples
  uniformly in natural-log space (the base argument is deprecated and
  ignored, as in Ray).
- randn and qrandn sample a normal distribution without bounds.

``Domain.sample(config=None, size=1, random_state=None)`` draws one value
(cast to the domain's type) or, with size > 1, a sequence. random_state is a
seed, a numpy Generator or RandomState, or None for numpy's global
generator (np.random), as in Ray.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

logger = logging.getLogger(__name__)

_MISSING = object()


def _warn_base() -> None:
    warnings.warn(
        "The `base` argument is deprecated. Please remove it as it is not actually needed in this method.",
        DeprecationWarning,
        stacklevel=3,
    )


class _Rng:
    """One face over numpy's two generator APIs.

    Ray accepts a seed, a Generator, a legacy RandomState or None (numpy's
    global state); the samplers call the Generator names (integers, random)
    and this maps them to RandomState's (randint, rand) where needed.
    """

    def __init__(self, seed_or_rng: Any = None):
        if isinstance(seed_or_rng, _Rng):
            self._rng = seed_or_rng._rng
        elif seed_or_rng is None or isinstance(seed_or_rng, (np.random.Generator, np.random.RandomState)):
            self._rng = seed_or_rng
        else:
            self._rng = np.random.default_rng(seed_or_rng)

    @property
    def legacy(self) -> bool:
        return not isinstance(self._rng, np.random.Generator)

    def __getattr__(self, name: str) -> Any:
        # Looked up only for names _Rng lacks, i.e. the generator's methods.
        rng = self.__dict__.get("_rng")
        if rng is None:
            rng = np.random
        if not isinstance(rng, np.random.Generator):
            name = {"integers": "randint", "random": "rand"}.get(name, name)
        return getattr(rng, name)


RandomState = Union[None, int, np.random.Generator, np.random.RandomState, _Rng]


def _as_rng(random_state: RandomState) -> _Rng:
    return random_state if isinstance(random_state, _Rng) else _Rng(random_state)


class Sampler:
    """How values are drawn from a Domain."""

    def sample(self, domain: "Domain", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
        raise NotImplementedError


class BaseSampler(Sampler):
    def __str__(self) -> str:
        return "Base"


class Uniform(Sampler):
    def __str__(self) -> str:
        return "Uniform"


class LogUniform(Sampler):
    def __init__(self, base: object = _MISSING):
        if base is not _MISSING:
            _warn_base()

    def __str__(self) -> str:
        return "LogUniform"


class Normal(Sampler):
    def __init__(self, mean: float = 0.0, sd: float = 0.0):
        if not sd > 0:
            raise ValueError(f"randn: sd must be greater than 0, got {sd}")
        self.mean = mean
        self.sd = sd

    def __str__(self) -> str:
        return "Normal"


class Grid(Sampler):
    """Marks a grid_search: its values are enumerated, never sampled."""

    def sample(self, domain: "Domain", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
        raise RuntimeError("Do not call `sample()` on grid.")


def _one_or_many(domain: "Domain", items: Any) -> Any:
    return items if len(items) > 1 else domain.cast(items[0])


class Domain:
    """A type and range of values with one sampler to draw them by.

    Domains are immutable in use: uniform(), quantized() etc. return a copy
    with the sampler set.
    """

    sampler: Optional[Sampler] = None
    default_sampler_cls: Optional[type] = None

    def cast(self, value: Any) -> Any:
        """value converted to the domain's type."""
        return value

    def set_sampler(self, sampler: Sampler, allow_override: bool = False) -> None:
        if self.sampler and not allow_override:
            raise ValueError(
                "You can only choose one sampler for parameter domains. "
                f"Existing sampler for parameter {type(self).__name__}: {self.sampler}. Tried to add {sampler}"
            )
        self.sampler = sampler

    def get_sampler(self) -> Sampler:
        return self.sampler or self.default_sampler_cls()

    def sample(
        self,
        config: Any = None,
        size: int = 1,
        random_state: RandomState = None,
        *,
        spec: Any = _MISSING,
    ) -> Any:
        """Draws size values (one value, cast, when size is 1).

        Args:
            config: what a sample_from function is called with: the values
                resolved so far (see rtrain.tune.sample_from). Other domains
                ignore it. ``spec=`` is accepted as its older name.
            size: how many values.
            random_state: a seed, numpy Generator or RandomState; None uses
                numpy's global generator.
        """
        if spec is not _MISSING:
            config = spec
        return self.get_sampler().sample(self, config=config, size=size, random_state=_as_rng(random_state))

    def is_grid(self) -> bool:
        return isinstance(self.sampler, Grid)

    def is_function(self) -> bool:
        return False

    def is_valid(self, value: Any) -> bool:
        """Whether value lies in the domain."""
        raise NotImplementedError

    @property
    def domain_str(self) -> str:
        return "(unknown)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.domain_str}[{self.get_sampler()}]"


class Float(Domain):
    """Real values between lower and upper (None: unbounded)."""

    class _Uniform(Uniform):
        def sample(self, domain: "Float", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            if not (math.isfinite(domain.lower) and math.isfinite(domain.upper)):
                raise ValueError(f"uniform needs finite bounds, got ({domain.lower}, {domain.upper})")
            return _one_or_many(domain, rng.uniform(domain.lower, domain.upper, size=size))

    class _LogUniform(LogUniform):
        def sample(self, domain: "Float", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            if not (0 < domain.lower and 0 < domain.upper < float("inf")):
                raise ValueError(f"loguniform needs 0 < lower < upper < inf, got ({domain.lower}, {domain.upper})")
            items = np.exp(rng.uniform(np.log(domain.lower), np.log(domain.upper), size=size))
            return _one_or_many(domain, items)

    class _Normal(Normal):
        def sample(self, domain: "Float", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            # A normal draw would ignore bounds, so a bounded one is refused
            # (quantizing keeps infinite bounds infinite).
            if math.isfinite(domain.lower) or math.isfinite(domain.upper):
                raise ValueError("Normal sampling does not allow a lower or upper value bound.")
            return _one_or_many(domain, rng.normal(self.mean, self.sd, size=size))

    default_sampler_cls = _Uniform

    def __init__(self, lower: Optional[float], upper: Optional[float]):
        self.lower = float("-inf") if lower is None else lower
        self.upper = float("inf") if upper is None else upper

    def cast(self, value: Any) -> float:
        return float(value)

    def uniform(self) -> "Float":
        if not self.lower > float("-inf"):
            raise ValueError("Uniform requires a lower bound. Make sure to set the `lower` parameter of `Float()`.")
        if not self.upper < float("inf"):
            raise ValueError("Uniform requires a upper bound. Make sure to set the `upper` parameter of `Float()`.")
        new = copy.copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: object = _MISSING) -> "Float":
        if base is not _MISSING:
            _warn_base()
        _check_log_bounds(self.lower, self.upper)
        new = copy.copy(self)
        new.set_sampler(self._LogUniform())
        return new

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> "Float":
        new = copy.copy(self)
        new.set_sampler(self._Normal(mean, sd))
        return new

    def quantized(self, q: float) -> "Float":
        # Ray refuses finite bounds that are not multiples of q: the
        # quantized values would otherwise fall outside [lower, upper].
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            if math.isfinite(bound) and not math.isclose(bound / q, round(bound / q)):
                raise ValueError(f"Your {name} variable bound {bound} is not divisible by quantization factor {q}.")
        new = copy.copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def is_valid(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    """Whole values from lower (inclusive) to upper (exclusive, unquantized)."""

    class _Uniform(Uniform):
        def sample(self, domain: "Integer", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            return _one_or_many(domain, rng.integers(domain.lower, domain.upper, size=size))

    class _LogUniform(LogUniform):
        def sample(self, domain: "Integer", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            if not (0 < domain.lower and 0 < domain.upper < float("inf")):
                raise ValueError(f"lograndint needs 0 < lower < upper < inf, got ({domain.lower}, {domain.upper})")
            items = np.exp(rng.uniform(np.log(domain.lower), np.log(domain.upper), size=size))
            return _one_or_many(domain, np.floor(items).astype(int))

    default_sampler_cls = _Uniform

    def __init__(self, lower: int, upper: int):
        self.lower = lower
        self.upper = upper

    def cast(self, value: Any) -> int:
        return int(value)

    def quantized(self, q: int) -> "Integer":
        new = copy.copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def uniform(self) -> "Integer":
        new = copy.copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: object = _MISSING) -> "Integer":
        if base is not _MISSING:
            _warn_base()
        _check_log_bounds(self.lower, self.upper)
        new = copy.copy(self)
        new.set_sampler(self._LogUniform())
        return new

    def is_valid(self, value: int) -> bool:
        return self.lower <= value <= self.upper

    @property
    def domain_str(self) -> str:
        return f"({self.lower}, {self.upper})"


def _check_log_bounds(lower: float, upper: float) -> None:
    for name, bound in (("lower", lower), ("upper", upper)):
        if not 0 < bound < float("inf"):
            raise ValueError(
                f"LogUniform requires a {name} bound greater than 0. Got: {bound}. Did you pass a variable that has "
                "been log-transformed? If so, pass the non-transformed value instead."
            )


class Categorical(Domain):
    """One of a list of values, of any types."""

    class _Uniform(Uniform):
        def sample(self, domain: "Categorical", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            rng = _as_rng(random_state)
            # Indices, not rng.choice(categories): numpy would coerce mixed
            # categories (1, "a", None) to one dtype.
            indices = rng.choice(np.arange(0, len(domain.categories)), size=size)
            return _one_or_many(domain, [domain.categories[i] for i in indices])

    default_sampler_cls = _Uniform

    def __init__(self, categories: Sequence):
        self.categories = list(categories)

    def uniform(self) -> "Categorical":
        new = copy.copy(self)
        new.set_sampler(self._Uniform())
        return new

    def grid(self) -> "Categorical":
        new = copy.copy(self)
        new.set_sampler(Grid())
        return new

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, item: int) -> Any:
        return self.categories[item]

    def is_valid(self, value: Any) -> bool:
        return value in self.categories

    @property
    def domain_str(self) -> str:
        return f"{self.categories}"


class Function(Domain):
    """Values computed by a function of no arguments, or of one: the config
    resolved so far (see sample_from)."""

    class _CallSampler(BaseSampler):
        def sample(self, domain: "Function", config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
            if domain.pass_config:
                if isinstance(config, list):
                    items = [domain.func(config[i]) for i in range(size)]
                else:
                    items = [domain.func(config) for _ in range(size)]
            else:
                items = [domain.func() for _ in range(size)]
            return _one_or_many(domain, items)

    default_sampler_cls = _CallSampler

    def __init__(self, func: Callable):
        sig = inspect.signature(func)
        try:
            sig.bind({})
            pass_config = True
        except TypeError:
            try:
                sig.bind()
            except TypeError as exc:
                raise ValueError(
                    "The function passed to a `Function` parameter must be callable with either 0 or 1 parameters."
                ) from exc
            pass_config = False
        self.pass_config = pass_config
        self.func = func

    def is_function(self) -> bool:
        return True

    def is_valid(self, value: Any) -> bool:
        return True

    @property
    def domain_str(self) -> str:
        return f"{self.func}()"


class Quantized(Sampler):
    """Wraps a sampler, rounding its values to multiples of q."""

    def __init__(self, sampler: Sampler, q: Union[float, int]):
        if not sampler:
            raise ValueError("Quantized() expects a sampler instance")
        self.sampler = sampler
        self.q = q

    def get_sampler(self) -> Sampler:
        return self.sampler

    def __str__(self) -> str:
        return f"Quantized({self.sampler}, q={self.q})"

    def sample(self, domain: Domain, config: Any = None, size: int = 1, random_state: RandomState = None) -> Any:
        rng = _as_rng(random_state)
        if self.q == 1:
            return self.sampler.sample(domain, config, size, random_state=rng)
        inner = copy.copy(domain)
        inner.lower = np.ceil(domain.lower / self.q) * self.q
        inner.upper = np.floor(domain.upper / self.q) * self.q
        values = self.sampler.sample(inner, config, size, random_state=rng)
        quantized = np.round(np.divide(values, self.q)) * self.q
        if not isinstance(quantized, np.ndarray):
            return domain.cast(quantized)
        return [domain.cast(v) for v in quantized]


def sample_from(func: Callable[[Any], Any]) -> Function:
    """A value computed by func, for conditional and dependent parameters.

    func takes no argument, or one: the trial's config as resolved so far.
    That argument reads both ways Ray's have: as the config
    (``config["a"]``, ``config.get("a")``) and as a spec whose ``config``
    holds it (``spec.config.a``, ``spec["config"]["a"]``); nested dicts read
    the same way. Reading a value that is not resolved yet defers func to a
    later pass, so the order of keys in param_space does not matter (20
    passes at most, as in Ray). A config key named "config" shadows the
    spec form.

    Example::

        {"a": tune.randint(5, 10),
         "b": tune.sample_from(lambda spec: np.random.randint(0, spec.config.a))}
    """
    return Function(func)


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from [lower, upper)."""
    return Float(lower, upper).uniform()


def quniform(lower: float, upper: float, q: float) -> Float:
    """A uniform float rounded to a multiple of q; upper is reachable.

    lower and upper must be multiples of q.
    """
    return Float(lower, upper).uniform().quantized(q)


def loguniform(lower: float, upper: float, base: object = _MISSING) -> Float:
    """A float whose logarithm is uniform in [log lower, log upper).

    Args:
        lower: the lower bound, greater than 0 (e.g. 1e-4).
        upper: the upper bound (e.g. 1e-2).
        base: deprecated and ignored, as in Ray.
    """
    if base is not _MISSING:
        _warn_base()
    return Float(lower, upper).loguniform()


def qloguniform(lower: float, upper: float, q: float, base: object = _MISSING) -> Float:
    """A log-uniform float rounded to a multiple of q; upper is reachable."""
    if base is not _MISSING:
        _warn_base()
    return Float(lower, upper).loguniform().quantized(q)


def choice(categories: Sequence) -> Categorical:
    """One of categories, each equally likely."""
    return Categorical(categories).uniform()


def randint(lower: int, upper: int) -> Integer:
    """An integer drawn uniformly from lower (inclusive) to upper (exclusive)."""
    return Integer(lower, upper).uniform()


def lograndint(lower: int, upper: int, base: object = _MISSING) -> Integer:
    """An integer, floor of a log-uniform draw from [lower, upper): upper is excluded."""
    if base is not _MISSING:
        _warn_base()
    return Integer(lower, upper).loguniform()


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A uniform integer rounded to a multiple of q.

    With q > 1 upper is included (rounding reaches it); with q == 1 this is
    randint, upper excluded, as in Ray.
    """
    return Integer(lower, upper).uniform().quantized(q)


def qlograndint(lower: int, upper: int, q: int, base: object = _MISSING) -> Integer:
    """A log-uniform integer rounded to a multiple of q; upper is reachable when q > 1."""
    if base is not _MISSING:
        _warn_base()
    return Integer(lower, upper).loguniform().quantized(q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float drawn from a normal distribution."""
    return Float(None, None).normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float rounded to a multiple of q."""
    return Float(None, None).normal(mean, sd).quantized(q)


__all__ = [
    "Categorical",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "Quantized",
    "Sampler",
    "choice",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "uniform",
]
