"""Open an atlas page in Debian's headless chromium, offline, and read its #atlas-status element
(what the page's script found: loaded, images decoded, errors)."""
from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def status(dom: str) -> dict:
    """The attributes of the page's #atlas-status element in a dumped DOM."""
    found = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if attrs.get("id") == "atlas-status":
                found.update(attrs)
    Parser().feed(dom)
    return found


def run(index, tmp_path, *flags) -> subprocess.CompletedProcess:
    """chromium on ``index`` with ``flags`` (e.g. --dump-dom, --screenshot=...; skips the test
    without chromium); nothing leaves the machine (a dead proxy)."""
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium)")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--disable-background-networking",
            "--disable-component-update", "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=15000"]
    return subprocess.run([*base, *flags, index.resolve().as_uri()], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "HOME": str(tmp_path)})


def dump_dom(index, tmp_path, *extra_flags) -> subprocess.CompletedProcess:
    """The page's DOM after its scripts ran (``r.stdout``)."""
    r = run(index, tmp_path, *extra_flags, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    return r
