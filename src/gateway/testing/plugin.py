"""Pytest plugin: snapshot-test an operator's mappings (filled in below)."""
