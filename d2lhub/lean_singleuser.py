"""`jupyterhub-singleuser` without loading the hub's database layer at start-up.

The single-user server imports `jupyterhub.log` and `jupyterhub.services.auth`, and through
them the hub's ORM and roles (with SQLAlchemy's ORM and Alembic) and the hub's own request
handlers: about a third of a student server's start-up CPU, for code a student server never
runs (it checks tokens over the hub's API; its scope check opens no database). SQLAlchemy's
core still loads: `jupyterhub.utils` names one of its exceptions. Installed in the
student image as `d2lhub_singleuser` and started by `d2lhub-start`.

- The database modules are entered in `sys.modules` as stand-ins (PEP 562 `__getattr__`):
  the first use of any of their names imports the real module, so nothing changes if some
  code path does need them; it only pays then.
- `jupyterhub.log` takes `HealthCheckHandler` from the hub's handlers only to lower the log
  level of the hub's health checks, a handler that never runs in a single-user server; it
  gets a class no handler is an instance of, the same answer for every request here. The
  stand-in package is removed once the server's modules are loaded, so a later import of
  `jupyterhub.handlers` gets the real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED_MODULES = ("jupyterhub.orm", "jupyterhub.roles")
HUB_HANDLERS = "jupyterhub.handlers"


def defer(name: str) -> None:
    """Enter a stand-in for `name` that imports the real module on the first attribute asked of it."""
    stand_in = types.ModuleType(name)
    stand_in.__spec__ = importlib.util.find_spec(name)

    def load(attribute: str):
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        del stand_in.__getattr__
        stand_in.__dict__.update(real.__dict__)  # holders of the stand-in see the real names from now on
        return getattr(real, attribute)

    stand_in.__getattr__ = load
    sys.modules[name] = stand_in


def without_hub_handlers(load: types.FunctionType):
    """Run `load` while `jupyterhub.handlers.pages` is a package holding only a placeholder health-check handler."""
    pages = types.ModuleType(f"{HUB_HANDLERS}.pages")
    pages.HealthCheckHandler = type("HubHealthCheckHandler", (), {})
    handlers = types.ModuleType(HUB_HANDLERS)
    handlers.__path__ = []
    handlers.pages = pages
    sys.modules.update({HUB_HANDLERS: handlers, pages.__name__: pages})
    try:
        return load()
    finally:
        for name in (HUB_HANDLERS, pages.__name__):
            if sys.modules.get(name) in (handlers, pages):
                del sys.modules[name]


def singleuser_main():
    for name in DEFERRED_MODULES:
        if name not in sys.modules:
            defer(name)
    return without_hub_handlers(lambda: importlib.import_module("jupyterhub.singleuser")).main


if __name__ == "__main__":
    sys.exit(singleuser_main()())
