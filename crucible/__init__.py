"""Crucible: live runtime for validated champions."""
