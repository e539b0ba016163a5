"""Compositions: the code that ties the applications together, above them and below the commands.

- ``serve``: the Forge worker of the closed loop (``forge serve``): claims a Crucible replacement request,
  evolves (Forge), validates (Gauntlet) and publishes survivors for the Crucible to swap in.
- ``supervisor``: that worker as a supervised child of ``crucible live --forge`` (the runtime is handed a
  factory, :func:`loop.supervisor.forge_worker`; it imports no Forge).
- ``honesty``: the pipeline's error rates end to end (evolve → validate on null and planted markets).
- ``bench``: ``forge bench``, whose rows measure the kernel, the evolution and the Crucible's replay.
"""
