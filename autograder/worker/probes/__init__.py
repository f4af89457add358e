"""Probes run by the worker; importing this package registers all of them in `registry.PROBES`."""

from . import call, preprocess, quality, recurrent, samplers, train, transformer  # noqa: F401
