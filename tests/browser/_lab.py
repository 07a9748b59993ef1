"""Helpers of the browser tests: JupyterLab as `make lab` starts it, chromium, screenshots."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
DEMO = ROOT / "notebooks" / "demo_players.ipynb"
LESSON = ROOT / "notebooks" / "05-receive-path.ipynb"      # the seed's first chain, for students
SHOTS = ROOT / "docs" / "screenshots"
JUPYTER = Path(sys.executable).with_name("jupyter")


def _need_browser() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("no /usr/bin/chromium (Debian package chromium)")
    pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def jupyter_env(tmp: Path) -> dict[str, str]:
    """JupyterLab's config, data, settings and workspaces in ``tmp``: the test neither reads
    nor changes the user's own."""
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                     ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # every cell attached to the page (no virtual scrolling): the test sees every output
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # no news or update toasts over the screenshots (and no requests to the internet)
    notes = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    return env


class Lab:
    def __init__(self, base: str, token: str, notebooks: Path, proc: subprocess.Popen,
                 log: Path) -> None:
        self.base = base
        self.token = token
        self.notebooks = notebooks
        self.proc = proc
        self.log = log

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=10) as r:
            return r.read().decode()


def save_png(page_or_element, name: str) -> Path:
    """A screenshot in docs/screenshots/, reduced to 256 colours to stay small."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page_or_element.screenshot(path=str(path))
    try:
        from PIL import Image
        img = Image.open(path).convert("RGB")
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    except ImportError:  # pragma: no cover - matplotlib brings Pillow
        pass
    return path
