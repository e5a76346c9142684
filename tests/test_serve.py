"""The gallery service (`artjax.serve`): its API in-process against the Predictor, TF Serving's
request shapes, the limits and errors (with a fuzz of bad uploads), batching of concurrent
requests, TensorFlow alone in the serving process, a real uvicorn process, and the page in a real
browser (Selenium with Debian's chromium)."""

import asyncio
import base64
import contextlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from artjax.serving import batching, collection, exported, inference
from tests.conftest import PROJECT_ROOT
from tests.test_export import PARITY_ATOL, real_paintings

pytestmark = pytest.mark.xdist_group("serve")  # its own worker: the export and a server

LIMITS = dict(max_bytes=2 * 2**20, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def export_dir(finished_run, synthetic_root, tmp_path_factory):
    """The finished run exported as a SavedModel, with the index of its synthetic collection."""
    _, run = finished_run
    out = tmp_path_factory.mktemp("served") / "savedmodel"
    exported.export(run, out)
    collection.build(run, synthetic_root, out)
    return out


def wait_ready(client, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"not ready: {client.get('/readyz').json()}")


@pytest.fixture(scope="module")
def client(export_dir):
    from fastapi.testclient import TestClient

    from artjax.serving import app

    service = app.create_app(export_dir, "gallery", app.Limits(**LIMITS))
    with TestClient(service) as client:
        wait_ready(client)
        yield client


def upload(client, path, content, filename="painting.jpg", content_type="image/jpeg", **form):
    return client.post(path, files={"file": (filename, content, content_type)}, data=form)


def as_bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_predictions_equal_the_predictors_and_b64_equals_multipart(
    client, finished_run, real_data_root
):
    _, run = finished_run
    paths = real_paintings(real_data_root, 4)
    predictor = inference.Predictor(run)
    expected, _, _ = predictor.predict_files(paths)
    body = {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in paths]}
    served = client.post("/v1/models/gallery:predict", json=body)
    assert served.status_code == 200, served.text
    predictions = served.json()["predictions"]
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], expected, atol=PARITY_ATOL
    )
    for path, prediction in zip(paths, predictions):
        described = predictor.describe_file(path, 3)
        assert [t["style"] for t in prediction["top_k"]] == [s for s, _ in described.ranked]
        assert prediction["uncertain"] == described.uncertain
        assert prediction["top_class"] == described.ranked[0][0]
        multipart = upload(client, "/v1/predict", path.read_bytes())
        assert multipart.status_code == 200, multipart.text
        found = multipart.json()  # alone in its batch, where :predict sent four in one
        assert [t["style"] for t in found["top_k"]] == [t["style"] for t in prediction["top_k"]]
        np.testing.assert_allclose(
            [t["probability"] for t in found["top_k"]],
            [t["probability"] for t in prediction["top_k"]],
            atol=1e-6,
        )
        assert found["version"] == prediction["version"]
    # TF Serving's named-input form of an instance is the same request
    named = {"instances": [{"encoded": {"b64": body["instances"][0]["b64"]}}]}
    again = client.post("/v1/models/gallery:predict", json=named).json()["predictions"][0]
    np.testing.assert_allclose(again["probabilities"], predictions[0]["probabilities"], atol=1e-6)


