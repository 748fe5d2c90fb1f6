"""netlab: a multi-transport networking lab."""

__version__ = "0.1.0"
