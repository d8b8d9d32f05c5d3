"""Tests name recipes; ``build_loader`` takes the resolved spec inside a :class:`LoaderConfig`."""

from __future__ import annotations

from typing import Any

from headcam.pipelines.loader import LoaderConfig
from headcam.pipelines.spec import resolve_spec


def config(recipe: str, augment: dict[str, Any] | list[str] | None = None, **kw: Any) -> LoaderConfig:
    """``LoaderConfig`` for ``recipe`` changed key by key by ``augment``; ``kw``: the other fields."""
    return LoaderConfig(resolve_spec(recipe, augment), **kw)
