"""Browser tests: JupyterLab (started as `make lab` starts it) driven by Debian's chromium
through Playwright for Python.  No browser is ever downloaded: without /usr/bin/chromium
or the playwright package these tests skip."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from _lab import CHROMIUM, CHROMIUM_ARGS, DEMO, JUPYTER, LESSON, Lab, _need_browser, free_port, jupyter_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """JupyterLab the way `make lab` starts it (--no-browser, a free port, a token), serving
    a copy of notebooks/ so the committed notebook stays without outputs."""
    _need_browser()
    tmp = Path(tempfile.mkdtemp(prefix="qnv-lab-"))
    nbdir = tmp / "notebooks"
    nbdir.mkdir()
    shutil.copy(DEMO, nbdir / DEMO.name)
    shutil.copy(LESSON, nbdir / LESSON.name)
    port, token = free_port(), os.urandom(12).hex()
    log = tmp / "lab.log"
    proc = subprocess.Popen(
        [str(JUPYTER), "lab", "--no-browser", f"--port={port}", f"--ServerApp.token={token}",
         "--allow-root", "--notebook-dir", str(nbdir)],
        env=jupyter_env(tmp), stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    lab = Lab(base, token, nbdir, proc, log)
    deadline = time.time() + 90
    while True:
        try:
            lab.api("/api/status")
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.3)
    try:
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        br = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield br
        finally:
            br.close()
