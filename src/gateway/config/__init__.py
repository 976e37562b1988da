"""Configuration: load gateway.yaml, merge presets, validate, compile into a Runtime snapshot."""
