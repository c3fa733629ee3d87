"""The spec language: pydantic models, YAML loading with source positions, overrides, JSON Schema.

Imports neither jax nor flax."""

from pcc.spec.models import Spec

__all__ = ["Spec"]
