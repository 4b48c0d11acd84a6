"""The web sample (samples/web) runs an exported model in headless Chromium with onnxruntime-web
(wasm, one thread) and gets the logits onnxruntime-python gets, reads the labels from the model's
metadata, and its draw-a-digit page shows onnxruntime's probabilities for a digit drawn with the mouse.

The page is served from samples/web by a local http.server; the model and the test inputs come
from a temporary folder under the `/_test/` route. Chromium is driven over the DevTools protocol
on a pipe (`--remote-debugging-pipe`: JSON messages on fds 3/4), so nothing beyond the standard
library and the browser is needed. Skipped when chromium or samples/web/node_modules is missing,
except under CI=true, where that fails (`.ci/run` installs both).
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

WEB = Path(__file__).resolve().parents[1] / "samples" / "web"
ORT_WEB = WEB / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.js"
CHROMIUM = os.environ.get("RNNEDGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_TIMEOUT = 60.0  # seconds for the page to load the wasm runtime, the model, and run it
LENGTHS = [8, 8, 5, 3, 1, 8, 6]  # one batch, variable lengths (1 = a single row)

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")  # CI must run the browser tests, never skip them
MISSING = [why for absent, why in ((CHROMIUM is None, "chromium not found (apt-get install chromium; .ci/run installs it)"),
                                   (not ORT_WEB.is_file(), "samples/web/node_modules missing (npm ci --prefix samples/web)")) if absent]
pytestmark = [pytest.mark.skipif(bool(MISSING) and not IN_CI, reason="; ".join(MISSING))]


@pytest.fixture(scope="session", autouse=True)
def _needs_browser():  # session scope: checked before the browser and server fixtures start
    """Under CI=true a browser test that cannot run is a failure, not a skip."""
    if MISSING:
        pytest.fail("CI=true and the browser test cannot run: " + "; ".join(MISSING), pytrace=False)


# --- a static server: samples/web, plus /_test/<name> from a temporary folder ----------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
                      ".json": "application/json", ".onnx": "application/octet-stream"}

    def __init__(self, *args, test_dir: Path, **kwargs):
        self.test_dir = test_dir
        super().__init__(*args, **kwargs)

    def translate_path(self, path):
        route = path.split("?", 1)[0].split("#", 1)[0]
        if route.startswith("/_test/"):
            return str(self.test_dir / Path(route).name)
        return super().translate_path(path)

    def log_message(self, format, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, folder served at /_test/)."""
    test_dir = tmp_path_factory.mktemp("web")
    handler = functools.partial(_Handler, directory=str(WEB), test_dir=test_dir)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", test_dir
    httpd.shutdown()
    httpd.server_close()


# --- headless Chromium over the DevTools protocol on a pipe ---------------------------------------

