"""The profile picker on the spawn page, from the spawner the hub builds (traits.apply), without Docker.

The picker is the spawner's `options_form` default: it must replace DockerSpawner's own
image `<select>` (the hub allows several images when a GPU profile exists), offer only the
profiles a student's groups allow, and `options_from_form` must refuse anything else with a
message the spawn page can show.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub
from traitlets.config import Config

from d2lhub.config import Classroom
from d2lhub.hub import traits
from d2lhub.hub.facts import Facts
from d2lhub.hub.spawner import ClassroomSpawner
from d2lhub.hub.swarmspawner import ClassroomSwarmSpawner

IMAGES = {"student": "d2lhub/student:1111aaaa", "student_gpu": "d2lhub/student-gpu:2222bbbb"}
PROFILES = [
    {"name": "cpu", "display_name": "CPU <1 core>", "limits": {"cpu": 1, "memory": "2G"}},
    {"name": "gpu", "display_name": "One GPU", "image": "student_gpu", "gpus": 1, "groups": ["gpu-students"]},
]


def config(tmp_path: Path, profiles=PROFILES, kind: str = "docker") -> Config:
    classroom = Classroom.model_validate(
        {"hub": {"state_dir": str(tmp_path / "state")}, "profiles": profiles, "spawner": {"kind": kind},
         "gpus": {"devices": {"local": ["0"]}}}
    )
    facts = Facts(
        config_file=tmp_path / "classroom.yaml", images=dict(IMAGES), network_name="students", hub_address="172.31.0.1",
        proxy_command="configurable-http-proxy", proxy_token="p", cli_token="t", passwords={},
    )
    c = Config()
    traits.apply(c, classroom, facts)
    return c


def user(name: str, *groups: str, uid: int = 3) -> SimpleNamespace:
    """What a spawner reads of JupyterHub's User (as tests/integration/test_gpu_spawner.py does)."""
    return SimpleNamespace(
        name=name, id=uid, escaped_name=name, url=f"/user/{name}/", base_url="/", settings={}, orm_user=None,
        groups=[SimpleNamespace(name=g) for g in groups], admin=False,
    )


def spawner(c: Config, who: SimpleNamespace, kind=ClassroomSpawner) -> ClassroomSpawner:
    return kind(config=c, user=who, hub=Hub())


class Form(HTMLParser):
    """The form's elements, as a browser (and a screen reader) reads them."""

    def __init__(self, html: str):
        super().__init__()
        self.inputs: list[dict] = []
        self.labels: list[dict] = []
        self.selects: list[dict] = []
        self.legends: list[str] = []
        self.fieldsets = 0
        self._text: list[str] | None = None
        self._label: dict | None = None
        self.html = html
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input":
            self.inputs.append(attrs)
        elif tag == "select":
            self.selects.append(attrs)
        elif tag == "fieldset":
            self.fieldsets += 1
        elif tag == "legend":
            self._text = []
        elif tag == "label":
            self._label = {**attrs, "text": ""}

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._label is not None:
            self._label["text"] += data

    def handle_endtag(self, tag):
        if tag == "legend" and self._text is not None:
            self.legends.append("".join(self._text).strip())
            self._text = None
        elif tag == "label" and self._label is not None:
            self.labels.append(self._label)
            self._label = None

    def ids(self) -> set[str]:
        return set(re.findall(r'\bid="([^"]+)"', self.html))


@pytest.fixture(autouse=True)
def fresh_shared_state():
    ClassroomSpawner.reset_shared_state()
    yield
    ClassroomSpawner.reset_shared_state()


# One profile allowed: no form at all ----------------------------------------------------------------


def test_one_profile_means_no_form_and_never_dockerspawners_image_select(tmp_path):
    c = config(tmp_path)
    assert len(c.DockerSpawner.allowed_images) == 2  # DockerSpawner alone would offer a picker of these two
    made = spawner(c, user("ann"))
    assert made.options_form == ""
    assert "<select" not in made.options_form and 'name="image"' not in made.options_form


def test_the_only_profile_of_a_class_means_no_form(tmp_path):
    made = spawner(config(tmp_path, profiles=[{"name": "cpu", "display_name": "CPU"}]), user("ann", "gpu-students"))
    assert made.options_form == ""
    assert made.chosen_profile().name == "cpu"


def test_a_student_outside_the_gpu_group_sees_no_picker(tmp_path):
    made = spawner(config(tmp_path), user("ann", "nbgrader-d2l", "someone-else"))
    assert [p.name for p in made.allowed_profiles()] == ["cpu"]
    assert made.options_form == ""
    assert made.chosen_profile().name == "cpu"


# Two profiles allowed: labelled radios --------------------------------------------------------------


