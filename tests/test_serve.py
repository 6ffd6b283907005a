"""`googlenet serve` as a real server on 127.0.0.1 (a free port): classification and detection through HTTP, the
weights' record, concurrent requests batched together, and every bad upload a 4xx with a one-line JSON error after
which the next request is answered."""

import io
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from googlenet.model import RegionHead, build_model, save_weights

CLASSES = [f"article {k}" for k in range(10)]


def _jpeg(size=(96, 72), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says width x height (a decompression bomb's shape)."""
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height, then its CRC again
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    model = build_model("googlenet_bn", num_classes=10, width=0.25, aux=False)
    model.meta.class_names, model.meta.input_size = CLASSES, 64
    save_weights(model, folder / "classifier.safetensors", model.meta)
    regions = build_model("googlenet_bn", num_classes=3, width=0.125, aux=False)
    regions.meta.task, regions.meta.input_size, regions.meta.class_names = "regions", 32, ["background", "a", "b"]
    regions.meta.head = RegionHead(context=4, proposals="ss", fg_iou=0.5)
    with torch.no_grad():
        regions.linear.bias.copy_(torch.tensor([0.0, 6.0, 0.0]))  # every window is an "a": boxes to find
    save_weights(regions, folder / "regions.safetensors", regions.meta)
    options = ["--detector", str(folder / "regions.safetensors"), "--max-bytes", "300000", "--max-pixels", "1000000"]
    process, url = _start(folder / "classifier.safetensors", *options, "--max-wait-ms", "20")
    yield url
    process.terminate()
    process.wait(timeout=30)


def _start(checkpoint, *options) -> tuple[subprocess.Popen, str]:
    """`googlenet serve` on a free port of 127.0.0.1, once /healthz answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "googlenet", "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen([*command, *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(process.communicate()[0][-3000:])


def test_serve_with_several_worker_processes(server, tmp_path):
    with urllib.request.urlopen(f"{server}/v1/model") as record:
        assert json.loads(record.read())["class_names"] == CLASSES
    model = build_model("googlenet_bn", num_classes=10, width=0.125, aux=False)
    model.meta.class_names, model.meta.input_size = CLASSES, 32
    save_weights(model, tmp_path / "small.safetensors", model.meta)
    process, url = _start(tmp_path / "small.safetensors", "--workers", "2")
    try:
        answers = [_post(f"{url}/v1/classify", _jpeg()) for _ in range(4)]
        assert all(status == 200 and len(a["predictions"]) == 5 for status, a in answers)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post(url: str, body: bytes, kind: str = "image/jpeg") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_serve_classifies_raw_bytes_and_form_uploads(server):
    status, answer = _post(f"{server}/v1/classify?topk=3", _jpeg())
    assert status == 200 and len(answer["predictions"]) == 3
    assert {p["class"] for p in answer["predictions"]} <= set(CLASSES)
    everything = _post(f"{server}/v1/classify?topk=10", _jpeg())[1]["predictions"]
    assert abs(sum(p["probability"] for p in everything) - 1) < 1e-4
    boundary = "googlenet-test"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + _jpeg()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, form_answer = _post(f"{server}/v1/classify?topk=3", form, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and form_answer["predictions"] == answer["predictions"]
    status, ten = _post(f"{server}/v1/classify?crops=10", _jpeg())
    assert status == 200 and ten["crops"] == 10 and len(ten["predictions"]) == 5
    with urllib.request.urlopen(f"{server}/v1/model") as record:
        meta = json.loads(record.read())
    assert meta["class_names"] == CLASSES and meta["detector"] == ["a", "b"]


def test_serve_detects(server):
    status, answer = _post(f"{server}/v1/detect", _jpeg((120, 90)))
    assert status == 200 and answer["size"] == [120, 90] and answer["detections"]
    first = answer["detections"][0]
    assert first["class"] == "a" and first["score"] > 0.9 and len(first["box"]) == 4


def test_serve_batches_concurrent_requests(server):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(f"{server}/v1/classify", _jpeg()), range(32)))
    assert all(status == 200 for status, _ in answers)
    with urllib.request.urlopen(f"{server}/v1/model") as record:
        assert json.loads(record.read())["mean_batch"] > 1  # requests shared forward passes


@pytest.mark.parametrize(
    "name, body, kind, status, says",
    [
        ("empty", b"", "image/jpeg", 400, "empty"),
        ("not an image", b"hello, world" * 10, "image/jpeg", 400, "not an image"),
        ("truncated JPEG", _jpeg((300, 200))[:1500], "image/jpeg", 400, "not a readable image"),
        ("100-megapixel PNG", _png_claiming(10_000, 10_000), "image/png", 413, "10000x10000 pixels"),
        ("PNG over Pillow's own limit", _png_claiming(20_000, 20_000), "image/png", 413, "400,000,000 pixels"),
        ("oversized body", b"\xff\xd8" + bytes(400_000), "image/jpeg", 413, "more than the limit"),
        ("wrong content type", _jpeg(), "text/plain", 415, "not an image"),
    ],
)
def test_serve_refuses_bad_uploads_in_one_line_and_goes_on(server, name, body, kind, status, says):
    got, answer = _post(f"{server}/v1/classify", body, kind)
    assert got == status and says in answer["error"] and "\n" not in answer["error"], (name, answer)
    assert _post(f"{server}/v1/classify", _jpeg())[0] == 200


def test_serve_refuses_bad_parameters(server):
    assert _post(f"{server}/v1/classify?crops=7", _jpeg())[0] == 400
    assert _post(f"{server}/v1/classify?topk=0", _jpeg())[0] == 400


def test_every_error_status_answers_with_an_error_field(server):
    assert _post(f"{server}/no/such/path", _jpeg()) == (404, {"error": "Not Found"})
    try:
        urllib.request.urlopen(f"{server}/v1/classify", timeout=30)  # GET where only POST is answered
    except urllib.error.HTTPError as err:
        assert err.code == 405 and json.loads(err.read()) == {"error": "Method Not Allowed"}
    else:
        raise AssertionError("GET /v1/classify answered")


def test_a_busy_port_is_one_line_and_exit_status_2(server, tmp_path):
    port = server.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "googlenet", "serve", "--checkpoint", str(tmp_path / "w.safetensors")]
    result = subprocess.run([*command, "--port", port], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"googlenet: error: cannot listen on 127.0.0.1:{port}: address already in use"
    ], result.stderr


def _browser():
    """Headless Chromium through Selenium and Debian's chromium-driver; None where they are not installed."""
    import shutil

    try:
        from selenium import webdriver
    except ImportError:
        return None
    driver, chromium = shutil.which("chromedriver"), shutil.which("chromium") or shutil.which("chromium-browser")
    if not (driver and chromium):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def test_serve_page_shows_the_top5_and_the_boxes_in_a_browser(server, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(
            "needs selenium and Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_jpeg((120, 90)))
    try:
        browser.get(server)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "classes" in b.find_element(By.ID, "about").text)
        assert "detector: 2 classes" in browser.find_element(By.ID, "about").text
        browser.execute_script("document.getElementById('file').hidden = false")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".prediction")) == 5)
        names = [
            e.find_element(By.CSS_SELECTOR, ".name").text for e in browser.find_elements(By.CSS_SELECTOR, ".prediction")
        ]
        assert set(names) <= set(CLASSES) and len(set(names)) == 5
        wait.until(lambda b: int(b.find_element(By.ID, "canvas").get_attribute("data-boxes") or 0) >= 1)
        assert browser.find_element(By.ID, "error").text == ""
        bad = tmp_path / "bad.jpg"  # the server refuses it: the page must not go on showing the last picture
        bad.write_bytes(b"hello, world" * 10)
        browser.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(lambda b: "not an image" in b.find_element(By.ID, "error").text)
        assert browser.execute_script("return document.getElementById('canvas').width") == 0
        assert not browser.find_elements(By.CSS_SELECTOR, ".prediction")
    finally:
        browser.quit()
