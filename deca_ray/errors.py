"""Domain errors whose messages say what the user should change."""

from __future__ import annotations


class DecaError(Exception):
    """Base class of every error deca_ray raises on purpose (CLI exits non-zero with its text)."""


class ConfigError(DecaError):
    """A configuration value is invalid, unknown or inconsistent with another one."""


class TopologyError(DecaError):
    """A communication graph or mixing matrix cannot be used (disconnected, not stochastic...)."""


class DataError(DecaError):
    """A data source is missing, unreadable or lacks the fields the config names."""


class ModelError(DecaError):
    """A model cannot be found or loaded."""


class RuntimeSetupError(DecaError):
    """The Ray cluster or the tracking store cannot be set up as configured."""
