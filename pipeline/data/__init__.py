"""Data sources, the prepared-split format and the Lightning data module."""
