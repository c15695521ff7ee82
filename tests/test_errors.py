"""The error tree of :mod:`webterm.errors` is the one the code has."""

from __future__ import annotations

import importlib
import pkgutil

import webterm
from webterm.errors import WebtermError


def all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(all_subclasses(c) for c in found)) if found else found


def test_every_error_is_in_the_documented_tree_with_an_http_status_hint() -> None:
    for module in pkgutil.walk_packages(webterm.__path__, "webterm."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    errors = {e for e in all_subclasses(WebtermError) if not e.__name__.startswith("_")}
    assert len(errors) >= 15
    documented = importlib.import_module("webterm.errors").__doc__ or ""
    for error in errors:
        assert f"── {error.__name__} " in documented, error
        assert 400 <= error.error_status_hint <= 599, error
