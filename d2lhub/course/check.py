"""`d2lhub course check`: run every built chapter in containers made like a student's (CPU image).

A chapter that passes here passes for a student: same image, non-root uid,
no network, the classroom's memory/CPU/process limits, the course mounted
read-only and delivered into a scratch home, the data cache mounted read-only.
Chapters are shared out over `jobs` containers; each runs its share one after
another (d2lhub/image/chapterrun.py) and reports a JSON line per chapter.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.errors

from d2lhub import engine, labels
from d2lhub.config import Classroom
from d2lhub.course.manifest import MANIFEST_NAME, CourseError, CourseManifest
from d2lhub.state import built_course
from d2lhub.studentimage import (
    COURSE_MOUNT,
    DATA_MOUNT,
    HOME,
    IN_IMAGE_DIR,
    STUDENT_GID,
    built_image,
)

RUNNER = IN_IMAGE_DIR / "chapterrun.py"
RUNNER_MOUNT = "/opt/d2lhub-tools/chapterrun.py"
SCRATCH_SIZE = "1g"


class CheckError(Exception):
    """The check cannot run (no built course, no image); the message says what to do."""


OUTCOMES = ("ok", "needs data", "needs GPUs", "timed out", "broken")
REPORT_NAME = "course-check.json"


def report_file(classroom: Classroom) -> Path:
    """Where `course check` of `classroom.course` writes its report by default: beside the built
    course, named after it when the hub has several."""
    course = built_course(classroom, classroom.course.id)
    return course.parent / (REPORT_NAME if len(classroom.all_courses) == 1 else f"{course.name}-{REPORT_NAME}")


@dataclass(frozen=True)
class Result:
    chapter: str
    outcome: str  # one of OUTCOMES
    seconds: float
    detail: str = ""  # needs data: its name; needs GPUs: how many; broken: the first error

    @property
    def passed(self) -> bool:
        return self.outcome == "ok"

    @property
    def skipped(self) -> bool:
        return self.outcome == "needs GPUs"

    @property
    def label(self) -> str:
        """`ok`, `needs data: NAME`, `needs 2 GPUs`, `timed out`, `broken: first error`."""
        if self.outcome == "needs GPUs":
            return f"needs {self.detail} GPU{'' if self.detail == '1' else 's'}"
        if self.outcome in {"needs data", "broken"}:
            return f"{self.outcome}: {self.detail}"
        return self.outcome


def report(results: list[Result], course: Path, path: Path) -> None:
    """The JSON report CI reads: every chapter's outcome, and how many of each."""
    counts = {outcome: sum(result.outcome == outcome for result in results) for outcome in OUTCOMES}
    chapters = [{**asdict(result), "label": result.label} for result in results]
    document = {"course": str(course), "counts": counts, "chapters": chapters}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, path)


def gpu_needs(course: Path) -> dict[str, int]:
    """Chapter -> GPUs its code asks for, as `course build` marked them in course.json."""
    return {chapter.path: chapter.gpus for chapter in CourseManifest.load(course / MANIFEST_NAME).chapters}


def chapters_of(course: Path) -> list[str]:
    """The built chapters in book order, from the course manifest."""
    manifest = course / MANIFEST_NAME
    if not manifest.is_file():
        raise CheckError(f"no built course in {course}: run `d2lhub course build` first")
    try:
        chapters = [chapter.path for chapter in CourseManifest.load(manifest).chapters]
    except CourseError as exc:
        raise CheckError(str(exc)) from None
    if not chapters:
        raise CheckError(f"the course in {course} has no chapters to check")
    return chapters


def share_out(chapters: list[str], jobs: int) -> list[list[str]]:
    """Round-robin, so long chapters late in the book don't all land in one container."""
    jobs = max(1, min(jobs, len(chapters)))
    return [chapters[i::jobs] for i in range(jobs)]


def check_profile(classroom: Classroom):
    """The profile chapters are checked as: the first CPU one (None: the classroom's defaults, no GPU)."""
    cpu_profiles = [profile for profile in classroom.profiles if profile.image == "student"]
    return cpu_profiles[0] if cpu_profiles else None


