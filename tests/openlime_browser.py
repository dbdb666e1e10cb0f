"""Headless Chromium driven over the DevTools protocol, and a local HTTP server, for the OpenLIME browser test.

No extra Python package: Chromium's ``--remote-debugging-pipe`` speaks NUL-terminated JSON
on file descriptors 3 (commands in) and 4 (replies and events out).
"""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = [
    "--headless=new", "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--no-sandbox",                      # CI and this machine run as root
    "--force-device-scale-factor=1", "--force-color-profile=srgb",  # canvas pixels = screenshot pixels
    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; ``command`` sends a DevTools command to the page."""

    def __init__(self, binary: str, profile_dir: Path, timeout: float = 30.0):
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def child_fds():  # runs in the child before exec: the pipe ends become fds 3 and 4
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = os.fdopen(from_chrome_r, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.command(f"{domain}.enable")

    def _read_loop(self):
        buf = b""
        while True:
            chunk = self._in.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise BrowserError(f"no reply to {method} within {self.timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def command(self, method: str, params: dict | None = None) -> dict:
        return self.call(method, params, self.session)

    def evaluate(self, expression: str):
        result = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, width: int, height: int) -> np.ndarray:
        """The page's top-left ``width`` x ``height`` pixels -> (H, W, 3) uint8."""
        from PIL import Image

        data = self.command("Page.captureScreenshot", {"format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})["data"]
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            return np.asarray(im.convert("RGB"))

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads reported since the last call."""
        with self._cond:
            events, self.events = self.events, []
        found = []
        for ev in events:
            p = ev.get("params", {})
            if ev.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif ev.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                found.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
            elif ev.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                found.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
        return found

    def close(self):
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; records every requested path and every failure, logs nothing."""
    failures: list[str]
    requests: list[str]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path.split("?", 1)[0])
        super().do_GET()

    def send_error(self, code, message=None, explain=None):
        self.failures.append(f"HTTP {code} {self.path}")
        super().send_error(code, message, explain)


def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port) from a thread -> (server, base_url, failures, requests)."""
    failures: list[str] = []
    requests: list[str] = []
    handler = type("Handler", (RecordingHandler,), {"failures": failures, "requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", failures, requests


# The page: a viewer exactly the image's size (OpenLIME fits the scene to the canvas: zoom 1,
# no offset), one layer, the light set once when the layer is ready. targetfps ~0 keeps the
# neural layer at full resolution: it relights at a fraction of it while frames are slower than
# 3/4 of targetfps, and SwiftShader's first frame (shader compilation) always is.
# settled() is true once every full-resolution tile has loaded (OpenLIME's tile bookkeeping).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>html, body { margin: 0; padding: 0; overflow: hidden; background: #000; }
#viewer { position: absolute; left: 0; top: 0; }
#viewer > canvas { display: block; width: 100%; height: 100%; }</style>
<script src="openlime.min.js"></script></head>
<body><div id="viewer"></div>
<script>
const q = new URLSearchParams(location.search);
const div = document.getElementById('viewer');
div.style.width = q.get('w') + 'px';
div.style.height = q.get('h') + 'px';
window.lit = false;
const viewer = new OpenLIME.Viewer(div, {canvas: {targetfps: 0.001}});
const layer = new OpenLIME.Layer({type: q.get('type'), layout: q.get('layout'), url: q.get('url')});
viewer.addLayer('model', layer);
function setLight() {
  if (window.lit) return;
  layer.setLight([parseFloat(q.get('lx')), parseFloat(q.get('ly'))], 0);
  window.lit = true;
}
if (layer.status === 'ready') setLight();  // an 'image' layout can be ready inside the constructor
else layer.addEvent('ready', setLight);
window.settled = function () {
  if (!window.lit || layer.status !== 'ready') return false;
  const layout = layer.layout, tiles = [...layer.tiles.values()];
  if (layout.type === 'image') return tiles.length > 0 && tiles.every(t => t.missing === 0);
  const top = layout.nlevels - 1, grid = layout.qbox[top];
  return tiles.filter(t => t.level === top && t.missing === 0).length === grid.xHigh * grid.yHigh;
};
</script></body></html>
"""
