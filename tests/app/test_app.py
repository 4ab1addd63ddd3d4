"""The Gradio app as users reach it: a real server in a subprocess, driven by gradio_client and by
a headless Chromium (Playwright). Set GANBRUSH_SCREENSHOT=docs/app.png to also save the browser
test's screenshot there (the README's picture)."""

import dataclasses
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganbrush_core.paths import REPO_ROOT as REPO
from ganbrush_core.paths import data_root

PHOTOS = data_root() / "photos"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STEPS = 20
pytestmark = pytest.mark.usefixtures("photos_dir")  # skipped where the shared photos are absent

gradio_client = pytest.importorskip("gradio_client")
AppError = gradio_client.exceptions.AppError
handle_file = gradio_client.handle_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen
    url: str
    temp: Path  # its GRADIO_TEMP_DIR: the app's work folder (ganbrush-app-*) is made in it
    log: Path

    def work_dir(self) -> Path:
        (folder,) = self.temp.glob("ganbrush-app-*")
        return folder

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> float:
        """Send ``sig``; the seconds it took to exit (killed after ``timeout``: inf)."""
        started = time.time()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
            return time.time() - started
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")


def start_app(folder: Path, *args: str) -> Server:
    """``python app.py ARGS`` with its port from Gradio's ``GRADIO_SERVER_PORT`` (not ``--port``)
    and ``GRADIO_TEMP_DIR`` in ``folder``; returns once it serves its page."""
    port = free_port()
    log = folder / "server.log"
    temp = folder / "gradio-temp"
    # A heartbeat every second: a closed client session is noticed within a second, not 15.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(temp),
           "GRADIO_HEARTBEAT_INTERVAL": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return Server(proc, url, temp, log)
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start; see {log}")
        time.sleep(1)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The app running until the module's tests are done."""
    server = start_app(tmp_path_factory.mktemp("app"))
    yield server
    server.stop(signal.SIGINT)  # Ctrl-C: the app shuts down cleanly and removes its files


@pytest.fixture(scope="module")
def server(app_server) -> str:
    """The running app's URL."""
    return app_server.url


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False)


