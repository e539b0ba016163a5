"""Execution kernel: intents, venue rounding, Kelly sizing and the execution policy (IEL inference).

Modules: ``intents`` (target change -> execution intent: side, size, urgency, deadline; tick / lot /
minimum-notional rounding; fractional Kelly sizing), ``policy_nb`` (the numba inference kernel: state
slots, actions, linear argmax policy), ``policy`` (``ExecutionPolicy``: weights, JSON, sha256),
``lob_env`` (the limit-order-book simulator as an execution environment, exact queue position).
The CMA-ES trainer is a Forge application (``forge.execution_train``), not part of this kernel.
"""
