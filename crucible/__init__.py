"""Crucible: live runtime for validated champions.

Entry points for the CLI: :func:`crucible.runtime.run_live` (``crucible live``) and
:func:`crucible.status.status` (``crucible status``, rendered by ``commands.crucible.status_view``).
"""
