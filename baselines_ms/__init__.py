"""Baselines of MODIFY, run on the same data, weights and commands as MODIFY itself.

Importing this package registers each baseline with ``modify_ms.stylizers`` (the library
never imports baselines_ms); nothing heavier than the configs is imported here.
"""
from .jojogan.stylizer import register as _register_jojogan
from .psp_unpaired.stylizer import register as _register_psp_unpaired

_register_psp_unpaired()
_register_jojogan()
