"""The hub's registry as the nodes meet it: the image name services run (by digest), the script a
new node runs, the registry's certificate, and home folders every node shares."""

import subprocess

import pytest

from d2lhub import engine
from d2lhub.config import Classroom
from d2lhub.hub.swarmspawner import pinned_image
from d2lhub.ops import nodes, registry

DIGEST = "sha256:" + "ab" * 32


def classroom(tmp_path, **spawner) -> Classroom:
    return Classroom.model_validate({"hub": {"state_dir": str(tmp_path / "state")}, "spawner": spawner})


def test_services_run_the_pushed_digest_or_the_local_id():
    attrs = {"Id": "sha256:" + "cd" * 32,
             "RepoDigests": [f"127.0.0.1:5000/d2lhub/student@{DIGEST}", f"10.0.0.2:5000/d2lhub/student@{DIGEST}"]}
    assert pinned_image(attrs, "d2lhub/student:0b9d", "10.0.0.2:5000") == f"10.0.0.2:5000/d2lhub/student@{DIGEST}"
    assert pinned_image(attrs, "d2lhub/student:0b9d", "") == attrs["Id"]  # no registry: by ID, as before
    with pytest.raises(RuntimeError, match="not in the hub's registry 10.0.0.9:5000.*d2lhub up"):
        pinned_image(attrs, "d2lhub/student:0b9d", "10.0.0.9:5000")


def test_registry_address_is_checked():
    with pytest.raises(ValueError):
        Classroom.model_validate({"spawner": {"registry": "https://10.0.0.2"}})
    assert Classroom.model_validate({"spawner": {"registry": "hub.example.org:5000"}}).spawner.registry


def test_certificate_names_the_registry_and_the_node_script_trusts_it(tmp_path):
    room = classroom(tmp_path, kind="swarm", registry="10.0.0.2:5000")
    cert = registry.ensure_certificate(room)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(cert)],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:10.0.0.2" in text
    assert oct(registry.certificate_files(room)[1].stat().st_mode & 0o777) == "0o600"  # the key is the hub's only
    assert registry.ensure_certificate(room).read_bytes() == cert.read_bytes()  # made once

    class FakeSwarm:
        attrs = {"JoinTokens": {"Worker": "SWMTKN-worker", "Manager": "SWMTKN-manager"}}

        def reload(self):
            pass

    class FakeClient:
        swarm = FakeSwarm()

        def info(self):
            return {"Swarm": {"RemoteManagers": [{"Addr": "10.0.0.2:2377"}]}}

    script = nodes.join_script(FakeClient(), room)
    lines = script.splitlines()
    assert lines[0] == "mkdir -p /etc/docker/certs.d/10.0.0.2:5000"
    assert cert.read_text().strip() in script  # the certificate itself, not a path on the hub
    assert lines[-1].endswith("|| docker swarm join --token SWMTKN-worker 10.0.0.2:2377")  # joins once
    no_registry = nodes.join_script(FakeClient(), classroom(tmp_path, kind="swarm"))
    assert "certs.d" not in no_registry and "SWMTKN-worker" in no_registry


def test_bind_volume_folder_is_made_before_the_volume(tmp_path):
    room = classroom(tmp_path, volume_options={"type": "none", "o": "bind", "device": str(tmp_path / "homes/{volume}")})
    created = []

    class FakeApi:
        def create_volume(self, name, driver, driver_opts, labels):
            assert (tmp_path / "homes" / name).is_dir()  # Docker's bind volumes need the folder
            created.append((name, driver, driver_opts, labels))
            return {"Name": name}

    engine.make_volume(FakeApi(), room, "d2l-home-ann", {"org.d2lhub.user": "ann"})
    assert created == [("d2l-home-ann", "local", {"type": "none", "o": "bind", "device": str(tmp_path / "homes/d2l-home-ann")},
                        {"org.d2lhub.user": "ann"})]
