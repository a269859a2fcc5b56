"""Headless Chromium driven over the DevTools protocol, and a small PNG reader.

`Chromium` starts Debian's chromium (installed by hack/install-browser.sh) with a throwaway
profile, no network features and a DevTools port, and `render()` loads a page and reports what
a person opening it would have seen go wrong: console errors, uncaught exceptions, log
errors, failed loads and every URL the page asked for (a self-contained report asks for
none but its own file). The protocol client is websocket-client, which the kubernetes client
already brings in.

`png_pixels` decodes the 8-bit RGB/RGBA PNGs Chromium writes, with the standard library
only, so the screenshot check needs no imaging package.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import websocket

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    url: str
    screenshot: bytes
    thumbnail: bytes  # the same page at a fifth of the size, cheap to decode
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        return [*self.console_errors, *self.exceptions, *self.failed_loads]


class Chromium:
    def __init__(self, binary: str, profile_dir: Path, log_path: Path):
        self.binary, self.profile_dir, self.log_path = binary, profile_dir, log_path
        self.proc: subprocess.Popen | None = None
        self._ids = itertools.count(1)

    def __enter__(self) -> Chromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={self.profile_dir}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port:\n{self.log()}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split("\n")[0])
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _page_socket(self) -> websocket.WebSocket:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        return websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)

    def render(
        self,
        url: str,
        *,
        width: int = 1280,
        height: int = 900,
        evaluate: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Rendered:
        """Load `url`, wait for its load event and a quiet moment, and capture the whole page."""
        ws = self._page_socket()
        events: list[dict] = []

        def call(method: str, **params):
            call_id = next(self._ids)
            ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == call_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message.get("result", {})
                events.append(message)

        def wait_for(method: str) -> None:
            deadline = time.monotonic() + timeout
            while not any(e.get("method") == method for e in events):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url}: no {method} within {timeout}s")
                events.append(json.loads(ws.recv()))

        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(f"{domain}.enable")
            call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            call("Page.navigate", url=url)
            wait_for("Page.loadEventFired")
            call("Runtime.evaluate", expression="new Promise(r => setTimeout(r, 200))", awaitPromise=True)
            values = {
                name: call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")
                for name, expr in (evaluate or {}).items()
            }
            size = call("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": width, "height": max(height, int(size["height"]))}
            screenshot = call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip={**clip, "scale": 1}
            )["data"]
            thumbnail = call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True, clip={**clip, "scale": 0.2}
            )["data"]
        finally:
            ws.close()

        rendered = Rendered(
            url=url, screenshot=base64.b64decode(screenshot), thumbnail=base64.b64decode(thumbnail), values=values
        )
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                rendered.console_errors.append(f"console.{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                rendered.exceptions.append(details.get("exception", {}).get("description") or details.get("text"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                rendered.console_errors.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
            elif method == "Network.requestWillBeSent":
                rendered.requested_urls.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                rendered.failed_loads.append(f"load failed: {params.get('errorText')} ({params.get('type')})")
        return rendered


# --- PNG ----------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, RGB pixels) of a non-interlaced 8-bit RGB or RGBA PNG."""
    width, height = png_size(data)
    pos, idat = 8, b""
    bit_depth, color_type, interlace = data[24], data[25], data[28]
    if bit_depth != 8 or color_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {bit_depth}, colour type {color_type}, interlace {interlace})")
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    bpp = 4 if color_type == 6 else 3
    stride = width * bpp
    previous = bytearray(stride)
    pixels = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                upper_left = previous[i - bpp] if i >= bpp else 0
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
                line[i] = (line[i] + predictor) & 0xFF
        pixels.extend(tuple(line[x : x + 3]) for x in range(0, stride, bpp))
        previous = line
    return width, height, pixels
