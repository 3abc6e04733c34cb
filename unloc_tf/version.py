"""The package version (one place: setup.py and export_info.json read it)."""

__version__ = "0.1.0"
