"""The tool's keys for the LMS: `d2lhub lti rotate-key` and `d2lhub lti jwks`."""

from __future__ import annotations

import json

import typer

from d2lhub import ltistate
from d2lhub.cli import common
from d2lhub.cli.common import DEFAULT_CONFIG, ConfigOption

lti_app = typer.Typer(help="The tool's signing keys for the LMS (auth.kind: lti13).", no_args_is_help=True)


@lti_app.command("rotate-key")
def rotate_key(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Make a new signing key; the previous one stays in the JWKS until the next rotation. Users are kept."""
    classroom = common.load_to_write(config_file, "rotate the LTI key")
    path = ltistate.new_key(classroom.hub.state_dir)
    common.say(f"new key {path.stem} ({path}, readable by you only); the LMS reads it from /hub/lti13/jwks")


@lti_app.command("jwks")
def show_jwks(config_file: ConfigOption = DEFAULT_CONFIG) -> None:
    """Print the tool's public keys (JWKS), for an LMS that wants them pasted rather than fetched."""
    classroom = common.load(config_file)
    ltistate.ensure_key(classroom.hub.state_dir)
    typer.echo(json.dumps(ltistate.jwks(classroom.hub.state_dir), indent=1))
