"""Gramians of per-sample Jacobians, computed layer by layer without forming the Jacobian."""

from ._engine import Engine

__all__ = ["Engine"]
