"""The registries: advantage estimators, policy losses, aggregations and algorithms, by name.

Each kind of piece is registered by a decorator and looked up by name; an unknown name raises
``ValueError`` with the closest valid one. An *algorithm* ties the pieces together: it is a
pydantic model of its parameters (defaults = its paper and reference code) that names its
advantage estimator and its policy loss::

    @register_estimator("median_baseline")
    def median_baseline(rewards, group_ids) -> AdvantageResult: ...

    @register_algorithm("median_grpo", paper="my paper, arXiv 0000.00000")
    class MedianGRPO(PPOClipParams):
        estimator: ClassVar[str] = "median_baseline"
        policy_loss: ClassVar[str] = "ppo_clip"

A user's module doing this trains from the CLI with ``algorithm.plugins: [my_module]``
(:func:`import_plugins` runs before the config is validated).

Estimators are called (``compute_advantages``) with the algorithm's parameters that match their
keyword arguments, plus ``uniforms`` (per-row random numbers keyed by what they are for) if
they ask for it. Policy
losses are called as ``fn(inputs: LossInputs, params) -> (loss, parts)`` and declare the
parameter model they need (``register_policy_loss(name, params=...)``); an algorithm whose
parameters lack what its loss needs is refused at registration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from oreal.names import choose

__all__ = [
    "AGGREGATIONS",
    "ALGORITHMS",
    "ESTIMATORS",
    "POLICY_LOSSES",
    "ZERO_AT_ZERO_ADVANTAGE",
    "algorithm_class",
    "algorithm_params",
    "available_algorithms",
    "get_aggregation",
    "get_estimator",
    "get_policy_loss",
    "import_plugins",
    "register_aggregation",
    "register_algorithm",
    "register_estimator",
    "register_policy_loss",
]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

ESTIMATORS: dict[str, Callable[..., Any]] = {}
POLICY_LOSSES: dict[str, tuple[Callable[..., Any], type]] = {}
#: Policy losses whose policy term of a row is exactly 0 when the row's advantages are all 0.
ZERO_AT_ZERO_ADVANTAGE: set[str] = set()
AGGREGATIONS: dict[str, Callable[..., Any]] = {}
ALGORITHMS: dict[str, type] = {}


def register_estimator(name: str) -> Callable[[F], F]:
    """Register ``fn(rewards [B], group_ids [B], **params) -> AdvantageResult`` as ``name``."""

    def add(fn: F) -> F:
        ESTIMATORS[name] = fn
        return fn

    return add


def register_policy_loss(
    name: str, *, params: type, zero_at_zero_advantage: bool = False
) -> Callable[[F], F]:
    """Register ``fn(inputs: LossInputs, params) -> (loss, parts)``; ``params`` is the
    parameter model (a base class) whose fields the loss reads. ``zero_at_zero_advantage``
    declares that a row whose advantages are all 0 adds exactly nothing to the policy term
    (then the update may skip its backward, :func:`oreal.algorithms.rows_without_gradient`)."""

    def add(fn: F) -> F:
        POLICY_LOSSES[name] = (fn, params)
        if zero_at_zero_advantage:
            ZERO_AT_ZERO_ADVANTAGE.add(name)
        else:
            ZERO_AT_ZERO_ADVANTAGE.discard(name)
        return fn

    return add


def register_aggregation(name: str) -> Callable[[F], F]:
    """Register ``fn(values [b, T], mask [b, T], normalizers) -> Tensor`` as ``name``."""

    def add(fn: F) -> F:
        AGGREGATIONS[name] = fn
        return fn

    return add


def register_algorithm(name: str, *, paper: str = "") -> Callable[[C], C]:
    """Register a parameter model as the algorithm ``name``.

    The class must set the class variables ``estimator`` and ``policy_loss`` (registered
    names) and ``binary`` (it learns from correct/incorrect only); ``paper`` is its citation.
    Its fields are the algorithm's parameters, their defaults the published values.
    """

    def add(cls: C) -> C:
        for attribute in ("estimator", "policy_loss", "binary"):
            if not hasattr(cls, attribute):
                raise TypeError(f"algorithm {name!r}: class {cls.__name__} lacks {attribute!r}")
        get_estimator(cls.estimator)
        _, needed = get_policy_loss_entry(cls.policy_loss)
        if not issubclass(cls, needed):
            raise TypeError(
                f"algorithm {name!r}: policy loss {cls.policy_loss!r} needs parameters of "
                f"{needed.__name__}; derive {cls.__name__} from it"
            )
        cls.name = name  # type: ignore[attr-defined]
        cls.paper = paper  # type: ignore[attr-defined]
        ALGORITHMS[name] = cls
        return cls

    return add


def get_estimator(name: str) -> Callable[..., Any]:
    return ESTIMATORS[choose(name, ESTIMATORS, "advantage estimator")]


def get_policy_loss_entry(name: str) -> tuple[Callable[..., Any], type]:
    return POLICY_LOSSES[choose(name, POLICY_LOSSES, "policy loss")]


def get_policy_loss(name: str) -> Callable[..., Any]:
    return get_policy_loss_entry(name)[0]


def get_aggregation(name: str) -> Callable[..., Any]:
    return AGGREGATIONS[choose(name, AGGREGATIONS, "aggregation")]


def algorithm_class(name: str) -> type:
    """The parameter model of a registered algorithm (raises with the closest name)."""
    return ALGORITHMS[choose(name, ALGORITHMS, "algorithm")]


def available_algorithms() -> list[str]:
    return list(ALGORITHMS)


def algorithm_params(name: str, **params: Any) -> Any:
    """The validated parameter model of algorithm ``name`` with ``params`` overriding defaults.

    Raises ``ValueError`` naming the closest algorithm for an unknown name, and, for a bad
    parameter, the algorithm, the key (with the closest valid key for a typo) and the value.
    """
    from pydantic import ValidationError

    from oreal.names import closest_name

    cls = algorithm_class(name)
    try:
        return cls.model_validate(params)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            if item["type"] == "extra_forbidden":
                close = closest_name(key, cls.model_fields)
                hint = f" (did you mean {close!r}?)" if close else ""
                valid = ", ".join(cls.model_fields)
                problems.append(
                    f"unknown parameter {key!r}{hint}; {name} takes: {valid} "
                    "(parameters set for another method are cleared by algorithm.params={})"
                )
            else:
                message = item["msg"].removeprefix("Value error, ")
                problems.append(f"{key}: {message} (got {item.get('input')!r})")
        raise ValueError(f"algorithm {name!r}: " + "; ".join(problems)) from None


def import_plugins(plugins: Iterable[str]) -> None:
    """Import user modules that register algorithms: ``package.module`` or ``path/to/file.py``.

    Raises ``ValueError`` naming the plugin that cannot be imported.
    """
    from oreal.plugins import import_module

    for plugin in plugins:
        try:
            import_module(plugin)
        except ValueError as error:
            raise ValueError(f"algorithm plugin: {error}") from None
