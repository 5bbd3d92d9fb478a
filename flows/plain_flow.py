"""Prefect's ``@flow`` for flows whose parameters are plain JSON already (strings, numbers, lists).

Prefect records a run's parameters through FastAPI's ``jsonable_encoder`` (``Flow.serialize_parameters``),
and importing FastAPI for that is a fifth of a second of CPU in every ``evidence ingest`` on a dock,
to convert values that need no converting. Anything else (a path, a date) still goes through Prefect's
own conversion, so what the server records is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow

P = ParamSpec("P")
R = TypeVar("R")


def _is_plain(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


class PlainParametersFlow(Flow[P, R]):
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_is_plain(value) for value in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def plain_flow(**options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``@flow(**options)``, for a flow called with plain JSON parameters."""

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        return PlainParametersFlow(fn=fn, **options)

    return decorate
