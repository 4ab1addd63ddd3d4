"""The Gradio app as users reach it: a real server in a subprocess, driven by gradio_client and by
a headless Chromium (Playwright). Set GANBRUSH_SCREENSHOT=docs/app.png to also save the browser
test's screenshot there (the README's picture)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py --port N`` running until the module's tests are done; yields its URL."""
    port = free_port()
    log = (tmp_path_factory.mktemp("app") / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 240
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"the app did not start; see {log.name}")
        time.sleep(1)
    yield url
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the app shuts down cleanly and removes its files
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


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
        Image.new("L", (123, 45), 255).save(mask)
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


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent (apt-get install chromium)")
def test_browser_uploads_inverts_edits_and_shows_the_result(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    src = photo_path("laos")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            page.locator("#photo input[type=file]").set_input_files(str(src))
            page.wait_for_selector("#photo img", timeout=30_000)
            page.click("#find")
            page.wait_for_selector("#faces img", timeout=60_000)
            steps = page.locator("#steps input[type=number]")
            steps.fill(str(STEPS))
            steps.press("Enter")
            page.click("#invert")
            page.wait_for_selector("#reconstruction img", timeout=120_000)
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
