"""Snapshot testing helpers for operators' gateway.yaml mappings."""