def test_metadata_health_similar_thumbnails_and_explain(client, export_dir, finished_run):
    _, run = finished_run
    assert client.get("/healthz").json() == {"status": "alive"}
    status = client.get("/v1/models/gallery").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = status["metadata"]
    record = json.loads((export_dir / "export.json").read_text())
    assert metadata["classes"] == record["classes"] and metadata["version"] == record["version"]
    assert set(metadata["signatures"]) == {"serving_default", "serve_encoded", "embed", "explain"}
    assert metadata["source"]["workdir"] == str(run)
    assert client.get("/v1/models/other").status_code == 404
    index = collection.CollectionIndex.load(export_dir)
    painting = index.source + "/" + index.files[3]
    similar = upload(client, "/v1/similar", pathlib.Path(painting).read_bytes(), k="4").json()
    assert len(similar["similar"]) == 4 and similar["similar"][0]["id"] == 3  # finds itself
    assert similar["similar"][0]["artist"] == index.artists[3]
    thumbnail = client.get(similar["similar"][1]["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content == index.thumbnail(similar["similar"][1]["id"])
    assert client.get(f"/v1/thumbnails/{len(index)}").status_code == 404
    assert client.get("/v1/thumbnails/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    overlay = upload(client, "/v1/explain", pathlib.Path(painting).read_bytes())
    assert overlay.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(overlay.content)) as image:
        assert image.size == Image.open(painting).size
    heat = upload(client, "/v1/explain", pathlib.Path(painting).read_bytes(), output="map").json()
    assert np.max(heat["map"]) == pytest.approx(1.0, abs=1e-3) and heat["style"]
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert (
        page.status_code == 200
        and "<script>" in page.text
        and "http" not in page.text.split("<script>")[1]
    )  # no CDN: the page needs nothing from the network


def bad_uploads(real_painting: bytes) -> dict:
    """name -> (bytes, the status the service answers)."""
    rng = np.random.default_rng(0)
    photo = Image.open(io.BytesIO(real_painting))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the server turns it upright
    big = as_bytes(Image.new("1", (20_000, 20_000)), "PNG", optimize=True)  # 400 MP at 1 bit
    return {
        "random bytes": (rng.bytes(5000), 400),
        "truncated jpeg": (real_painting[: len(real_painting) // 3], 400),
        "header only": (real_painting[:200], 400),
        "html named .jpg": (b"<!doctype html><html><body>not a painting</body></html>", 400),
        "empty": (b"", 400),
        "20000 x 20000 png": (big, 413),
        # its first 2 kB: a few kilobytes whose header claims 400 million pixels
        "20000 x 20000 png, cut": (big[:2048], 413),
        "gif": (as_bytes(photo.convert("P"), "GIF"), 415),
        "cmyk jpeg": (as_bytes(photo.convert("CMYK"), "JPEG"), 200),
        "16-bit png": (
            as_bytes(Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257)), "PNG"),
            200,
        ),
        "greyscale png": (as_bytes(photo.convert("L"), "PNG"), 200),
        "rgba png": (as_bytes(photo.convert("RGBA"), "PNG"), 200),
        "exif-rotated jpeg": (as_bytes(photo, "JPEG", exif=exif), 200),
    }


def test_a_fuzz_of_bad_uploads_gets_clear_errors_and_the_server_stays_up(
    client, finished_run, real_data_root
):
    _, run = finished_run
    painting = real_paintings(real_data_root, 1)[0]
    uploads = bad_uploads(painting.read_bytes())
    assert len(uploads["20000 x 20000 png"][0]) < 64_000  # deflate's limit: about 1/1000
    for name, (content, status) in uploads.items():
        for path in ("/v1/predict", "/v1/similar", "/v1/explain"):
            answer = upload(client, path, content, filename="painting.jpg")
            assert answer.status_code == status, (name, path, answer.text)
            if status != 200:
                assert answer.headers["content-type"] == "application/json"
                assert answer.json()["error"], name
    errors = {
        name: upload(client, "/v1/predict", content).json()["error"]
        for name, (content, status) in uploads.items()
        if status != 200
    }
    assert "empty" in errors["empty"] and "truncated" in errors["truncated jpeg"]
    assert "not an image" in errors["html named .jpg"]
    assert "GIF" in errors["gif"]
    assert (
        "max_pixels" in errors["20000 x 20000 png"] and "400000000" in errors["20000 x 20000 png"]
    )
    # the greyscale and 16-bit images are the same painting: the same style
    grey = upload(client, "/v1/predict", uploads["greyscale png"][0]).json()
    deep = upload(client, "/v1/predict", uploads["16-bit png"][0]).json()
    assert deep["top_k"][0]["style"] == grey["top_k"][0]["style"]
    # a body over --max_bytes, refused while it is read; a missing field; a bad b64 instance
    too_big = upload(client, "/v1/predict", b"\xff" * (LIMITS["max_bytes"] + 1))
    assert too_big.status_code == 413 and "max_bytes" in too_big.json()["error"]
    missing = client.post("/v1/predict", data={"k": "3"})
    assert missing.status_code == 422 and "file" in missing.json()["error"]
    bad = client.post("/v1/models/gallery:predict", json={"instances": [{"b64": "%%%"}]})
    assert bad.status_code == 400 and "instances[0]" in bad.json()["error"]
    assert client.post("/v1/models/gallery:predict", json={"x": 1}).status_code == 400
    # and a good painting is still answered as before
    (expected,) = inference.Predictor(run).describe_file(painting, 1).ranked
    found = upload(client, "/v1/predict", painting.read_bytes()).json()["top_k"][0]
    assert found["style"] == expected[0]
    assert found["probability"] == pytest.approx(expected[1], abs=PARITY_ATOL)


def test_a_batch_formed_from_concurrent_requests_equals_one_request_at_a_time(
    export_dir, real_data_root
):
    from artjax.serving import app

    model = app.GalleryModel(export_dir)
    encoded = [p.read_bytes() for p in real_paintings(real_data_root, 6)]
    one_at_a_time = [model.probabilities([e])[0] for e in encoded]

    async def concurrently(max_batch):
        batcher = batching.Batcher(lambda items: model.probabilities(list(items)), max_batch, 50, 8)
        worker = asyncio.create_task(batcher.run())
        found = await asyncio.gather(*(batcher.submit(e) for e in encoded))
        with pytest.raises(batching.QueueFull):  # a full queue refuses, it does not grow
            await asyncio.gather(*(batcher.submit(e) for e in encoded * 2))
        worker.cancel()
        return found, batcher.batch_sizes

    found, sizes = asyncio.run(concurrently(4))
    assert sizes[:2] == [4, 2]  # six concurrent requests, in batches of at most four
    np.testing.assert_allclose(found, one_at_a_time, atol=1e-6)
    found, sizes = asyncio.run(concurrently(1))
    assert sizes[:6] == [1] * 6


def test_batches_are_padded_to_warm_batch_sizes_and_equal_one_at_a_time(export_dir, real_data_root):
    # The SavedModel's program compiles once per batch size it sees: batches run at the sizes
    # warm_up compiled, padded up, so no request waits for a compilation.
    from artjax.serving import app

    assert app.batch_sizes(16) == (1, 2, 4, 8, 16) and app.batch_sizes(12) == (1, 2, 4, 8, 12)
    model = app.GalleryModel(export_dir, max_batch=4)
    run_at = []
    serve = model._serve
    model._serve = lambda encoded: run_at.append(len(encoded)) or serve(encoded)
    encoded = [p.read_bytes() for p in real_paintings(real_data_root, 3)]
    model.warm_up([1])
    one_at_a_time = model.probabilities(encoded)
    assert run_at[-3:] == [1, 1, 1]  # only size 1 is warm: one at a time
    model.warm_up()
    assert model.warm_sizes == (1, 2, 4)
    run_at.clear()
    np.testing.assert_allclose(model.probabilities(encoded), one_at_a_time, atol=1e-6)
    np.testing.assert_allclose(model.probabilities(encoded * 2), [*one_at_a_time] * 2, atol=1e-6)
    assert run_at == [4, 4, 2]  # three padded to four; six as four and two


def test_the_service_runs_with_tensorflow_alone(export_dir, real_data_root):
    painting = real_paintings(real_data_root, 1)[0]
    script = (
        "import sys\n"
        "for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax'):\n"
        "    sys.modules[name] = None\n"
        "from fastapi.testclient import TestClient\n"
        "from artjax.serving import app\n"
        f"with TestClient(app.create_app({str(export_dir)!r})) as client:\n"
        "    import time\n"
        "    while client.get('/readyz').status_code != 200: time.sleep(0.1)\n"
        f"    files = {{'file': ('p.jpg', open({str(painting)!r}, 'rb').read())}}\n"
        "    print(client.post('/v1/predict', files=files).json()['top_k'][0]['style'])\n"
        "    loaded = [m for m, v in sys.modules.items() if v is not None]\n"
        "    print(sorted(m for m in loaded if m.split('.')[0] in ('jax', 'flax')))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    style, modules = result.stdout.strip().splitlines()[-2:]
    assert style in json.loads((export_dir / "export.json").read_text())["classes"]
    assert modules == "[]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(export_dir):
    """`python -m artjax.serve` on a free local port: (url, seconds until ready)."""
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-m", "artjax.serve", f"--model={export_dir}", f"--port={port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, started = f"http://127.0.0.1:{port}", time.time()
    try:
        while time.time() - started < 120:
            assert process.poll() is None, process.stdout.read()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url, time.time() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(export_dir):
    with serving(export_dir) as found:
        yield found


@pytest.fixture(scope="module")
def page_server(request):
    """The page's server: the tiny run's (`server`), or one of ARTJAX_PAGE_EXPORT's export (the
    README's screenshot is of the six-style model's: README, "For museum and education tools")."""
    if "ARTJAX_PAGE_EXPORT" not in os.environ:
        yield request.getfixturevalue("server")
        return
    with serving(os.environ["ARTJAX_PAGE_EXPORT"]) as found:
        yield found


def test_a_real_server_process_answers_as_the_library(server, finished_run, real_data_root):
    import httpx

    url, _ = server
    _, run = finished_run
    painting = real_paintings(real_data_root, 1)[0]
    answer = httpx.post(f"{url}/v1/predict", files={"file": ("p.jpg", painting.read_bytes())})
    assert answer.status_code == 200, answer.text
    (expected,) = inference.Predictor(run).describe_file(painting, 1).ranked
    assert answer.json()["top_k"][0]["style"] == expected[0]
    assert httpx.get(f"{url}/v1/models/artjax").json()["model_version_status"]


def chromium():
    """(browser, driver) paths of Debian's chromium and chromium-driver, or a skip (a failure
    under CI=true: .ci/run installs them)."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        message = "chromium and chromium-driver are not installed (apt-get install them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@contextlib.contextmanager
def page_with(url, painting):
    """Headless chromium on the service's page at `url` with `painting` uploaded through its file
    input and its answer shown: (page, wait)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=900,1400")
    page = webdriver.Chrome(service=Service(driver), options=options)
    try:
        page.get(f"{url}/")
        # chromedriver takes canonical paths only
        page.find_element(By.ID, "file").send_keys(str(pathlib.Path(painting).resolve()))
        wait = WebDriverWait(page, 120)
        wait.until(lambda p: p.find_element(By.ID, "top-style").text)
        yield page, wait
    finally:
        page.quit()


def test_the_page_in_a_real_browser_shows_the_apis_style_and_similar_paintings(
    page_server, real_data_root
):
    import httpx
    from selenium.webdriver.common.by import By

    url, _ = page_server
    # ARTJAX_PAGE_PAINTING: the README's screenshot is of a Monet (one of the six styles)
    painting = pathlib.Path(
        os.environ.get("ARTJAX_PAGE_PAINTING", real_paintings(real_data_root, 3)[1])
    )
    expected = httpx.post(f"{url}/v1/predict", files={"file": ("p.jpg", painting.read_bytes())})
    with page_with(url, painting) as (page, wait):
        assert page.find_element(By.ID, "top-style").text == expected.json()["top_k"][0]["style"]
        # a model without an era head: no period in the answer, none on the page
        assert "period" not in expected.json()
        assert not page.find_element(By.ID, "period-line").is_displayed()
        wait.until(lambda p: len(p.find_elements(By.CSS_SELECTOR, "#similar img")) > 0)
        thumbnails = page.find_elements(By.CSS_SELECTOR, "#similar img")
        wait.until(
            lambda p: all(
                p.execute_script("return arguments[0].naturalWidth", t) > 0 for t in thumbnails
            )
        )
        assert all(t.get_attribute("alt").startswith("A painting by") for t in thumbnails)
        page.find_element(By.ID, "show-overlay").click()  # the Grad-CAM overlay, toggled on
        wait.until(lambda p: p.find_element(By.ID, "overlay").is_displayed())
        default = PROJECT_ROOT / ".pytest_cache" / "gallery_page.png"
        screenshot = pathlib.Path(os.environ.get("ARTJAX_SCREENSHOT", default))
        screenshot.parent.mkdir(exist_ok=True)
        page.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
