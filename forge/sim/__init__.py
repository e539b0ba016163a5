"""HF-ABM: numba limit-order-book market simulator, stylized facts and calibration.

Modules: ``book_nb`` (matching engine kernels), ``book_ref`` (pure-Python
reference book), ``agents_nb`` (agents, predators, event schedule),
``params`` (DSG / scenario vectors), ``market`` (``Simulator``,
``simulate``, ``simulate_bars``, ``SimConfig`` incl. the per-simulation
event budget, ``sim_throughput``), ``facts`` (stylized facts,
``realism_distance``), ``calibrate`` (CMA-ES, ``calibrate``, ``pooled_facts``,
``write_calibration``, ``load_calibration``), ``strategy_sim``
(``simulate_with_strategy``, ``scenario_realism``).
"""
