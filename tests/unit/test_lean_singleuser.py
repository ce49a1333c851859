"""The student server's launcher leaves the hub's database layer out, yet every name it defers still resolves.

Each case runs in a fresh interpreter: the launcher rewires `sys.modules`.
"""

import json
import subprocess
import sys
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parents[2] / "d2lhub" / "image" / "lean_singleuser.py"


def run_python(code: str) -> dict:
    prelude = f"import json, sys\nsys.path.insert(0, {str(LAUNCHER.parent)!r})\nimport lean_singleuser\n"
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_server_modules_load_without_the_database_layer():
    found = run_python(
        "main = lean_singleuser.singleuser_main()\n"
        "print(json.dumps({'main': callable(main), 'loaded': [m for m in "
        "('sqlalchemy.engine', 'sqlalchemy.exc', 'sqlalchemy.orm', 'alembic', 'jupyterhub.handlers.base', "
        "'jupyterhub.handlers.pages') if m in sys.modules]}))"
    )
    assert found == {"main": True, "loaded": []}


def test_deferred_names_resolve_to_the_real_modules_on_first_use():
    found = run_python(
        "lean_singleuser.singleuser_main()\n"
        "import jupyterhub.scopes as scopes\n"
        "user = scopes.orm.User\n"
        "import jupyterhub.orm, jupyterhub.handlers.pages as pages, sqlalchemy.exc\n"
        "print(json.dumps({'same_class': user is jupyterhub.orm.User, 'orm_loaded': 'sqlalchemy.orm' in sys.modules,"
        " 'hub_health_check': pages.HealthCheckHandler.__module__,"
        " 'database_error': sqlalchemy.exc.SQLAlchemyError.__module__, 'column': sqlalchemy.Column.__name__}))"
    )
    assert found == {"same_class": True, "orm_loaded": True, "hub_health_check": "jupyterhub.handlers.pages",
                     "database_error": "sqlalchemy.exc", "column": "Column"}