def container_settings(classroom: Classroom, image: str, chapters: list[str], timeout: int, with_data: bool) -> dict:
    """docker-py `containers.run` arguments: a student's container, minus the network."""
    profile = check_profile(classroom)
    limits = classroom.limits_for(profile) if profile else classroom.limits
    uid = classroom.spawner.uid_base
    instance = classroom.spawner.instance
    volumes = {
        str(built_course(classroom, classroom.course.id)): {"bind": COURSE_MOUNT, "mode": "ro"},
        str(RUNNER): {"bind": RUNNER_MOUNT, "mode": "ro"},
    }
    if with_data:
        volumes[labels.data_volume(classroom.spawner.instance)] = {"bind": DATA_MOUNT, "mode": "ro"}
    return {
        "image": image,
        "command": ["python3", RUNNER_MOUNT, "--course", COURSE_MOUNT, "--timeout", str(timeout), *chapters],
        "name": f"{instance}-check-{uuid.uuid4().hex[:8]}",
        "mem_limit": limits.memory,
        "nano_cpus": int(limits.cpu * 1e9),
        "pids_limit": limits.pids,
        "volumes": volumes,
        "tmpfs": {HOME: f"rw,exec,nosuid,nodev,size={SCRATCH_SIZE},uid={uid},gid={STUDENT_GID},mode=0700"},
        "detach": True,
        **engine.throwaway(instance, "course-check", user=f"{uid}:{STUDENT_GID}"),
    }


def json_lines(chunks: Iterable[bytes]) -> Iterator[dict]:
    """Yield the JSON events among a container's stdout chunks (which split lines anywhere)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                yield json.loads(line)


def run_share(
    client: docker.DockerClient,
    settings: dict,
    chapters: list[str],
    on_start: Callable[[str], None],
    on_done: Callable[[Result], None],
) -> list[Result]:
    container = client.containers.run(**settings)
    results: dict[str, Result] = {}
    try:
        for event in json_lines(container.logs(stream=True, follow=True, stdout=True, stderr=False)):
            if event["event"] == "start":
                on_start(event["chapter"])
            else:
                result = Result(event["chapter"], event["outcome"], event["seconds"], event["detail"])
                results[result.chapter] = result
                on_done(result)
        exit_code = container.wait().get("StatusCode")
        if len(results) < len(chapters):
            tail = container.logs(stdout=False, stderr=True, tail=5).decode(errors="replace").strip()
            reason = "killed: out of memory?" if exit_code == 137 else f"exited {exit_code}"
            for chapter in chapters:
                if chapter not in results:
                    results[chapter] = Result(chapter, "broken", 0.0, f"check container {reason} {tail[-300:]}".strip())
                    on_done(results[chapter])
    finally:
        container.remove(force=True)
    return [results[chapter] for chapter in chapters]


def check(
    classroom: Classroom,
    *,
    jobs: int = 1,
    timeout: int = 600,
    on_start: Callable[[str], None] = lambda chapter: None,
    on_done: Callable[[Result], None] = lambda result: None,
    client: docker.DockerClient | None = None,
    report_path: Path | None = None,
) -> list[Result]:
    """Run every built chapter the check profile has the GPUs for; results in book order, also in the
    JSON report (`state_dir/course-check.json`, or REPORT_PATH)."""
    course = built_course(classroom, classroom.course.id)
    profile = check_profile(classroom)
    given = profile.gpus if profile else 0
    needs = gpu_needs(course) if (course / MANIFEST_NAME).is_file() else {}
    skipped = {
        chapter: Result(chapter, "needs GPUs", 0.0, str(needs[chapter]))
        for chapter in chapters_of(course) if needs.get(chapter, 0) > given
    }
    for result in skipped.values():
        on_done(result)
    chapters = [chapter for chapter in chapters_of(course) if chapter not in skipped]
    if not chapters:
        results = [skipped[chapter] for chapter in chapters_of(course)]
        report(results, course, report_path or report_file(classroom))
        return results
    client = client or engine.docker_client()
    image = built_image(classroom, client)
    try:
        client.volumes.get(labels.data_volume(classroom.spawner.instance))
        with_data = True
    except docker.errors.NotFound:
        with_data = False
    shares = share_out(chapters, jobs)
    with ThreadPoolExecutor(len(shares)) as pool:
        futures = [
            pool.submit(
                run_share, client, container_settings(classroom, image, share, timeout, with_data), share, on_start, on_done
            )
            for share in shares
        ]
        by_chapter = {result.chapter: result for future in futures for result in future.result()}
    by_chapter.update(skipped)
    results = [by_chapter[chapter] for chapter in chapters_of(course)]
    report(results, course, report_path or report_file(classroom))
    return results
