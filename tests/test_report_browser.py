"""The report in a real browser: headless Chromium opens report.html from disk.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, NUL-separated JSON), so no port, no network and no extra package is
involved. Each page is checked for console errors, uncaught exceptions, failed loads, images that
did not decode, requests for anything but the page itself and ``data:`` URIs, and JavaScript
dialogs. The tests skip only where Chromium is not installed (Debian: ``apt-get install
chromium``; .ci/run installs it).

Set ``LATENTDIAG_DOCS_IMG=docs/img`` to also write the screenshots that docs/report.md embeds.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentdiag.report import build_report
from latentdiag.store import write_latents

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)

MODALITIES = ["chest_xray", "oct", "pathology", "dermatoscopy"]


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, exe: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child() -> None:  # runs in the child: its fd 3 reads commands, fd 4 answers
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            preexec_fn=child,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == event:
                return e
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            self.events.append(msg)
            if msg.get("method") == event:
                return msg

    def _recv(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(raw))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@dataclass
class PageCheck:
    """What a page did when Chromium opened it."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    images: int = 0
    images_decoded: bool = False
    summary: str = ""
    probe: Any = None
    screenshots: dict[str, bytes] = field(default_factory=dict)


def open_page(
    page: Path,
    profile: Path,
    *,
    probe: str = "null",
    shots: dict[str, str | None] | None = None,
) -> PageCheck:
    """Open ``page`` from disk in headless Chromium and record what happened.

    Args:
        page: The HTML file.
        profile: A fresh folder for Chromium's profile.
        probe: A JavaScript expression evaluated after load; its value lands in ``probe``.
        shots: Screenshot name -> CSS selector to capture (``None``: the top of the page).
    """
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, profile)
    out = PageCheck()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable", session=sid)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1100, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
        browser.wait_for("Page.loadEventFired")
        found = browser.send(
            "Runtime.evaluate",
            {
                "expression": "({n: document.images.length,"
                " ok: [...document.images].every(i => i.complete && i.naturalWidth > 0),"
                " summary: (document.querySelector('#summary') || {innerText: ''}).innerText,"
                f" probe: ({probe})}})",
                "returnByValue": True,
            },
            session=sid,
        )["result"]["value"]
        out.images, out.images_decoded = found["n"], found["ok"]
        out.summary, out.probe = found["summary"], found["probe"]
        for name, selector in (shots or {}).items():
            params: dict[str, Any] = {"format": "png"}
            if selector is not None:
                rect = browser.send(
                    "Runtime.evaluate",
                    {
                        "expression": f"(() => {{ const r = document.querySelector("
                        f"{json.dumps(selector)}).getBoundingClientRect();"
                        " return {x: r.left + scrollX, y: r.top + scrollY,"
                        " width: r.width, height: Math.min(r.height, 1400)}; })()",
                        "returnByValue": True,
                    },
                    session=sid,
                )["result"]["value"]
                params.update(captureBeyondViewport=True, clip={**rect, "scale": 1})
            data = browser.send("Page.captureScreenshot", params, session=sid)["data"]
            out.screenshots[name] = base64.b64decode(data)
    finally:
        browser.close()
    for e in browser.events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.errors.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.errors.append(f"console.{p['type']}: {p.get('args')}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.errors.append(f"load failed: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif method == "Page.javascriptDialogOpening":
            out.dialogs.append(p.get("message", ""))
    return out


def _latents(path: Path, n: int, sep: float, *, label_names: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(label_names)
    mu = rng.normal(size=(n, 8)).astype(np.float32)
    mu[:, 4:8] += sep * np.eye(len(label_names), 4)[labels] * 3
    logvar = rng.normal(-1.0, 0.2, size=(n, 8)).astype(np.float32)
    logvar[:, 3] = 0.0
    mu[:, 3] = rng.normal(scale=0.01, size=n)  # one collapsed dimension
    return write_latents(
        path,
        mu,
        logvar=logvar,
        labels=labels,
        label_names=label_names,
        partitions={"shared": [0, 4], "modality": [4, 8]},
    )


# Resolved now: the test below changes the working directory.
_DOCS_IMG = os.environ.get("LATENTDIAG_DOCS_IMG")
DOCS_IMG = Path(_DOCS_IMG).resolve() if _DOCS_IMG else None


def _docs_copy(check: PageCheck) -> None:
    if DOCS_IMG is not None:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name, png in check.screenshots.items():
            (DOCS_IMG / f"report-{name}.png").write_bytes(png)


def test_report_opens_cleanly_in_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths, as a user would type them
    Path("runs").mkdir()
    base = _latents(Path("runs/baseline.h5"), 1200, 0.15, label_names=MODALITIES, seed=0)
    dis = _latents(Path("runs/disentangled.h5"), 1200, 2.0, label_names=MODALITIES, seed=1)
    result = build_report(
        [base, dis],
        Path("report"),
        projection=("pca", "tsne"),
        sample=600,
        require=["separation.silhouette>=0.5"],
    )
    check = open_page(
        result.html,
        tmp_path / "profile",
        shots={"summary": None, "projections": "#projections"},
    )
    assert "requirements table" in check.summary and "disentangled" in check.summary
    assert check.errors == []
    assert check.dialogs == []
    assert check.images == len(result.figures) > 10
    assert check.images_decoded
    assert "Silhouette" in check.summary and "baseline → disentangled" in check.summary
    # Self-contained: nothing requested but the page itself and data: URIs.
    page_url = result.html.resolve().as_uri()
    assert [u for u in check.requests if u != page_url and not u.startswith("data:")] == []
    for name in ("summary", "projections"):
        shot = tmp_path / f"screenshot-{name}.png"
        shot.write_bytes(check.screenshots[name])
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _docs_copy(check)


def test_hostile_names_stay_text_in_chromium(tmp_path: Path) -> None:
    hostile = [
        "<script>window.__pwned = 1; alert(1)</script>",
        '<img src=x onerror="window.__pwned = 2">',
        "\"'><svg onload=alert(3)>",
        "a & b $x$",
    ]
    lat = _latents(tmp_path / "hostile.h5", 200, 1.0, label_names=hostile, seed=2)
    result = build_report(
        [lat], tmp_path / "r", names=['<b onmouseover="x()">model</b>'], projection=("pca",)
    )
    check = open_page(
        result.html,
        tmp_path / "profile",
        probe="[typeof window.__pwned, document.body.innerText,"
        " document.querySelectorAll('script, svg, b[onmouseover]').length]",
    )
    pwned, text, injected = check.probe
    assert pwned == "undefined"
    assert injected == 0
    assert check.dialogs == []
    assert check.errors == []
    for name in hostile:
        assert name in text
    assert '<b onmouseover="x()">model</b>' in text


def test_the_checker_catches_a_broken_page(tmp_path: Path) -> None:
    """The browser checks above can fail: a broken page is caught on every count."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><section id='summary'>S</section>"
        "<img src='missing.png'><script>console.error('boom'); undefined_name();</script>"
        "</body></html>",
        encoding="utf-8",
    )
    check = open_page(page, tmp_path / "profile")
    assert check.images == 1 and not check.images_decoded
    assert any("console.error" in e for e in check.errors)
    assert any("exception" in e for e in check.errors)
    assert any(u.endswith("missing.png") for u in check.requests)
