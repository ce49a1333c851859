"""Sign-in: NativeAuthenticator (bcrypt passwords in the hub database) seeded
with the accounts listed in classroom.yaml, so a demo or small class works
the moment the hub starts, and students can still change their password."""

from __future__ import annotations

import json
from pathlib import Path

import bcrypt
from jupyterhub.handlers.login import LoginHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import Dict, Unicode


class ClassroomAuthenticator(NativeAuthenticator):
    seed_passwords = Dict(help="username -> password of accounts to create at start-up").tag(config=True)
    roster_hashes_file = Unicode(
        "", help="JSON of username -> bcrypt hash that `d2lhub roster import` wrote; read at sign-in"
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_accounts()

    def seed_accounts(self) -> None:
        for name, password in self.seed_passwords.items():
            info = UserInfo.find(self.db, name)
            if info is None:
                info = UserInfo(username=name, password=bcrypt.hashpw(password.encode(), bcrypt.gensalt()))
                self.db.add(info)  # set once: a password the user changed later is theirs
            info.is_authorized = True
        self.db.commit()

    def get_handlers(self, app):
        """JupyterHub's own sign-in page (branded by d2lhub/hub/templates/login.html) instead of
        NativeAuthenticator's, whose form lacks the stock page's accessible markup."""
        return [(path, LoginHandler if path == r"/login" else handler) for path, handler in super().get_handlers(app)]

    async def authenticate(self, handler, data):
        self.adopt_roster_account(self.normalize_username(data.get("username", "")))
        return await super().authenticate(handler, data)

    def adopt_roster_account(self, name: str) -> None:
        """A user the roster import created signs in with the password it generated (until they change it)."""
        if not self.roster_hashes_file or UserInfo.find(self.db, name) is not None:
            return
        try:
            hashes = json.loads(Path(self.roster_hashes_file).read_text())
        except FileNotFoundError:
            return
        if name in hashes:
            self.db.add(UserInfo(username=name, password=hashes[name].encode(), is_authorized=True))
            self.db.commit()
