"""A database error caused by a full disk, told in words that name the folder (the hub process only)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import Engine

from d2lhub.diskspace import full_message


def is_disk_full(error: BaseException) -> bool:
    original = getattr(error, "orig", error)
    if isinstance(original, sqlite3.OperationalError):
        return "database or disk is full" in str(original)
    return isinstance(original, OSError) and original.errno == errno.ENOSPC


def explain_disk_full(folder: Path) -> None:
    """In this process, a database error caused by a full disk carries a message naming the folder.

    JupyterHub shows an exception's `jupyterhub_message` on its error page and rolls its
    session back for any SQLAlchemy error, so the error stays an SQLAlchemy one.
    """

    @event.listens_for(Engine, "handle_error")
    def _name_the_full_folder(context) -> None:
        error = context.sqlalchemy_exception
        if isinstance(error, sqlalchemy.exc.SQLAlchemyError) and is_disk_full(context.original_exception):
            error.jupyterhub_message = full_message(folder)
