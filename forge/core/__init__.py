"""Core utilities: errors, configuration, random streams, artifacts."""
