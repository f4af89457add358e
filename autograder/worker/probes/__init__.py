"""Probes run by the worker; importing this package registers all of them in `registry.PROBES`: every module of the
package (one per part that needs more than the generic `call` probe)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
