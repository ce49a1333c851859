"""Accessibility basics of the branded pages, measured in the browser from computed styles."""

from __future__ import annotations

import pytest
from pages import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration]

MIN_CONTRAST = 4.5  # WCAG 2.1 AA for body text

# For each visible element with its own text: the text colour and the background
# it sits on (ancestors' colours composited), as WCAG's contrast ratio.
CONTRASTS = """
() => {
  const parse = (css) => {
    const m = css.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3])).concat(1);
  const luminance = (rgb) => {
    const [r, g, b] = rgb.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const colour = parse(getComputedStyle(e).backgroundColor);
      if (colour && colour[3] > 0) {
        layers.push(colour);
        if (colour[3] >= 1) break;
      }
    }
    return layers.reverse().reduce((under, layer) => over(layer, under), [255, 255, 255, 1]);
  };
  const ownText = (e) => {
    if (e.tagName === "INPUT" && ["submit", "button"].includes(e.type)) return e.value;
    return [...e.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim();
  };
  const results = [];
  for (const e of document.body.querySelectorAll("*")) {
    const text = ownText(e);
    const style = getComputedStyle(e);
    if (!text || !e.getClientRects().length || style.visibility === "hidden") continue;
    const bg = background(e);
    const fg = parse(style.color);
    if (!fg) {
      results.push({ text, ratio: 0, color: style.color });
      continue;
    }
    const [l1, l2] = [luminance(over(fg, bg)), luminance(bg)].sort((a, b) => b - a);
    results.push({ text: text.slice(0, 40), ratio: (l1 + 0.05) / (l2 + 0.05), color: style.color, background: `rgb(${bg.slice(0, 3).join(",")})` });
  }
  return results;
}
"""

UNLABELLED_INPUTS = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((e) => !["hidden", "submit", "button"].includes(e.type))
  .filter((e) => !e.labels.length && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
  .map((e) => e.outerHTML)
"""


def test_login_page_is_branded_and_accessible(hub, page):
    """The first page everyone sees: course branding, labelled inputs, readable contrast, a language, landmarks."""
    response = page.goto(f"{hub.url}/hub/login")
    assert response.ok, f"the login page answered {response.status}"
    course = hub.classroom.course
    assert page.title() == f"{course.name} · {course.term}"
    assert page.get_by_role("link", name="Course help").get_attribute("href") == course.help_url
    assert page.locator("main").count() == 1
    assert page.locator(".d2l-welcome").inner_text().count(course.welcome) == 1
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.evaluate(UNLABELLED_INPUTS) == []

    contrasts = page.evaluate(CONTRASTS)
    assert any(item["text"] == "Sign in" for item in contrasts), "the sign-in button's text was not measured"
    too_faint = [item for item in contrasts if item["ratio"] < MIN_CONTRAST]
    assert too_faint == [], f"text below {MIN_CONTRAST}:1 contrast: {too_faint}"
    screenshot(page, "login")
