"""The players in a real browser: JupyterLab, after the kernel is gone, exported HTML
offline, and RISE slides (jupyterlab-rise)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _lab import DEMO, JUPYTER, LESSON, Lab, jupyter_env, save_png


STEPS_JS = """() => Array.from(document.querySelectorAll(SEL)).map(p => ({
    step: p.getAttribute('data-step'),
    caption: (p.querySelector('.qnv-caption') || {}).textContent,
    views: Array.from(p.querySelectorAll('.qnv-view')).map(v => v.getAttribute('data-view')),
    svg: Array.from(p.querySelectorAll('.qnv-body')).map(b => b.innerHTML.length + ':' +
        b.innerHTML.slice(0, 4000))}))"""


def players(page, sel: str) -> list[dict]:
    return page.evaluate(STEPS_JS.replace("SEL", json.dumps(sel)))


def accept_dialogs(page) -> None:
    for _ in range(4):
        d = page.query_selector(".jp-Dialog")
        if d is None:
            return
        d.query_selector(".jp-mod-accept").click()
        time.sleep(0.5)


def menu(page, top: str, item: str) -> None:
    page.click(f".lm-MenuBar-itemLabel:text-is('{top}')")
    page.click(f".lm-Menu-itemLabel:text-is('{item}')")


def press(page, sel: str, index: int, button: str, times: int = 1) -> None:
    b = page.query_selector_all(f"{sel} .{button}")[index]
    b.scroll_into_view_if_needed()
    for _ in range(times):
        b.click()


def step_until_view_changes(page, sel: str, index: int, view: int, button: str = "qnv-next",
                            limit: int = 40) -> int:
    """Press ``button`` until view ``view`` of player ``index`` shows another picture;
    every press must move the step and change the caption or the picture."""
    first = players(page, sel)[index]
    before = first
    for k in range(1, limit + 1):
        press(page, sel, index, button)
        now = players(page, sel)[index]
        assert now["step"] != before["step"], (
            f"press {k} of {button} did not move player {index} from step {before['step']}")
        assert now["caption"] != before["caption"] or now["svg"] != before["svg"]
        if now["svg"][view] != first["svg"][view]:
            return k
        before = now
    raise AssertionError(f"view {view} of player {index} did not change in {limit} steps")


LAB_PLAYER = ".jp-OutputArea-output .qnv-live"


def count_players(nb: Path) -> int:
    return sum(1 for c in json.loads(nb.read_text())["cells"]
               if c["cell_type"] == "code" and "qn.viz." in "".join(c["source"]))


def open_and_run(lab: Lab, browser, nb: Path):
    """``nb`` open in JupyterLab, all cells run, saved (so it is trusted)."""
    n_players = count_players(nb)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lab.url(f"/lab/workspaces/{nb.stem}/tree/{nb.name}"))   # a fresh layout
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    accept_dialogs(page)
    for _attempt in range(4):          # the menu can be clicked before the notebook is ready
        page.click(".jp-Notebook .jp-Cell")
        menu(page, "Run", "Run All Cells")
        accept_dialogs(page)
        try:
            page.wait_for_function(
                "Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))", timeout=20_000)
            break
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: try again
            continue
    deadline = time.time() + 300
    while time.time() < deadline:
        done = len(page.query_selector_all(LAB_PLAYER)) >= n_players
        idle = page.query_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        if done and idle:
            break
        time.sleep(0.5)
    else:
        prompts = page.eval_on_selector_all(".jp-InputPrompt", "e => e.map(x => x.textContent)")
        raise AssertionError(f"{len(page.query_selector_all(LAB_PLAYER))} of {n_players} "
                             f"players after 300 s; prompts {prompts}; "
                             f"{page.inner_text('.jp-Notebook')[-2000:]}")
    page.keyboard.press("Control+s")
    time.sleep(1.5)
    accept_dialogs(page)
    return page, errors


@pytest.fixture(scope="module")
def ran(lab: Lab, browser):
    """The demo notebook open in JupyterLab, all cells run, saved (so it is trusted)."""
    page, errors = open_and_run(lab, browser, DEMO)
    yield page, errors
    page.close()


def test_lab_players_render_step_and_outlive_the_kernel(lab: Lab, ran):
    page, errors = ran
    # every player rendered, as a widget, and no cell shows an error
    shown = players(page, LAB_PLAYER)
    assert len(shown) == count_players(DEMO)
    assert all(p["step"] == "0" and p["svg"] and p["caption"] for p in shown)
    assert not page.query_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    text = page.inner_text(".jp-Notebook")
    assert "Error displaying widget" not in text and "Traceback" not in text
    assert not page.query_selector_all(".jp-OutputArea-output .qnv-static-picture")
    names = [tuple(p["views"]) for p in shown]
    cs, ring = names.index(("callstack",)), names.index(("ring",))
    save_png(page.query_selector_all(LAB_PLAYER)[ring], "lab-ring-player.png")

    # "next" changes what the ring and the call-stack players show
    assert step_until_view_changes(page, LAB_PLAYER, cs, 0) == 1
    step_until_view_changes(page, LAB_PLAYER, ring, 0)
    # keyboard: focus the call-stack player, right arrow steps it
    before = players(page, LAB_PLAYER)[cs]["step"]
    page.query_selector_all(LAB_PLAYER)[cs].focus()
    page.keyboard.press("ArrowRight")
    assert int(players(page, LAB_PLAYER)[cs]["step"]) == int(before) + 1
    save_png(page.query_selector_all(LAB_PLAYER)[cs], "lab-callstack-player.png")

    # shut the kernel down: stepping goes on in the browser
    menu(page, "Kernel", "Shut Down Kernel")
    time.sleep(1)
    accept_dialogs(page)
    deadline = time.time() + 30
    while json.loads(lab.api("/api/kernels")) and time.time() < deadline:
        time.sleep(0.5)
    assert json.loads(lab.api("/api/kernels")) == [], "the kernel is still running"
    for index in (cs, ring):
        step_until_view_changes(page, LAB_PLAYER, index, 0, "qnv-next")
        step_until_view_changes(page, LAB_PLAYER, index, 0, "qnv-prev")
    # the slider and the lesson too
    lesson = next(i for i, n in enumerate(names) if len(n) > 1)
    slider = page.query_selector_all(f"{LAB_PLAYER} .qnv-slider")[lesson]
    slider.scroll_into_view_if_needed()
    slider.fill("40")
    assert players(page, LAB_PLAYER)[lesson]["step"] == "40"
    page.set_viewport_size({"width": 1400, "height": 2600})      # the whole lesson on screen
    time.sleep(0.5)
    el = page.query_selector_all(LAB_PLAYER)[lesson]
    el.scroll_into_view_if_needed()
    save_png(el, "lab-lesson-after-kernel-shutdown.png")
    page.set_viewport_size({"width": 1400, "height": 1000})
    assert not errors, errors


EXTERNAL = re.compile(r"""<script[^>]+src\s*=\s*["']?(?:https?:)?//|<link[^>]+href\s*=\s*["']?(?:https?:)?//|@import\s+url\(\s*["']?(?:https?:)?//""", re.I)