@pytest.fixture(scope="module")
def direction(client) -> str:
    """The first direction slider's name, read from the /edit endpoint's parameters."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]
    names = [p["label"] for p in params if p["component"] == "Slider" and "layer" not in p["label"].lower()]
    assert names, "the app offers no direction to edit"
    return names[0]


def photo_path(name: str) -> Path:
    return next(PHOTOS.glob(f"{name}*"))


def read(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def check_edited(original: np.ndarray, result: np.ndarray) -> None:
    """Same size; changed in the largest face (HOG box of laos.jpg's face 0 is about x 21-280,
    y 250-509); untouched far from it (the right half, the top rows)."""
    assert result.shape == original.shape
    face = (slice(300, 460), slice(70, 230))
    # Native rendering keeps the photo's own pixels: only the edit's change shows (a few levels on
    # average for a smile of 3; an unedited run returns the photo bit-identical).
    assert np.abs(result[face].astype(int) - original[face]).mean() > 1.5
    np.testing.assert_array_equal(result[:150], original[:150])
    np.testing.assert_array_equal(result[:, 500:], original[:, 500:])


def pipeline(client, photo, edits="", face=0, steps=STEPS, layers="", mask=None, inversion=None):
    return client.predict(handle_file(photo), edits, face, "w+", steps, layers,
                          None if mask is None else handle_file(mask),
                          None if inversion is None else handle_file(inversion), api_name="/pipeline")


def test_pipeline_endpoint_edits_the_face_and_its_inversion_skips_the_wait(client, direction, tmp_path):
    src = photo_path("laos")
    shown, download, npz = pipeline(client, src, f"{direction}=3")
    original = read(src)
    check_edited(original, read(download))
    np.testing.assert_array_equal(read(shown), read(download))
    # The downloaded inversion, uploaded again, gives the same result without inverting.
    _, again, _ = pipeline(client, src, f"{direction}=3", steps=1, inversion=npz)
    np.testing.assert_array_equal(read(again), read(download))
    # A mask of the photo's size regenerates that region on top of the edit.
    mask = np.zeros(original.shape[:2], np.uint8)
    mask[380:440, 100:200] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    _, masked, _ = pipeline(client, src, f"{direction}=3", steps=1, inversion=npz, mask=tmp_path / "mask.png")
    changed = np.abs(read(masked).astype(int) - read(download)).sum(-1) > 0
    assert changed[380:440, 100:200].mean() > 0.3 and not changed[:, 500:].any()


def test_steps_share_the_session_state(client, direction, tmp_path):
    src = photo_path("laos")
    faces, pick, original = client.predict(handle_file(src), "hog", api_name="/find_faces")
    assert len(faces) == 2 and pick["choices"][1][1] == 1
    out = client.predict(0, "w+", 10, api_name="/invert")
    recon, npz, brush, pasted = out[1], out[2], out[3], out[5]
    assert Image.open(recon).size == (256, 256) and npz.endswith(".npz")
    # /edit takes the layer controls, one strength per direction slider (all 0 but the first), then
    # the rendering.
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]
    assert params[-1]["label"].startswith("Rendering")
    strengths = [3.0 if p["label"] == direction else 0.0 for p in params[3:-1]]
    brush, _, _, download = client.predict(False, 0, 9, *strengths, "native", api_name="/edit")
    check_edited(read(original), read(download))
    assert not np.array_equal(read(download), read(pasted))
    # Paint a stroke on the enlarged face and regenerate it with EdgeConnect.
    stroke = np.zeros((256, 256, 4), np.uint8)
    stroke[150:200, 80:180] = 255
    Image.fromarray(stroke).save(tmp_path / "stroke.png")
    painted = {"background": handle_file(brush["background"]), "layers": [handle_file(tmp_path / "stroke.png")],
               "composite": None, "id": None}
    edges = client.predict(painted, api_name="/predict_edges")
    assert Image.open(edges["background"]).size == (256, 256)
    shown = handle_file(edges["background"])
    face, _, _, regenerated = client.predict(painted, {"background": shown, "layers": [], "composite": shown,
                                                       "id": None}, "edgeconnect", api_name="/regenerate")
    assert not np.array_equal(read(regenerated), read(download))
    np.testing.assert_array_equal(read(regenerated)[:, 500:], read(download)[:, 500:])
    # Edges erased by the user (an all-black drawing) steer the fill elsewhere.
    Image.new("RGB", (256, 256)).save(tmp_path / "no_edges.png")
    erased = handle_file(tmp_path / "no_edges.png")
    _, _, _, without = client.predict(painted, {"background": shown, "layers": [], "composite": erased, "id": None},
                                      "edgeconnect", api_name="/regenerate")
    assert not np.array_equal(read(without), read(regenerated))
    # Another method fills the same stroke without the edges (it has no use for them) instead of refusing.
    _, _, _, classical = client.predict(painted, {"background": shown, "layers": [], "composite": shown, "id": None},
                                        "biharmonic", api_name="/regenerate")
    assert not np.array_equal(read(classical), read(regenerated))
    # The saved inversion loads back in the same session.
    reloaded = client.predict(0, handle_file(npz), api_name="/load_inversion")
    np.testing.assert_array_equal(read(reloaded[1]), read(recon))


def test_new_upload_does_not_disturb_a_running_inversion(server):
    user = gradio_client.Client(server, verbose=False)
    user.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
    job = user.submit(0, "w+", 60, api_name="/invert")
    time.sleep(2)  # the inversion is under way
    faces, _, _ = user.predict(handle_file(photo_path("model_face")), "hog", api_name="/find_faces")
    assert len(faces) == 1 and not job.done()
    out = job.result(timeout=300)
    # It finished, for the photo it started with: its reconstruction and inversion file came back...
    assert Image.open(out[1]).size == (256, 256) and out[2].endswith(".npz")
    # ...but the new photo's session did not take it: it still needs its own inversion.
    # /edit: 3 layer controls, the sliders, the rendering.
    sliders = len(user.view_api(print_info=False, return_format="dict")["named_endpoints"]["/edit"]["parameters"]) - 4
    with pytest.raises(AppError, match="invert the face"):
        user.predict(False, 0, 9, *[1.0] * sliders, "native", api_name="/edit")


@pytest.mark.parametrize("case, expected", [
    ("text", "not a readable image"),
    ("huge", "over the limit"),
    ("noface", "no face found"),
    ("mask", "use the photo's size"),
])
def test_bad_input_gives_one_line_error_and_the_app_keeps_serving(client, tmp_path, case, expected):
    photo = photo_path("laos")
    mask = None
    if case == "text":
        photo = tmp_path / "notes.png"
        photo.write_text("this is not an image\n")
    elif case == "huge":
        photo = tmp_path / "huge.png"
        Image.new("L", (8000, 6000)).save(photo)  # 48 Mpx of black: a small file
    elif case == "noface":
        photo = tmp_path / "flat.png"
        Image.new("RGB", (300, 200), (120, 140, 160)).save(photo)
    else:
        mask = tmp_path / "mask.png"
        half = np.zeros((45, 123), np.uint8)
        half[:, :60] = 255  # a real region, but neither the photo's size nor the face's
        Image.fromarray(half).save(mask)
    with pytest.raises(AppError) as info:
        pipeline(client, photo, mask=mask, steps=1)
    message = str(info.value)
    assert expected in message and "Traceback" not in message and "\n" not in message.strip()
    faces, _, _ = client.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
    assert len(faces) == 2


def test_two_users_at_once_each_get_their_own_result(server, direction):
    jobs = {"laos": photo_path("laos"), "model": photo_path("model_face")}
    users = {name: gradio_client.Client(server, verbose=False) for name in jobs}
    # Both requests are in flight together (submit does not wait); each user gets back their own photo.
    running = {name: users[name].submit(handle_file(path), f"{direction}=2", 0, "w+", 10, "", None, None,
                                        api_name="/pipeline") for name, path in jobs.items()}
    results = {name: job.result(timeout=300)[1] for name, job in running.items()}
    for name, path in jobs.items():
        original, result = read(path), read(results[name])
        assert result.shape == original.shape
        np.testing.assert_array_equal(result[:20], original[:20])
        assert not np.array_equal(result, original)


def open_with_faces(browser, server: str, photo) -> object:
    """A new page of the app at ``server`` with ``photo`` uploaded and its faces found."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    page.wait_for_selector("#photo-preview img", timeout=30_000)
    page.click("#find")
    page.wait_for_selector("#faces img", timeout=60_000)
    return page


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent (apt-get install chromium)")
def test_browser_uploads_inverts_edits_and_shows_the_result(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    src = photo_path("laos")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_with_faces(browser, server, src)
            steps = page.locator("#steps input[type=number]")
            steps.fill(str(STEPS))
            steps.press("Enter")
            page.click("#invert")
            page.wait_for_selector("#reconstruction img", timeout=120_000)
            # The default encoder+pti shows the encoder's preview first: wait for the tuning too.
            page.wait_for_function("() => !document.body.innerText.includes('inverting (')", timeout=120_000)
            page.wait_for_selector("#result img", state="attached", timeout=30_000)
            before = page.locator("#result img").get_attribute("src")
            strength = page.locator("#directions input[type=number]").first
            strength.fill("3")
            strength.press("Enter")
            page.click("#apply")
            page.wait_for_function("s => document.querySelector('#result img')?.getAttribute('src') !== s",
                                   arg=before, timeout=60_000)
            src_url = page.locator("#result img").get_attribute("src")
            (tmp_path / "result.png").write_bytes(page.request.get(src_url).body())
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    check_edited(read(src), read(tmp_path / "result.png"))
    assert Image.open(tmp_path / "app.png").size[0] == 1400
    target = os.environ.get("GANBRUSH_SCREENSHOT")
    if target:
        shutil.copyfile(tmp_path / "app.png", target)


# -- hostile and careless inputs (issue 17) --------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def png_bomb(path: Path, side: int) -> None:
    """A 1-bit black ``side`` x ``side`` PNG, written without ever holding its pixels: a few KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def one_line_error(info: pytest.ExceptionInfo, expected: str) -> str:
    message = str(info.value)
    assert expected in message and "Traceback" not in message and "\n" not in message.strip(), message
    return message


@pytest.mark.parametrize("kind", ["16-bit", "rgba"])
def test_uploaded_photo_is_read_as_the_cli_reads_it(client, tmp_path, kind):
    from inversion.photos import load_photo

    rgb = read(photo_path("laos"))
    if kind == "16-bit":  # Gradio's converter clipped this to white: no face found
        grey = np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257
        photo = tmp_path / "laos16.png"
        Image.fromarray(grey).save(photo)
        assert Image.open(photo).mode.startswith("I;16")
    else:  # transparent top-left corner over red: a viewer (and load_photo) shows white there
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        rgba[:100, :100] = (255, 0, 0, 0)
        photo = tmp_path / "laos_rgba.png"
        Image.fromarray(rgba).save(photo)
    faces, _, original = client.predict(handle_file(photo), "hog", api_name="/find_faces")
    expected = load_photo(photo)
    np.testing.assert_array_equal(read(original), expected)
    assert len(faces) == 2
    if kind == "rgba":
        assert (expected[:100, :100] == 255).all()


def test_a_bomb_is_refused_from_its_header(app_server, client, tmp_path):
    bomb = tmp_path / "bomb.png"
    png_bomb(bomb, 12_000)  # 144 Mpx of 1-bit pixels: 432 MB once decoded to RGB
    assert bomb.stat().st_size < 1_000_000
    pid = app_server.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = rss_mb(pid)
    started = time.time()
    with pytest.raises(AppError) as info:
        client.predict(handle_file(bomb), "hog", api_name="/find_faces")
    elapsed = time.time() - started
    message = one_line_error(info, "over the limit")
    assert "bomb.png" in message and str(app_server.temp) not in message  # the user's name, not the server's copy
    assert elapsed < 2, f"refused after {elapsed:.1f} s"
    assert rss_mb(pid, "VmHWM") - before < 500


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_a_bad_upload_gets_the_apps_one_line_error(app_server, client, tmp_path, kind):
    photo = tmp_path / "photo.jpg"
    if kind == "text":
        photo.write_text("this is not an image\n")
    else:
        data = photo_path("laos").read_bytes()
        photo.write_bytes(data[: len(data) // 2])
    with pytest.raises(AppError) as info:
        client.predict(handle_file(photo), "hog", api_name="/find_faces")
    assert str(app_server.temp) not in one_line_error(info, "not a readable image")


def test_a_brush_over_the_whole_face_is_refused(client, tmp_path):
    client.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
    client.predict(0, "w+", 1, api_name="/invert")
    for name, value in [("full", 255), ("empty", 0)]:
        layer = np.zeros((256, 256, 4), np.uint8)
        layer[..., :3], layer[..., 3] = 255, value
        Image.fromarray(layer).save(tmp_path / f"{name}.png")
    background = tmp_path / "face.png"
    Image.new("RGB", (256, 256)).save(background)

    def painted(name: str) -> dict:
        return {"background": handle_file(background), "layers": [handle_file(tmp_path / f"{name}.png")],
                "composite": None, "id": None}

    with pytest.raises(AppError) as info:
        client.predict(painted("full"), api_name="/predict_edges")
    one_line_error(info, "covers 100% of the face")
    with pytest.raises(AppError) as info:
        client.predict(painted("full"), None, "edgeconnect", api_name="/regenerate")
    one_line_error(info, "covers 100% of the face")
    with pytest.raises(AppError) as info:
        client.predict(painted("empty"), api_name="/predict_edges")
    one_line_error(info, "paint the region")


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_a_cancelled_inversion_stops_and_writes_nothing(app_server, how):
    user = gradio_client.Client(app_server.url, verbose=False)
    user.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
    results = app_server.work_dir() / "results"
    written = set(results.rglob("*"))
    pid = app_server.proc.pid
    job = user.submit(0, "w+", 2000, api_name="/invert")  # minutes of work
    time.sleep(1)
    busy = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - busy > 1, "the inversion did not start"
    if how == "cancel":
        job.cancel()  # gradio_client's cancel: what the Stop button does
    else:
        user.close()  # the session goes away, like a closed browser tab
    time.sleep(2)  # a step or two
    idle = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - idle < 0.5, "the inversion kept running after it was cancelled"
    assert set(results.rglob("*")) == written


def test_sigterm_stops_the_app_and_removes_its_files(tmp_path):
    server = start_app(tmp_path, "--keep-results", "2")  # found on GRADIO_SERVER_PORT, so it is respected
    try:
        results = server.work_dir() / "results"
        user = gradio_client.Client(server.url, verbose=False)
        user.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
        user.predict(0, "w+", 1, api_name="/invert")
        first = {p for p in results.rglob("*") if p.is_file()}
        time.sleep(2.5)
        user.predict(0, "w+", 1, api_name="/invert")  # results older than --keep-results go
        time.sleep(0.5)
        now = {p for p in results.rglob("*") if p.is_file()}
        assert first and now and not first & now, "old results are not expired"
        user.submit(0, "w+", 2000, api_name="/invert")  # running when the app is told to stop
        time.sleep(2)
    finally:
        took = server.stop(signal.SIGTERM)
    assert took < 20, f"the app took {took:.0f} s to stop"
    assert not list(server.temp.glob("ganbrush-app-*")), "the app left its files behind"


# -- the encoder's preview (issue 19) ----------------------------------------------------------------
def test_encoder_pti_shows_the_encoder_result_before_tuning_ends(server):
    from inversion import Inversion

    user = gradio_client.Client(server, verbose=False)
    user.predict(handle_file(photo_path("laos")), "hog", api_name="/find_faces")
    job = user.submit(0, "encoder+pti", 2000, api_name="/invert")  # minutes of tuning
    deadline = time.time() + 120
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.2)
    assert job.outputs(), "no preview arrived"
    assert not job.done()  # the preview came while the tuning was still running
    preview = job.outputs()[0]
    assert Inversion.load(preview[2]).method == "encoder"
    assert Image.open(preview[1]).size == (256, 256) and Path(preview[5]).is_file()
    job.cancel()
    # A short tuning shows both: the encoder's result first, then the tuned one.
    job = user.submit(0, "encoder+pti", 3, api_name="/invert")
    job.result(timeout=300)
    first, last = job.outputs()[0], job.outputs()[-1]
    assert [Inversion.load(o[2]).method for o in (first, last)] == ["encoder", "encoder+pti"]
    assert Inversion.load(last[2]).steps == 3
    assert not np.array_equal(read(first[1]), read(last[1]))


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent (apt-get install chromium)")
def test_browser_shows_the_encoder_preview_while_tuning(server, tmp_path):
    from inversion import Inversion

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_with_faces(browser, server, photo_path("laos"))
            page.locator("#method").get_by_label("encoder+pti").check()
            steps = page.locator("#steps input[type=number]")
            steps.fill("2000")  # minutes of tuning: only the encoder's preview can show in time
            steps.press("Enter")
            page.click("#invert")
            page.wait_for_selector("#reconstruction img", timeout=60_000)
            page.wait_for_selector("#npz a", timeout=30_000)
            page.click("#stop")
            url = page.locator("#npz a").first.get_attribute("href")
            (tmp_path / "inversion.npz").write_bytes(page.request.get(url).body())
        finally:
            browser.close()
    # The shown inversion is the encoder's: the tuning was stopped long before it could finish.
    assert Inversion.load(tmp_path / "inversion.npz").method == "encoder"


# -- the label-map step (issue 18) ----------------------------------------------------------------
def editor_value(background: str, composite: str | Path | None = None, layers: tuple = ()) -> dict:
    """An ImageEditor value as a client sends it."""
    return {"background": handle_file(background), "layers": [handle_file(p) for p in layers],
            "composite": None if composite is None else handle_file(composite), "id": None}


def test_label_map_step_synthesizes_the_painted_map(client, tmp_path):
    from manipulate import labels as L

    src = photo_path("woman_portrait")
    original = read(src)
    client.predict(handle_file(src), "hog", api_name="/find_faces")
    editor, face = client.predict(0, api_name="/labels")
    shown = read(editor["background"])
    assert shown.shape == (256, 256, 3) and Image.open(face).size == (256, 256)
    labels = L.snap_colors(shown, max_distance=0)  # the predicted map, in exact palette colours
    # The map as shown is the face's own: nothing to draw.
    with pytest.raises(AppError) as info:
        client.predict(editor_value(editor["background"], editor["background"]), "", api_name="/synthesize")
    one_line_error(info, "equals the face's own")
    # A widened mouth painted on it (the browser sends the flattened picture as the composite).
    Image.fromarray(L.colorize(L.scale_parts(labels, L.MOUTH, 1.3))).save(tmp_path / "wide.png")
    wide = editor_value(editor["background"], tmp_path / "wide.png")
    photo, download, renders = client.predict(wide, "", api_name="/synthesize")
    result = read(download)
    assert result.shape == original.shape
    np.testing.assert_array_equal(read(photo), result)
    changed = (result != original).any(-1)
    # Redrawn about the mouth (y 1090-1240 in this photo); the eyes and above are untouched.
    assert changed.any() and not changed[:700].any()
    assert Image.open(renders).size == (3 * 256, 256)
    # The same change sent as a painted layer (no composite) gives the same photo.
    stroke = np.zeros((256, 256, 4), np.uint8)
    painted = (L.colorize(L.scale_parts(labels, L.MOUTH, 1.3)) != shown).any(-1)
    stroke[painted, :3], stroke[painted, 3] = read(tmp_path / "wide.png")[painted], 255
    Image.fromarray(stroke).save(tmp_path / "stroke.png")
    _, layered, _ = client.predict(editor_value(editor["background"], layers=(tmp_path / "stroke.png",)), None,
                                   api_name="/synthesize")
    np.testing.assert_array_equal(read(layered), result)
    # Another style (a seed) draws the mouth differently, in the same place.
    _, seeded, _ = client.predict(wide, "3", api_name="/synthesize")
    other = read(seeded)
    assert other.shape == original.shape and not np.array_equal(other, result)
    moved = (other != original).any(-1)
    assert not moved[:700].any()
    centres = [np.argwhere(m).mean(0) for m in (changed, moved)]
    assert np.hypot(*(centres[0] - centres[1])) < 0.05 * max(original.shape)
    with pytest.raises(AppError) as info:
        client.predict(wide, "-1", api_name="/synthesize")
    one_line_error(info, "the style seed must be a whole number")


def test_synthesize_needs_the_label_map_first(server):
    user = gradio_client.Client(server, verbose=False)
    user.predict(handle_file(photo_path("model_face")), "hog", api_name="/find_faces")
    blank = editor_value(str(photo_path("model_face")))
    with pytest.raises(AppError) as info:
        user.predict(blank, "", api_name="/synthesize")
    one_line_error(info, "press 'Label map'")


PRESET_WATCH = """() => {
    const tracker = document.querySelector('#label-map [data-testid=status-tracker]');
    window.presetShown = window.presetDone = false;
    new MutationObserver(() => {
        if (!tracker.classList.contains('hide')) window.presetShown = true;
        else if (window.presetShown) window.presetDone = true;
    }).observe(tracker, {attributes: true, attributeFilter: ['class']});
}"""


@pytest.mark.slow  # 22-36 s on 2 cores: a browser, a 2-Mpx photo's detection and synthesis
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent (apt-get install chromium)")
def test_browser_widens_the_mouth_on_the_label_map(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    src = photo_path("woman_portrait")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_with_faces(browser, server, src)
            page.click("#labels")
            page.wait_for_selector("#label-face img", timeout=60_000)
            # The editor's status tracker shows while the preset runs and hides when its map is in:
            # watch it from before the click, so a quick preset is not missed.
            page.evaluate(PRESET_WATCH)
            page.click("#preset-widen-mouth")
            page.wait_for_function("() => window.presetDone", timeout=30_000)
            page.click("#synthesize")
            page.wait_for_selector("#synth-result img, [data-testid=toast-body]", timeout=60_000)
            assert not page.locator("[data-testid=toast-body]").all_inner_texts()  # no error shown
            url = page.locator("#synth-result img").get_attribute("src")
            (tmp_path / "result.png").write_bytes(page.request.get(url).body())
            page.screenshot(path=str(tmp_path / "labels.png"), full_page=True)
        finally:
            browser.close()
    original, result = read(src), read(tmp_path / "result.png")
    assert result.shape == original.shape
    changed = (result != original).any(-1)
    assert changed.any() and not changed[:700].any()


def test_retarget_step_redraws_any_photo_at_the_sizes_asked(client, tmp_path):
    """InGAN retargeting (its own section, files in): a strip of the sizes asked at the photo's
    scale; the model it trained is cached per photo (removed here again)."""
    import shutil

    from ganbrush_core.images import uint8_to_float
    from inversion.photos import load_photo
    from manipulate.ingan_train import InGANTrainConfig
    from manipulate.retarget import DEFAULT_WORKING_SIZE, cache_key, cache_root

    src = photo_path("classroom")  # 725x544
    with pytest.raises(AppError) as info:
        client.predict(handle_file(src), "725x5000", 3, "ingan", api_name="/retarget")
    one_line_error(info, "out of range")
    key = cache_key(uint8_to_float(load_photo(src)), InGANTrainConfig(), 3, DEFAULT_WORKING_SIZE)
    try:
        shown, download = client.predict(handle_file(src), "1088x544, 500x544, 725x544", 3, "ingan",
                                         api_name="/retarget")
        result = read(download)
        assert result.shape == (544, 1088 + 8 + 500 + 8 + 725, 3)
        np.testing.assert_array_equal(read(shown), result)
        np.testing.assert_array_equal(result[:, -725:], read(src))  # its own size: the photo itself
        assert (cache_root() / key / "ingan.safetensors").is_file()
    finally:
        shutil.rmtree(cache_root() / key, ignore_errors=True)
    # GPNN: no training; a small photo keeps the search short.
    small = tmp_path / "small.png"
    Image.fromarray(read(src)).resize((96, 72), Image.LANCZOS).save(small)
    shown, download = client.predict(handle_file(str(small)), "140x72", 3, "gpnn", api_name="/retarget")
    assert read(download).shape == (72, 140, 3)
