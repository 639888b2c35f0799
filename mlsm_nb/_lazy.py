"""Front doors that import their names on first use.

The code inside every executed notebook imports a little of mlsm_nb; a front
door that imported its whole package eagerly would make each execution pay
for pandas, nbformat and friends it never uses.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, importing each name from its module (`where`) on first use."""
    namespace = import_module(package).__dict__

    def __getattr__(name: str):
        if name in where:
            value = getattr(import_module(where[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(namespace.get("__all__", where))

    return __getattr__, __dir__
