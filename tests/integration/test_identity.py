"""Stable identity on the real hub: a student's uid is kept with the classroom, not taken from the
hub database, so deleting and re-adding an account, rebuilding the hub from an empty state folder,
or losing the home volumes never hands anyone's files to another uid."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time

import pytest
from harness import launched_hub, leave_proof, roster_password, server_uid
from hubclient import Browser
from test_cli import d2lhub

from d2lhub import engine, identity, labels
from d2lhub.course.build import build_course
from d2lhub.state import course_dir
from d2lhub.studentimage import HOME, built_image

pytestmark = pytest.mark.integration
ROSTER = "username,first name,last name,email,role\n"


@pytest.fixture(scope="module")
def room(tmp_path_factory, docker_client):
    # plain volumes: a legacy home of another uid is one made before the homes file system existed
    yield from launched_hub(tmp_path_factory.mktemp("identity"), docker_client, limits={"home": None})


def import_roster(hub, folder, *names: str) -> None:
    roster = folder / "roster.csv"
    roster.write_text(ROSTER + "".join(f"{name},{name.title()},Test,,student\n" for name in names))
    d2lhub("roster", "import", str(roster), "--config", str(hub.path))


def sign_in_roster(hub, name: str) -> Browser:
    browser = Browser(hub.url)
    assert browser.login(name, roster_password(hub.classroom, name)).status_code == 302
    return browser


def hub_user_id(hub, name: str) -> int:
    with sqlite3.connect(hub.classroom.hub.state_dir / "jupyterhub.sqlite") as db:
        return db.execute("select id from users where name = ?", (name,)).fetchone()[0]


def home_volume(hub, name: str) -> str:
    return labels.home_volume(hub.classroom.spawner.instance, name)


def owners(docker_client, volume: str) -> dict[int, list[str]]:
    """uid -> the paths it owns in the volume, its folder included (read on the host: the tests run as root)."""
    root = docker_client.volumes.get(volume).attrs["Mountpoint"]
    found = {os.lstat(root).st_uid: ["."]}
    for folder, names, files in os.walk(root):
        for entry in names + files:
            path = os.path.join(folder, entry)
            found.setdefault(os.lstat(path).st_uid, []).append(os.path.relpath(path, root))
    return found


def legacy_home(docker_client, hub, name: str, uid: int, text: str, **volume_options) -> str:
    """A home volume as an older hub left it: labelled with `uid`, a file in it owned by that uid."""
    volume = home_volume(hub, name)
    docker_client.volumes.create(
        volume, labels={labels.INSTANCE: hub.classroom.spawner.instance, labels.USER: name, labels.UID: str(uid)},
        **volume_options,
    )
    if not volume_options:
        docker_client.containers.run(
            built_image(hub.classroom, docker_client),
            entrypoint=["/bin/sh", "-c"],
            command=[f"mkdir -p {HOME}/.d2lhub && printf '{text}' > {HOME}/old.txt && chown -R {uid}:100 {HOME}"],
            volumes={volume: {"bind": HOME, "mode": "rw"}}, remove=True,
            **engine.throwaway(hub.classroom.spawner.instance, "legacy-home", cap_add=["CHOWN"]),
        )
    return volume


def test_student_deleted_and_added_back_keeps_uid_and_files(room, docker_client, tmp_path):
    import_roster(room, tmp_path, "learner", "other")
    learner = sign_in_roster(room, "learner")
    learner.spawn()
    learner.open_server()
    learner.write_file("mine.txt", "written before my account was deleted")
    uid = server_uid(docker_client, room.classroom, "learner")
    assert identity.registry(room.classroom).read()["learner"] == uid
    before = hub_user_id(room, "learner")

    admin = room.browser("boss")
    assert admin.hub_api("POST", "/users", json={"usernames": ["filler"]}).status_code == 201  # ids move on
    assert admin.hub_api("DELETE", "/users/learner").status_code == 204  # as the admin page does
    assert admin.hub_api("GET", "/users/learner").status_code == 404
    assert admin.hub_api("POST", "/users", json={"usernames": ["learner"]}).status_code == 201
    assert hub_user_id(room, "learner") != before, "the hub database gave the same id: the test proves nothing"

    again = sign_in_roster(room, "learner")
    again.spawn()
    again.open_server()
    assert server_uid(docker_client, room.classroom, "learner") == uid
    assert again.read_file("mine.txt") == "written before my account was deleted"
    assert set(owners(docker_client, home_volume(room, "learner"))) == {uid}

    other = sign_in_roster(room, "other")
    other.spawn()
    assert server_uid(docker_client, room.classroom, "other") != uid
    for browser in (again, other):
        browser.stop()


def test_home_of_another_uid_is_put_right_or_refused_by_name(room, docker_client):
    """student2's volume claims a uid another student holds (two volumes of one uid, as before the
    registry): it is given to student2's own uid, files kept. teacher's cannot be changed (a
    read-only file system): the spawn is refused naming the volume and the command that fixes it."""
    taken = identity.registry(room.classroom).uid_for("learner")
    volume = legacy_home(docker_client, room, "student2", taken, "from the old hub")
    student = room.browser("student2")
    student.spawn()
    student.open_server()
    uid = server_uid(docker_client, room.classroom, "student2")
    assert uid != taken
    assert student.read_file("old.txt") == "from the old hub"
    student.write_file("new.txt", "after the fix")
    assert set(owners(docker_client, volume)) == {uid}
    student.stop()

    stuck = legacy_home(docker_client, room, "teacher", taken, "", driver="local",
                        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "ro"})
    teacher = room.browser("teacher")
    assert teacher.hub_api("POST", "/users/teacher/server").status_code in (201, 202)
    events = teacher.session.get(teacher.url("/hub/api/users/teacher/server/progress"), stream=True,
                                 headers={"Accept": "text/event-stream"}, timeout=300)
    final = next(event for event in (json.loads(line[5:]) for line in events.iter_lines(decode_unicode=True)
                                     if line.startswith("data:")) if event.get("failed") or event.get("ready"))
    assert final.get("failed"), final
    fix = f"docker run --rm --user 0 --network none -v {stuck}:{HOME}"
    assert f"Your home volume {stuck} belongs to uid 0, not to your uid" in final["message"], final["message"]
    assert fix in final["message"], final["message"]
    assert "read-only file system" in final["message"].lower(), final["message"]
    page = teacher.session.get(teacher.url("/hub/spawn-pending/teacher"), timeout=60).text
    assert f"Your home volume {stuck} belongs to uid 0" in page and fix in page, page[-3000:]
    assert docker_client.volumes.get(stuck).name == stuck  # nothing deleted


def test_start_script_says_plainly_when_home_is_not_usable(room, docker_client):
    instance = room.classroom.spawner.instance
    volume = docker_client.volumes.create(f"{instance}-home-rootowned", labels={labels.INSTANCE: instance})
    output = docker_client.containers.run(
        built_image(room.classroom, docker_client), command=["d2lhub-start"],
        volumes={volume.name: {"bind": HOME, "mode": "rw"}}, environment={"JUPYTERHUB_USER": "someone"},
        remove=False, detach=True, **engine.throwaway(instance, "start-script", user="20123:100"),
    )
    try:
        assert output.wait(timeout=60)["StatusCode"] == 3
        log = output.logs().decode()
    finally:
        output.remove(force=True)
    assert "cannot be used by uid 20123: it belongs to uid 0" in log, log
    assert "home volume of someone" in log
    assert "can't cd" not in log


def test_rebuilt_hub_and_recreated_volumes_keep_every_uid(tmp_path, docker_client):
    hubs = launched_hub(tmp_path / "rebuild", docker_client, limits={"home": None})  # homes outside the state folder
    hub = next(hubs)
    try:
        # first come, first served: not the hub's order
        uids = leave_proof(hub, docker_client, ("student2", "student1"), "{name}'s work")
        assert len(set(uids.values())) == 2
        hub.stop()
        # An older hub's volume claiming student1's uid, younger than student1's own: student1 keeps it.
        time.sleep(1.1)
        legacy_home(docker_client, hub, "teacher", uids["student1"], "old notes of teacher")

        # The state folder is lost: the same classroom.yaml, an empty folder, the same volumes.
        shutil.rmtree(hub.classroom.hub.state_dir)
        build_course(hub.classroom.course.source, course_dir(hub.classroom))
        hub.start()
        seeded = identity.registry(hub.classroom).read()
        assert {name: seeded[name] for name in uids} == uids
        assert seeded["teacher"] not in uids.values()
        for name in ("student1", "student2", "teacher"):
            browser = hub.browser(name)
            browser.spawn()
            browser.open_server()
            assert server_uid(docker_client, hub.classroom, name) == seeded[name]
            expected = "old notes of teacher" if name == "teacher" else f"{name}'s work"
            assert browser.read_file("old.txt" if name == "teacher" else "proof.txt") == expected
            owned = owners(docker_client, home_volume(hub, name))
            if owned.get(0) == ["course"]:  # an instructor's: where Docker mounts the course folder
                del owned[0]
            assert set(owned) == {seeded[name]}, owned  # teacher's: put right
            browser.stop()
        hub.stop()

        # The volumes are lost, the state folder kept: the registry is the record.
        for name in uids:
            docker_client.volumes.get(home_volume(hub, name)).remove()
        hub.start()
        import_roster(hub, tmp_path, "newcomer")
        newcomer = sign_in_roster(hub, "newcomer")
        newcomer.spawn()
        assert server_uid(docker_client, hub.classroom, "newcomer") not in seeded.values()
        student = hub.browser("student1")
        student.spawn()
        student.open_server()
        assert server_uid(docker_client, hub.classroom, "student1") == uids["student1"]
        assert "proof.txt" not in student.list_dir("")  # a new home, of the same uid
        label = docker_client.volumes.get(home_volume(hub, "student1")).attrs["Labels"][labels.UID]
        assert label == str(uids["student1"])
    finally:
        hubs.close()
