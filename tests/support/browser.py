"""A real headless browser (Debian's Chromium) for checking generated HTML pages.

`render(path)` loads a local page, lets it run for a few seconds of virtual time, and returns the DOM after load
and every console message the page produced (Chromium logs them to stderr as `INFO:CONSOLE...] "text"`).
Pages under test record their own image state in the DOM, since the dumped DOM cannot say whether an image
decoded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONSOLE = re.compile(r':CONSOLE[^\]]*\] "(.*)", source: (.*)$')


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]


def chromium() -> str:
    """Path of the chromium binary; the set-up (`make tools`) installs it, so a missing one fails the test."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    pytest.fail("chromium is not installed: run `make tools` as root or `sudo apt-get install chromium`")


def render(page: Path, timeout_s: float = 60.0) -> Rendered:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [m.group(1) for line in proc.stderr.splitlines() if (m := _CONSOLE.search(line))]
    return Rendered(proc.stdout, console)


def images_loaded(dom: str) -> tuple[int, int]:
    """(loaded, total) as the page recorded them in `data-images-loaded` on <body>."""
    m = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert m, "the page did not record its images (no data-images-loaded on <body>)"
    return int(m.group(1)), int(m.group(2))
