"""Every exception shadow-dagster defines shares one base and keeps its builtin kind."""

import importlib
import inspect
import pkgutil

import shadow_dagster
from shadow_dagster import ShadowDagsterError


def _exception_classes():
    out = {}
    for mod in pkgutil.walk_packages(shadow_dagster.__path__, prefix="shadow_dagster."):
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                out[f"{module.__name__}.{name}"] = obj
    return out


def test_every_exception_class_derives_from_the_one_base():
    found = _exception_classes()
    assert len(found) >= 15, sorted(found)
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, ShadowDagsterError))
    assert outside == []


def test_each_keeps_the_builtin_kind_callers_already_catch():
    from shadow_dagster.speculation.isolation import ShadowIsolationError
    from shadow_dagster.store.engine import StoreConfigError
    from shadow_dagster.store.signal_store import SignalStoreUnavailable

    assert issubclass(StoreConfigError, ValueError) and issubclass(SignalStoreUnavailable, RuntimeError)
    assert issubclass(ShadowIsolationError, PermissionError)