def test_two_profiles_make_labelled_radios_first_checked(tmp_path):
    made = spawner(config(tmp_path), user("gus", "gpu-students"))
    html = made.options_form
    form = Form(html)
    assert not form.selects and 'name="image"' not in html  # not DockerSpawner's image picker
    assert form.fieldsets == 1
    assert form.legends == ["Choose your server"]

    radios = [i for i in form.inputs if i.get("type") == "radio"]
    assert [r["name"] for r in radios] == ["profile", "profile"]
    assert [r["value"] for r in radios] == ["cpu", "gpu"]
    assert "checked" in radios[0] and "checked" not in radios[1]
    ids = form.ids()
    assert len(ids) == len(re.findall(r'\bid="', html)), "ids are not unique"
    labels = {label["for"]: label["text"] for label in form.labels}
    for radio in radios:
        assert radio["id"] in labels, f"radio {radio['value']} has no <label for=...>"
        assert radio["aria-describedby"] in ids  # its limits are read with it
    assert labels[radios[0]["id"]] == "CPU <1 core>"  # escaped in the HTML, read back as text
    assert "CPU &lt;1 core&gt;" in html
    assert labels[radios[1]["id"]] == "One GPU"
    assert "1 CPU, 2 GB memory" in html  # the cpu profile's own limits
    assert "1 GPU" in html


def test_the_swarm_spawner_offers_the_same_picker(tmp_path):
    made = spawner(config(tmp_path, kind="swarm"), user("gus", "gpu-students"), ClassroomSwarmSpawner)
    radios = [i for i in Form(made.options_form).inputs if i.get("type") == "radio"]
    assert [r["value"] for r in radios] == ["cpu", "gpu"]


# What the form posts --------------------------------------------------------------------------------


def test_a_gpu_student_may_choose_the_gpu_profile(tmp_path):
    made = spawner(config(tmp_path), user("gus", "gpu-students"))
    assert made.run_options_from_form({"profile": ["gpu"]}) == {"profile": "gpu"}  # as JupyterHub calls it
    assert made.options_from_form({"profile": ["cpu"]}) == {"profile": "cpu"}
    assert made.options_from_form({}) == {}  # no choice posted: the first allowed profile


def test_a_student_outside_the_group_cannot_post_the_gpu_profile(tmp_path):
    made = spawner(config(tmp_path), user("ann"))
    with pytest.raises(ValueError, match=r"'gpu' is not offered to ann \(offered: cpu\)"):
        made.run_options_from_form({"profile": ["gpu"]})


def test_an_unknown_profile_is_refused_by_name(tmp_path):
    made = spawner(config(tmp_path), user("gus", "gpu-students"))
    with pytest.raises(ValueError, match=r"no server type 'nope' in this classroom \(offered to gus: cpu, gpu\)"):
        made.run_options_from_form({"profile": ["nope"]})


def test_dockerspawners_image_option_is_not_taken_from_the_form(tmp_path):
    """The image comes from the profile: a posted `image` field is not passed on to DockerSpawner."""
    made = spawner(config(tmp_path), user("ann"))
    assert made.options_from_form({"image": [IMAGES["student_gpu"]]}) == {}


# The profile a spawn uses ---------------------------------------------------------------------------


def test_chosen_profile_follows_user_options(tmp_path):
    c = config(tmp_path)
    gus = spawner(c, user("gus", "gpu-students"))
    assert gus.chosen_profile().name == "cpu"  # nothing chosen: the first allowed
    gus.user_options = {"profile": "gpu"}
    assert gus.chosen_profile().name == "gpu"
    gus._apply_profile(gus.chosen_profile())
    assert gus.image == IMAGES["student_gpu"]

    ann = spawner(c, user("ann"))
    ann.user_options = {"profile": "gpu"}  # e.g. saved before she left the group, or posted through the API
    with pytest.raises(ValueError, match="not offered to ann"):
        ann.chosen_profile()


def test_a_student_no_profile_allows_is_told(tmp_path):
    only_gpu = [PROFILES[1]]
    made = spawner(config(tmp_path, profiles=only_gpu), user("ann"))
    assert made.options_form == ""
    with pytest.raises(ValueError, match="no profile in classroom.yaml allows user ann"):
        made.chosen_profile()


def test_no_docker_client_is_made(tmp_path):
    """Building the spawner and its form does not reach for Docker (DockerSpawner's client is lazy)."""
    from dockerspawner import DockerSpawner

    before = DockerSpawner._client
    made = spawner(config(tmp_path), user("gus", "gpu-students"))
    assert 'name="profile"' in made.options_form
    made.options_from_form({"profile": ["gpu"]})
    assert DockerSpawner._client is before
