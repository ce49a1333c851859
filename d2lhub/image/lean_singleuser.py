"""`jupyterhub-singleuser` without loading the hub's database layer at start-up.

The single-user server imports `jupyterhub.log`, `jupyterhub.utils` and
`jupyterhub.services.auth`, and through them the hub's ORM and roles, SQLAlchemy, Alembic and
the hub's own request handlers: nearly half of a student server's start-up CPU, for code a
student server never runs (it checks tokens over the hub's API; its scope check opens no
database). Installed in the student image as `d2lhub_singleuser` and started by `d2lhub-start`.

While the server's modules load, `sys.modules` holds stand-ins for these:

- The database modules (`jupyterhub.orm`, `jupyterhub.roles`, `sqlalchemy`): a module that
  imports the real one on the first name asked of it and answers from there, so nothing
  changes if some code path does need them (an instructor's formgrader uses SQLAlchemy); it
  only pays then.
- Two names that are imported only to be compared against: `jupyterhub.log` checks
  requests against the hub's `HealthCheckHandler` (to log the hub's health checks quietly),
  and `jupyterhub.utils` catches SQLAlchemy's base error in `catch_db_error`, a decorator of
  the hub's database handlers. Neither that handler nor the decorated ones run in a
  single-user server, so placeholders give the same answers.

Once the server's modules are loaded the stand-ins leave `sys.modules`: any later import
(`import sqlalchemy.orm`, `jupyterhub.handlers`) is an ordinary one of the real module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Callable

DEFERRED_MODULES = ("jupyterhub.orm", "jupyterhub.roles", "sqlalchemy")


def forwarding_module(name: str) -> types.ModuleType:
    """A module that imports `name` on the first name asked of it (PEP 562) and answers from there."""
    stand_in = types.ModuleType(name)
    stand_in.__getattr__ = lambda attribute: getattr(importlib.import_module(name), attribute)
    return stand_in


def stand_in_modules() -> dict[str, types.ModuleType]:
    """Every stand-in by module name: placeholders for the two compared names, forwarders for the database layer."""
    pages = types.ModuleType("jupyterhub.handlers.pages")
    pages.HealthCheckHandler = type("HubHealthCheckHandler", (), {})
    handlers = types.ModuleType("jupyterhub.handlers")
    handlers.__path__ = []
    handlers.pages = pages
    database_errors = types.ModuleType("sqlalchemy.exc")
    database_errors.SQLAlchemyError = type("SQLAlchemyError", (Exception,), {})
    deferred = [forwarding_module(name) for name in DEFERRED_MODULES]
    return {module.__name__: module for module in (handlers, pages, database_errors, *deferred)}


def with_stand_ins(load: Callable[[], types.ModuleType]) -> types.ModuleType:
    stand_ins = {name: module for name, module in stand_in_modules().items() if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        return load()
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def singleuser_main():
    return with_stand_ins(lambda: importlib.import_module("jupyterhub.singleuser")).main


if __name__ == "__main__":
    sys.exit(singleuser_main()())
