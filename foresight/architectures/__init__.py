"""The architecture registry: everything Foresight knows about a model family.

Each module of `foresight/architectures/families/` defines one `Architecture`
(hook modules, projection layout, graph rule); the registry finds them, so
adding a family is adding one file there. A model or config is matched by its
transformers `model_type`. `hooks.Adapter` resolves the modules on a model
object; `parameters.ComponentMap` maps components to the weights they own
(for gradients, masks and LoRA).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from torch import nn

from foresight.architectures import families
from foresight.architectures.spec import Architecture, Dims, Role
from foresight.graph import Graph


class UnsupportedArchitecture(ValueError):
    """A model whose family has no `Architecture` in the registry."""


def _discover() -> dict[str, Architecture]:
    registry: dict[str, Architecture] = {}
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda i: i.name):
        architecture = importlib.import_module(f"{families.__name__}.{info.name}").ARCHITECTURE
        for model_type in architecture.model_types:
            registry[model_type] = architecture
    return registry


REGISTRY: dict[str, Architecture] = _discover()


def supported_model_types() -> tuple[str, ...]:
    """Every transformers `model_type` that has an architecture, sorted."""
    return tuple(sorted(REGISTRY))


def base_model(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def architecture_of(model_or_config: Any) -> Architecture:
    """The architecture of a model (PEFT-wrapped or not) or of a transformers config.

    UnsupportedArchitecture names the supported model types and how to add one."""
    config = getattr(base_model(model_or_config), "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in REGISTRY:
        raise UnsupportedArchitecture(
            f"model_type {model_type!r} is not supported (supported: {', '.join(supported_model_types())}); "
            "to add a family, add a module defining ARCHITECTURE to foresight/architectures/families/"
        )
    return REGISTRY[model_type]


def graph_of(model_or_config: Any) -> Graph:
    """The computational graph of a supported model or config (no weights needed)."""
    config = getattr(base_model(model_or_config), "config", model_or_config)
    architecture = architecture_of(config)
    dims = Dims.of(config)
    return Graph(dims.n_layers, dims.n_heads, architecture.parallel_residual(config))


__all__ = [
    "REGISTRY",
    "Architecture",
    "Dims",
    "Role",
    "UnsupportedArchitecture",
    "architecture_of",
    "base_model",
    "graph_of",
    "supported_model_types",
]
