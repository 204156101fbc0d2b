"""EV charge point controller: the evse daemon and its pure station core."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
