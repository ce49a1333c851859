# The baseline of `make bench`: stock DockerSpawner with the same image, limits and course,
# one Docker thread, the image's own start command; only what stock needs to run differs.
from dockerspawner import DockerSpawner

from d2lhub.state import course_dir
from d2lhub.studentimage import COURSE_MOUNT

classroom = apply(c)  # noqa: F821
limits = classroom.limits
c.JupyterHub.spawner_class = DockerSpawner  # noqa: F821
c.DockerSpawner.mem_limit = limits.memory  # noqa: F821
c.DockerSpawner.cpu_limit = limits.cpu  # noqa: F821
c.DockerSpawner.extra_host_config = {"pids_limit": limits.pids}  # noqa: F821
# Stock has no per-student uid nor home preparation: run as 1000 with HOME in the container.
c.DockerSpawner.extra_create_kwargs = {"user": "1000:100", "labels": {"org.d2lhub.instance": classroom.spawner.instance}}  # noqa: F821
c.DockerSpawner.environment = {"HOME": "/tmp"}  # noqa: F821
c.DockerSpawner.read_only_volumes = {str(course_dir(classroom)): COURSE_MOUNT}  # noqa: F821
c.DockerSpawner.notebook_dir = "/tmp"  # noqa: F821
c.Spawner.default_url = "/lab"  # noqa: F821