def test_exported_html_steps_offline(browser, tmp_path: Path):
    nb = tmp_path / DEMO.name
    nb.write_bytes(DEMO.read_bytes())
    env = jupyter_env(tmp_path / "jupyter")
    tdir = subprocess.run([sys.executable, "-m", "qnetlearn.viz.export", "--template-dir"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "html", "--execute",
                    f"--TemplateExporter.extra_template_basedirs={tdir}", "--template", "qnetlearn",
                    str(nb)], check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    page_html = (tmp_path / "demo_players.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in page_html       # widget state embedded
    assert not EXTERNAL.findall(page_html), EXTERNAL.findall(page_html)   # nothing from a CDN
    context = browser.new_context(viewport={"width": 1300, "height": 950}, offline=True)
    asked: list[str] = []

    def route(r):
        asked.append(r.request.url)
        if r.request.url.startswith(("file:", "blob:", "data:")):
            r.continue_()
        else:
            r.abort()
    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tmp_path / "demo_players.html").as_uri())
    sel = ".anywidget-host .qnv-live"
    page.wait_for_function(f"document.querySelectorAll({json.dumps(sel)}).length >= {count_players(DEMO)}",
                           timeout=30_000)
    shown = players(page, sel)
    assert len(shown) == count_players(DEMO) and all(p["step"] == "0" for p in shown)
    names = [tuple(p["views"]) for p in shown]
    step_until_view_changes(page, sel, names.index(("callstack",)), 0)
    step_until_view_changes(page, sel, names.index(("ring",)), 0)
    step_until_view_changes(page, sel, names.index(("ring",)), 0, "qnv-prev")
    save_png(page.query_selector_all(sel)[names.index(("interrupt",))], "export-interrupt-player.png")
    assert [u for u in asked if not u.startswith(("file:", "blob:", "data:"))] == []
    assert not errors, errors
    context.close()


