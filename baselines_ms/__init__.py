"""Baselines of MODIFY, run on the same data, weights and commands as MODIFY itself.

Each baseline registers itself with ``modify_ms.stylizers`` through the ``modify_ms.stylizers``
entry points in setup.py (the library never imports baselines_ms): importing this package
imports nothing, so one baseline that fails to import cannot take the others down.
"""
