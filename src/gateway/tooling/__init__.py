"""Operator tooling: template checks, the dry-run renderer and snapshot cases."""
