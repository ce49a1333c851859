"""`d2lhub roster import`: a class list (CSV) -> hub users, an offering's groups, its gradebook's students.

The whole file is checked before anything is applied: one bad row refuses the
file, naming each problem by line. Applying is idempotent: users, groups and
students that exist are left as they are; only new users get a password,
generated here, stored for the hub as a bcrypt hash (the authenticator adopts
it at first sign-in) and written in clear to a 0600 file for the instructor.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from d2lhub import hubapi
from d2lhub.config import NAME_PATTERN, Classroom
from d2lhub.courses import Offering
from d2lhub.grading import workflow
from d2lhub.state import ROSTER_HASHES_FILE, write_private

COLUMNS = {"username": "username", "first name": "first_name", "last name": "last_name", "email": "email", "role": "role"}
PASSWORDS_FILE = "roster-passwords.csv"
TEXT = r"^[^\x00-\x1f\x7f<>]*$"  # printable, nothing that reads as markup


class RosterError(Exception):
    """The roster file is refused (nothing applied), or the hub refused a change; says where and why."""


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(pattern=NAME_PATTERN)
    first_name: str = Field(max_length=100, pattern=TEXT)
    last_name: str = Field(max_length=100, pattern=TEXT)
    email: str = Field(pattern=r"^([^@\s<>]+@[^@\s<>]+\.[^@\s<>]+)?$")
    role: Literal["student", "instructor", "ta"]


def parse(data: bytes, source: str = "roster") -> list[Row]:
    """Every row, or RosterError listing each bad line ("FILE: line N: reason")."""
    if not data.strip():
        raise RosterError(f"{source}: line 1: the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError(f"{source}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    lines = list(csv.reader(io.StringIO(text, newline="")))
    header = [name.strip().lower().replace("_", " ") for name in lines[0]]
    missing = [name for name in COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown:
        problems = [f"missing column(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise RosterError(f"{source}: line 1: {'; '.join(problems)} (expected: {', '.join(COLUMNS)})")
    errors, rows, seen = [], [], {}
    for number, fields in enumerate(lines[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            errors.append(f"{source}: line {number}: expected {len(header)} fields, got {len(fields)}")
            continue
        try:
            row = Row.model_validate({COLUMNS[h]: value for h, value in zip(header, fields)})
        except ValidationError as exc:
            for item in exc.errors():
                field = item["loc"][0] if item["loc"] else "row"
                errors.append(f"{source}: line {number}: {field}: {item['msg']} (got {item.get('input')!r})")
            continue
        if row.username in seen:
            errors.append(f"{source}: line {number}: username {row.username} is already on line {seen[row.username]}")
            continue
        seen[row.username] = number
        rows.append(row)
    if errors:
        raise RosterError("\n".join(errors))
    if not rows:
        raise RosterError(f"{source}: line 2: no people listed under the header")
    return rows


def load(path: Path) -> list[Row]:
    try:
        return parse(path.read_bytes(), str(path))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise RosterError(f"{path}: {exc.strerror}") from None


@dataclass
class Report:
    created: list[str]
    existing: list[str]
    passwords_file: Path | None


def hub_call(classroom: Classroom, path: str, method: str = "GET", ok: tuple[int, ...] = (200, 201), **kwargs):
    response = hubapi.api(classroom, path, method, **kwargs)
    if response.status_code not in ok:
        raise RosterError(f"the hub refused {method} {path}: {response.status_code} {response.text[:200]}")
    return response


def apply(classroom: Classroom, offering: Offering, rows: list[Row]) -> Report:
    """The rows into `offering`: students into its students' group and gradebook, instructors and TAs into its graders'."""
    if not hubapi.answers(classroom):
        raise RosterError("no hub answers; start it with `make up` (nothing was changed)")
    state = classroom.hub.state_dir
    existing = {user["name"] for user in hub_call(classroom, "/users").json()}
    new = [row for row in rows if row.username not in existing]
    passwords_file = None
    if new:
        passwords = {row.username: secrets.token_urlsafe(9) for row in new}
        hashes_path = state / ROSTER_HASHES_FILE
        hashes = json.loads(hashes_path.read_text()) if hashes_path.exists() else {}
        hashes.update({n: bcrypt.hashpw(p.encode(), bcrypt.gensalt()).decode() for n, p in passwords.items()})
        write_private(hashes_path, json.dumps(hashes, indent=1, sort_keys=True))
        passwords_file = state / PASSWORDS_FILE
        old = passwords_file.read_text() if passwords_file.exists() else "username,password\n"
        write_private(passwords_file, old + "".join(f"{n},{p}\n" for n, p in passwords.items()))
        hub_call(classroom, "/users", "POST", json={"usernames": [row.username for row in new]})
    for group, roles in ((offering.students_group, {"student"}), (offering.graders_group, {"instructor", "ta"})):
        members = [row.username for row in rows if row.role in roles]
        hub_call(classroom, f"/groups/{group}", "POST", ok=(201, 409))
        if members:
            hub_call(classroom, f"/groups/{group}/users", "POST", json={"users": members})
    with workflow.gradebook(classroom, offering) as gb:
        for row in rows:
            if row.role == "student":
                gb.update_or_create_student(row.username, first_name=row.first_name, last_name=row.last_name, email=row.email)
    return Report(
        created=[row.username for row in new],
        existing=[row.username for row in rows if row.username in existing],
        passwords_file=passwords_file,
    )