class Chromium:
    """A headless Chromium driven with DevTools protocol messages over fds 3 (in) and 4 (out)."""

    def __init__(self, profile: Path, *, width: int = 820, height: int = 640):
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()

        def remap():  # in the child: our pipe ends become fds 3 and 4 (via fds >= 10, so nothing clobbers)
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--mute-audio", f"--window-size={width},{height}",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.log = profile / "chromium-stderr.log"  # a file, not a pipe nobody drains
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         pass_fds=(3, 4), preexec_fn=remap, start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Condition()
        self.console: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.size = (width, height)

    def _read(self):
        buffer = b""
        while chunk := os.read(self._in, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                        self._lock.notify_all()
                    else:
                        self._on_event(message)
        with self._lock:
            self._replies[-1] = {"error": {"message": "chromium closed the pipe"}}
            self._lock.notify_all()

    def _on_event(self, message):
        params = message.get("params", {})
        if message.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {text}")
        elif message.get("method") == "Runtime.exceptionThrown":
            self.console.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")

    def send(self, method: str, params: dict | None = None, *, session: str | None = None, timeout: float = 30.0):
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._replies and -1 not in self._replies:
                if not self._lock.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"chromium did not answer {method} in {timeout:.0f} s")
            reply = self._replies.pop(ident, None) or self._replies[-1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply["result"]

    def open(self, url: str) -> str:
        """Open url in a new tab; returns the tab's session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Runtime.enable", session=session)
        width, height = self.size
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        return session

    def evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = PAGE_TIMEOUT):
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page did not reach `{expression}` in {timeout:.0f} s; console: {self.console[-10:]}")

    def drag(self, session: str, points: list[tuple[float, float]], steps: int = 12):
        """Press the left mouse button at points[0], move through the rest, release."""
        def mouse(kind, x, y, buttons):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "buttons": buttons, "clickCount": 1}, session=session)

        mouse("mousePressed", *points[0], 1)
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            for k in range(1, steps + 1):
                mouse("mouseMoved", ax + (bx - ax) * k / steps, ay + (by - ay) * k / steps, 1)
        mouse("mouseReleased", *points[-1], 0)

    def screenshot(self, session: str) -> bytes:
        import base64

        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the process group this object started
            self.proc.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        chrome.send("Browser.getVersion", timeout=30)
    except Exception as error:
        chrome.close()
        pytest.fail(f"chromium did not start: {error}\n{chrome.log.read_text(errors='replace')[-2000:]}")
    yield chrome
    chrome.close()


# --- the model --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_models(tmp_path_factory, server):
    """A tiny digits GRU (1 epoch), exported with the default lowering and with the native GRU op,
    into the served /_test/ folder: {lowering: file name}."""
    from rnnedge.checkpoint import save_checkpoint
    from rnnedge.exporting.api import export_checkpoint
    from rnnedge.tasks import get_task
    from rnnedge.training.loop import train

    _, test_dir = server
    task = get_task("digits")
    result = train(task.default_config("gru", hidden=16), task, epochs=1, seed=0, progress=False)
    ckpt = tmp_path_factory.mktemp("digits") / "digits.safetensors"
    save_checkpoint(ckpt, result.model, task=task.name, labels=task.labels, metrics=result.metrics)
    names = {}
    for lowering in ("auto", "native"):
        names[lowering] = f"digits-{lowering}.onnx"
        export_checkpoint(ckpt, test_dir / names[lowering], lowering=lowering, verify=False, lengths=True)  # variable lengths below
    return names


def _test_inputs():
    """A batch of test digits with variable lengths; rows past a length hold noise (to be ignored)."""
    from rnnedge.tasks import get_task

    images = get_task("digits").split("test").inputs[: len(LENGTHS)].copy()  # (B, 8, 8)
    noise = np.random.default_rng(0).random(images.shape, dtype=np.float32)
    for row, length in enumerate(LENGTHS):
        images[row, length:] = noise[row, length:]
    return {"x": images.astype(np.float32), "lengths": np.array(LENGTHS, dtype=np.int64)}


def _as_json(feeds):
    return {"feeds": {name: {"type": str(a.dtype), "dims": list(a.shape), "data": a.reshape(-1).tolist()}
                      for name, a in feeds.items()}}


@pytest.mark.parametrize("lowering", ["auto", "native"])
def test_browser_logits_equal_onnxruntime_python(lowering, digits_models, server, browser):
    import onnx
    import onnxruntime as ort

    base, test_dir = server
    model = test_dir / digits_models[lowering]
    feeds = _test_inputs()
    (test_dir / "test_inputs.json").write_text(json.dumps(_as_json(feeds)))

    session = browser.open(f"{base}index.html?test=1&model=_test/{model.name}&inputs=_test/test_inputs.json")
    browser.wait_for(session, "document.title === 'done'")
    report = json.loads(browser.evaluate(session, "document.getElementById('result').textContent"))
    assert "error" not in report, f"{report['error']}\nconsole: {browser.console[-10:]}"

    expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]
    got = report["outputs"]["logits"]
    assert got["dims"] == list(expected.shape) == [len(LENGTHS), 10]
    diff = float(np.max(np.abs(np.asarray(got["data"], dtype=np.float32).reshape(expected.shape) - expected)))
    print(f"{lowering}: max |browser - onnxruntime-python| = {diff:.3g} (onnxruntime-web {report['ort'].get('web')})")
    assert diff <= 1e-4

    # The page configures itself from the model's metadata_props (read without a protobuf library).
    props = {p.key: p.value for p in onnx.load(model).metadata_props}
    assert report["metadata"] == props
    assert report["labels"] == json.loads(props["rnnedge.labels"])
    assert report["inputNames"] == ["x", "lengths"] and report["outputNames"] == ["logits"]
    assert report["numThreads"] == 1


def test_draw_page_classifies_a_drawn_digit(digits_models, server, browser):
    """Drawing with the mouse inks the grid, and the page shows onnxruntime's probabilities for it."""
    import onnxruntime as ort

    base, test_dir = server
    session = browser.open(f"{base}index.html?model=_test/{digits_models['auto']}")
    status = browser.wait_for(session, "(t => /ms per guess|digits GRU|Could not|failed/.test(t) && t)"
                                       "(document.getElementById('status').textContent)")
    assert "Could not" not in status, f"{status}\nconsole: {browser.console[-10:]}"
    assert status.startswith("digits GRU, hidden 16")  # described from the metadata

    left, top, side = browser.evaluate(session, "(r => [r.left, r.top, r.width])"
                                                "(document.getElementById('grid').getBoundingClientRect())")
    seven = [[(0.18, 0.12), (0.82, 0.12), (0.62, 0.5), (0.45, 0.92)], [(0.38, 0.52), (0.78, 0.52)]]
    for stroke in seven:
        browser.drag(session, [(left + fx * side, top + fy * side) for fx, fy in stroke])
    browser.wait_for(session, "/ms per guess/.test(document.getElementById('status').textContent)")

    pixels = np.asarray(browser.evaluate(session, "Array.from(pixels())"), dtype=np.float32).reshape(1, 8, 8)
    assert pixels[0, 0].sum() > 2 and pixels[:, :, 0].sum() == 0  # the top bar is inked, the left column not
    assert pixels.min() >= 0 and pixels.max() <= 1
    logits = ort.InferenceSession(str(test_dir / digits_models["auto"]), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"x": pixels, "lengths": np.array([8], dtype=np.int64)})[0][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()

    read = ("[document.getElementById('guess').textContent, [...document.querySelectorAll('#probs li')].map(li => "
            "[li.querySelector('.label').textContent, li.querySelector('.pct').textContent])]")
    deadline = time.monotonic() + 10
    while True:  # the page guesses as the pen moves; wait for the guess on the finished drawing
        guess, shown = browser.evaluate(session, read)
        percent = np.array([float(pct.rstrip("%") or "nan") for _, pct in shown])
        if np.allclose(percent, 100 * probs, atol=0.051) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [label for label, _ in shown] == [str(d) for d in range(10)]
    assert guess == str(int(np.argmax(probs)))
    np.testing.assert_allclose(percent, 100 * probs, atol=0.051)  # shown rounded to 0.1%