def test_rise_slide_shows_the_player_and_steps(lab: Lab, ran, browser):
    """jupyterlab-rise's slideshow of the saved (trusted) notebook: the slide=True player is
    drawn at 1280x720 and steps.  jupyterlab-rise 0.43 cannot load the widget manager
    (issues #119, #126), so what shows is the player's own HTML form."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lab.url(f"/rise/{DEMO.name}"))
    page.wait_for_selector(".reveal .slides section", timeout=90_000)
    page.wait_for_selector(".reveal .qnv-live.qnv-slide", state="attached", timeout=60_000)
    # go forward slide by slide until the slide=True player is on the slide shown
    sel = ".reveal .slides section.present .qnv-live.qnv-slide"
    for _ in range(40):
        if page.query_selector(sel) is not None:
            break
        page.keyboard.press("ArrowRight")
        time.sleep(0.4)
    page.wait_for_selector(sel, state="visible", timeout=20_000)
    time.sleep(1)
    box = page.query_selector(sel).bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 1400 + 1
    box = page.query_selector(sel).bounding_box()
    scale = box["width"] / 1280
    assert 0.6 < scale <= 1.01 and abs(box["height"] - 720 * scale) < 2, box
    shown = players(page, sel)
    assert shown[0]["views"] == ["ring"] and shown[0]["step"] == "0"
    text = page.inner_text(".reveal .slides section.present")
    assert "A still picture" not in text
    assert "RingPlayer:" not in text                            # not the text repr
    save_png(page, "rise-slide-ring-player.png")
    step_until_view_changes(page, sel, 0, 0)
    page.query_selector(sel).focus()
    before = players(page, sel)[0]["step"]
    page.keyboard.press("ArrowRight")                           # the player, not reveal.js
    assert int(players(page, sel)[0]["step"]) == int(before) + 1
    assert page.query_selector(sel).is_visible()
    assert not [e for e in errors if "qnv" in e or "qnvMount" in e], errors
    page.close()


def test_the_receive_path_lesson_renders_and_steps(lab: Lab, browser):
    """The lesson students open for the seed's first chain: every player renders, no cell
    errs, and "next" changes the call stack and the ring inside its Lesson view."""
    page, errors = open_and_run(lab, browser, LESSON)
    try:
        text = page.inner_text(".jp-Notebook")
        assert "Traceback" not in text and "Error displaying widget" not in text
        assert not page.query_selector_all(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        shown = players(page, LAB_PLAYER)
        assert len(shown) >= count_players(LESSON) and all(p["svg"] for p in shown)
        lesson = next(i for i, p in enumerate(shown) if len(p["views"]) > 1)
        views = shown[lesson]["views"]
        for view in ("callstack", "ring"):
            step_until_view_changes(page, LAB_PLAYER, lesson, views.index(view))
        assert not errors, errors
    finally:
        menu(page, "Kernel", "Shut Down Kernel")
        accept_dialogs(page)
        page.close()
