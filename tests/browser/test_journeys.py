"""What students, instructors and admins see, in a real browser against a real hub."""

from __future__ import annotations

import re

import pytest
from pages import SPAWN_TIMEOUT_MS, screenshot, sign_in
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# The spawn page reloads itself once the server is ready, so its messages are
# kept in sessionStorage (which survives the reload) as they arrive.
RECORD_PROGRESS = """
(() => {
  const Native = window.EventSource;
  if (!Native || Native.d2lRecorded) return;
  window.EventSource = function (url, options) {
    const source = new Native(url, options);
    source.addEventListener("message", (event) => {
      const log = JSON.parse(sessionStorage.getItem("d2l-progress") || "[]");
      log.push(JSON.parse(event.data).message || "");
      sessionStorage.setItem("d2l-progress", JSON.stringify(log));
    });
    return source;
  };
  window.EventSource.d2lRecorded = true;
})();
"""


def file_item(page, name: str):
    return page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$")))


def test_student_signs_in_and_runs_a_chapter(hub, page):
    """The student journey: sign in, watch the spawn page, land in ~/d2l, run a chapter's cell."""
    page.add_init_script(RECORD_PROGRESS)
    sign_in(page, hub, "student1")
    page.wait_for_url("**/spawn-pending/**")
    expect(page.locator("h1")).to_contain_text(hub.classroom.course.name)
    expect(page.locator("#progress-log .progress-log-event").first).to_be_attached()
    screenshot(page, "spawn-pending")

    page.wait_for_url(re.compile(r"/user/student1/lab"), timeout=SPAWN_TIMEOUT_MS)
    progress = page.evaluate("JSON.parse(sessionStorage.getItem('d2l-progress') || '[]')")
    assert any(message.startswith("Server type: ") for message in progress), progress
    assert any(re.search(r"\d+ chapters sync into ~/d2l", message) for message in progress), progress
    assert any(message.startswith("Server ready at") for message in progress), progress

    breadcrumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
    expect(breadcrumbs).to_contain_text("d2l", timeout=SPAWN_TIMEOUT_MS)
    expect(file_item(page, "chapter_preliminaries")).to_be_visible()
    expect(file_item(page, "index.ipynb")).to_be_visible()
    screenshot(page, "student-lab")

    file_item(page, "chapter_preliminaries").dblclick()
    file_item(page, "ndarray.ipynb").dblclick()
    notebook = page.locator(".jp-NotebookPanel:visible")
    cells = notebook.locator(".jp-CodeCell")
    expect(cells.first).to_be_visible()
    # The status bar says "Idle" once the kernel is connected; running earlier asks for a kernel.
    expect(page.get_by_text(re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible(timeout=120_000)
    for index in (0, 1):  # the import, then the cell that prints an array
        cells.nth(index).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
    output = cells.nth(1).locator(".jp-OutputArea-output")
    expect(output).to_contain_text("(12,) 12", timeout=120_000)
    expect(output).to_contain_text("[ 0.  1.  2.")
    output.scroll_into_view_if_needed()
    screenshot(page, "student-notebook")


def test_admin_sees_students_servers(hub, page):
    """An admin's admin page lists the class and whose server is running."""
    hub.browser("student2").spawn()
    sign_in(page, hub, "boss", next_path="/hub/admin")
    page.wait_for_url("**/hub/admin**")
    expect(page.get_by_test_id("user-row-student2").get_by_role("button", name="Stop Server")).to_be_visible()
    expect(page.get_by_test_id("user-row-teacher").get_by_role("button", name="Start Server")).to_be_visible()
    screenshot(page, "admin")


def test_instructor_opens_formgrader(hub, page):
    """An instructor grades in their own server: JupyterHub >= 4.1 blocks the formgrader inside hub pages."""
    sign_in(page, hub, "teacher")
    page.wait_for_url(re.compile(r"/user/teacher/lab"), timeout=SPAWN_TIMEOUT_MS)
    expect(file_item(page, "index.ipynb")).to_be_visible(timeout=120_000)  # JupyterLab has loaded
    expect(page.get_by_role("menuitem", name="Nbgrader")).to_be_visible()
    screenshot(page, "instructor-lab")
    response = page.goto(f"{hub.url}/user/teacher/formgrader")
    assert response.ok, f"formgrader answered {response.status}: instructors' servers must serve nbgrader's formgrader"
    expect(page.get_by_text("Manage Assignments").first).to_be_visible()
    screenshot(page, "formgrader")
