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

from artjax import configs, finder, gate
from artjax.data import photos
from artjax.serving import batching, collection, exported, inference
from tests.conftest import PROJECT_ROOT
from tests.test_export import PARITY_ATOL, real_paintings

# On the worker that builds the finished run it serves (test_export, test_explain: the same group).
pytestmark = pytest.mark.xdist_group("finished_run")

LIMITS = dict(max_bytes=2 * 2**20, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def export_dir(finished_run, synthetic_root, tmp_path_factory):
    """The finished run exported as a SavedModel, with the index of its synthetic collection and
    a gate whose threshold is fitted as a CV fits it, each artist's paintings against the
    others' (the tiny CNN has no CV of its own)."""
    _, run = finished_run
    out = tmp_path_factory.mktemp("served") / "savedmodel"
    exported.export(run, out)
    index = collection.build(run, synthetic_root, out)
    artists = np.array(index.artists)
    folds = [
        (
            a,
            index.embeddings[artists == a],
            [a] * int(np.sum(artists == a)),
            index.embeddings[artists != a],
        )
        for a in sorted(set(index.artists))
    ]
    fitted = gate.fit_cv(folds, k=5, percentile=95.0)
    gate.Gate(index.embeddings, 5, fitted["threshold"], 95.0, "leave-one-artist-out").save(out)
    return out


def not_a_painting() -> bytes:
    """scikit-image's colour wheel, far from every painting of the synthetic collection (the tiny
    CNN's embedding puts most images near them: its gate flags few)."""
    import skimage.data

    return as_bytes(Image.fromarray(skimage.data.colorwheel()), "PNG")


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
        # a clean reproduction passes the finder unchanged: the whole image, judged as it is
        assert found["found_painting"] is False and prediction["found_painting"] is False
        width, height = Image.open(path).size
        assert found["corners"] == finder.whole_image(width, height).tolist()
        # (the tiny model's gate knows synthetic paintings only: real ones may be far from them)
        assert found["painting"] == (found["painting_distance"] <= found["painting_threshold"])
    plain = inference.Predictor(run, find_painting=False).predict_files(paths)[0]
    np.testing.assert_allclose(expected, plain, atol=1e-5)
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
    # one number, the flag's: not Pillow's own limit (twice the flag) beside it
    assert errors["20000 x 20000 png"] == (
        "the image is over --max_pixels=4,000,000 (the image has 400,000,000 pixels)"
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


def test_a_photo_is_straightened_and_a_non_painting_is_an_answer_not_an_error(
    client, finished_run, real_data_root
):
    _, run = finished_run
    painting = np.asarray(Image.open(real_paintings(real_data_root, 2)[1]).convert("RGB"))
    config = configs.base_config()
    config.photos.width, config.photos.height = 800, 600
    photo = photos.photograph(
        painting, np.random.default_rng(0), photos.scene_config(config, "wall")
    )
    found = upload(client, "/v1/predict", as_bytes(Image.fromarray(photo.image), "JPEG")).json()
    assert found["found_painting"] is True
    assert finder.quad_iou(np.array(found["corners"]), photo.corners) > 0.8
    assert found["straightened"].startswith("data:image/jpeg;base64,")
    # the styles are those of the straightened painting, as the Predictor straightens it
    expected = inference.Predictor(run).describe_encoded(
        as_bytes(Image.fromarray(photo.image), "JPEG")
    )
    assert [t["style"] for t in found["top_k"]] == [s for s, _ in expected.ranked]
    np.testing.assert_allclose(found["corners"], expected.corners, atol=0.1)

    # the gate measures the embedding of the prediction's own pass: no second call of `embed`
    gallery = client.app.state.gallery["model"]
    embedded, embedding = [], gallery.embedding
    gallery.embedding = lambda encoded: embedded.append(encoded) or embedding(encoded)
    try:
        answer = upload(client, "/v1/predict", not_a_painting(), content_type="image/png")
    finally:
        del gallery.embedding  # the method again
    assert embedded == []
    looked = gallery.looked_at(not_a_painting())
    distance = float(gallery.gate.distances(gallery.embedding(looked.encoded))[0])
    assert answer.json()["painting_distance"] == pytest.approx(distance, abs=1e-4)
    assert answer.status_code == 200, answer.text
    assert answer.json()["painting"] is False
    assert answer.json()["painting_distance"] > answer.json()["painting_threshold"]
    meta = client.get("/v1/models/gallery").json()["metadata"]
    assert meta["gate"]["threshold"] == pytest.approx(answer.json()["painting_threshold"], abs=1e-4)


def test_predict_then_similar_and_explain_find_and_embed_an_upload_once(client, real_data_root):
    # the page's three calls on one upload: the finder and the embedding run for the first alone
    gallery = client.app.state.gallery["model"]
    painting = np.asarray(Image.open(real_paintings(real_data_root, 3)[2]).convert("RGB"))
    config = configs.base_config()
    config.photos.width, config.photos.height = 640, 480
    photo = photos.photograph(
        painting, np.random.default_rng(11), photos.scene_config(config, "wall")
    )
    upload_bytes = as_bytes(Image.fromarray(photo.image), "JPEG")
    calls = {"looked_at": [], "embedding": []}
    for name, fn in [(name, getattr(gallery, name)) for name in calls]:
        setattr(gallery, name, lambda x, name=name, fn=fn: calls[name].append(1) or fn(x))
    try:
        predicted = upload(client, "/v1/predict", upload_bytes)
        similar = upload(client, "/v1/similar", upload_bytes, k="3")
        explained = upload(client, "/v1/explain", upload_bytes, output="map")
        assert (len(calls["looked_at"]), len(calls["embedding"])) == (1, 0)
        assert {r.status_code for r in (predicted, similar, explained)} == {200}
    finally:
        del gallery.looked_at, gallery.embedding  # the methods again
    # the same answers as finding and embedding the upload afresh
    looked = gallery.looked_at(upload_bytes)
    expected = gallery.index.nearest(gallery.embedding(looked.encoded), 3)
    assert [n["id"] for n in similar.json()["similar"]] == [i for i, _ in expected]
    np.testing.assert_allclose(
        [n["similarity"] for n in similar.json()["similar"]], [v for _, v in expected], atol=1e-4
    )
    assert explained.json()["style"] == gallery.explained(looked.encoded)["classes"][0]
    np.testing.assert_allclose(predicted.json()["corners"], looked.found.corners, atol=0.1)


def test_recent_uploads_forget_the_oldest_beyond_their_count_or_bytes():
    from artjax.serving import app

    def looked(side):  # a judged painting of side x side pixels, and its bytes
        whole = finder.Found(finder.whole_image(side, side), False, "none")
        return finder.Looked(bytes(side), whole, np.zeros((side, side, 3), np.uint8))

    recent = app.RecentUploads(2, max_bytes=2**20)
    first, second, third = (app.RecentUploads.key(b) for b in (b"1", b"2", b"3"))
    recent.put(first, looked(100))
    recent.put(second, looked(100))
    assert recent.get(first)["looked"].encoded == bytes(100)  # now the most recent
    recent.put(third, looked(100))
    assert len(recent) == 2 and recent.get(second) is None  # the oldest is forgotten
    # kept at the preview's size (the service reads no more of it), counted in bytes
    big = recent.put(first, looked(1000))["looked"]
    assert big.painting.shape == (320, 320, 3)
    assert recent.held_bytes() == 1000 + 320 * 320 * 3 + 100 + 100 * 100 * 3
    recent.max_bytes = 350_000
    recent.put(second, looked(100))  # over the bytes: the oldest go until it fits
    assert recent.get(third) is None and recent.get(first) is not None
    assert recent.held_bytes() == 1000 + 320 * 320 * 3 + 100 + 100 * 100 * 3  # those kept
    none = app.RecentUploads(0, max_bytes=2**20)
    assert none.put(first, looked(10))["looked"].encoded == bytes(10)  # answered, not kept
    assert len(none) == 0 and none.get(first) is None and none.held_bytes() == 0


def test_a_bad_instance_among_good_ones_is_a_clear_error(client, real_data_root):
    good = base64.b64encode(real_paintings(real_data_root, 1)[0].read_bytes()).decode()
    bad = base64.b64encode(b"<!doctype html><html>not a painting</html>").decode()
    body = {"instances": [{"b64": good}, {"b64": bad}, {"b64": good}]}
    answer = client.post("/v1/models/gallery:predict", json=body)
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    again = client.post("/v1/models/gallery:predict", json={"instances": [{"b64": good}]})
    assert again.status_code == 200  # the server stays up


def test_an_export_without_the_embedding_output_still_gates_through_embed(export_dir):
    # exports from before serve_encoded gave the embedding: the gate embeds the image itself
    from artjax.serving import app

    model = app.GalleryModel(export_dir)
    looked = model.looked_at(not_a_painting())
    (served,) = model.predictions([looked.encoded])
    serve = model._signatures["serve_encoded"]
    older = lambda **kw: {k: v for k, v in serve(**kw).items() if k != "embedding"}
    model._signatures = {**model._signatures, "serve_encoded": older}
    (old,) = model.predictions([looked.encoded])
    assert old.embedding is None and served.embedding is not None
    np.testing.assert_allclose(old.probabilities, served.probabilities, atol=1e-6)
    assert model.looks(looked, None)["painting_distance"] == pytest.approx(
        model.looks(looked, served.embedding)["painting_distance"], abs=1e-4
    )


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
def page_with(url, painting, shown="top-style"):
    """Headless chromium on the service's page at `url` with `painting` uploaded through its file
    input and its answer shown (the element `shown` has text): (page, wait)."""
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
        wait.until(lambda p: p.find_element(By.ID, shown).text)
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


def test_the_page_outlines_a_photographed_painting_and_says_when_there_is_none(
    page_server, real_data_root, tmp_path
):
    import httpx
    from selenium.webdriver.common.by import By

    url, _ = page_server
    painting = pathlib.Path(
        os.environ.get("ARTJAX_PAGE_PAINTING", real_paintings(real_data_root, 3)[1])
    )
    config = configs.base_config()
    config.photos.width, config.photos.height = 1200, 900
    photo = photos.photograph(
        np.asarray(Image.open(painting).convert("RGB")),
        np.random.default_rng(1),
        photos.scene_config(config, "wall"),
    )
    photo_path = tmp_path / "gallery_photo.jpg"
    Image.fromarray(photo.image).save(photo_path, quality=92)
    expected = httpx.post(
        f"{url}/v1/predict", files={"file": ("p.jpg", photo_path.read_bytes())}
    ).json()
    assert expected["found_painting"] is True
    shots = pathlib.Path(os.environ.get("ARTJAX_SCREENSHOT_DIR", PROJECT_ROOT / ".pytest_cache"))
    shots.mkdir(exist_ok=True)
    with page_with(url, photo_path) as (page, wait):
        outline = page.find_element(By.ID, "outline")
        wait.until(lambda p: outline.is_displayed())
        points = page.find_element(By.ID, "outline-shape").get_attribute("points").split()
        drawn = np.array([[float(v) for v in pair.split(",")] for pair in points])
        np.testing.assert_allclose(drawn, expected["corners"], atol=0.05)
        judged = page.find_element(By.ID, "painting").get_attribute("src")
        assert judged == expected["straightened"]
        assert "found in your photo" in page.find_element(By.ID, "found-line").text
        # the page says what the API says (the tiny model's gate knows synthetic paintings only)
        flagged = expected["painting"] is False
        assert page.find_element(By.ID, "not-painting").is_displayed() == flagged
        assert page.find_element(By.ID, "styles").is_displayed() != flagged
        page.save_screenshot(str(shots / "gallery_photo.png"))

    text_page = tmp_path / "colour_wheel.png"
    text_page.write_bytes(not_a_painting())
    answer = httpx.post(f"{url}/v1/predict", files={"file": ("t.png", text_page.read_bytes())})
    assert answer.json()["painting"] is False
    with page_with(url, text_page, shown="not-painting") as (page, wait):
        assert "doesn't look like a painting" in page.find_element(By.ID, "not-painting").text
        assert not page.find_element(By.ID, "styles").is_displayed()
        assert not page.find_element(By.ID, "overlay-toggle").is_displayed()
        if not answer.json()["found_painting"]:  # the whole image judged: no outline drawn
            assert not page.find_element(By.ID, "outline").is_displayed()
            assert "whole picture was judged" in page.find_element(By.ID, "found-line").text
        page.save_screenshot(str(shots / "gallery_not_a_painting.png"))
