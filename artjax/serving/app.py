"""The gallery service: an ASGI app (FastAPI) over an export of `artjax.export`, with TensorFlow
alone (no JAX or Flax): `python -m artjax.serve --model EXPORT_DIR`.

REST, in TensorFlow Serving's shapes where it has one:
  POST /v1/models/<name>:predict  {"instances": [{"b64": ...}]} -> {"predictions": [...]}
  GET  /v1/models/<name>           version status and metadata (classes, signatures, source run)
  POST /v1/predict                 multipart `file` -> one prediction (the page uses it)
  POST /v1/similar                 multipart `file`, `k` -> the k most similar paintings
  POST /v1/explain                 multipart `file`, `rank`, `output=png|map` -> a Grad-CAM overlay
  GET  /v1/thumbnails/<id>         a painting of the index, by id (no path reaches the filesystem)
  GET  /healthz, /readyz           alive; model loaded and warmed up
  GET  /                           the page (one HTML file, no network needed)
A prediction: the top-k `[{style, probability}]`, `uncertain` (top probability below the
calibrated threshold), the period where the model has one, and the model's version; `:predict`
adds the SavedModel's own outputs (probabilities, classes, top_class). Each upload is a photo: the
painting is found and straightened first (`artjax.finder`, the export's `finder` settings), and
every prediction carries `corners` (four `[x, y]` in the upload's pixels, clockwise from the top
left), `found_painting` (false: no outline, the whole image was judged), `straightened` (the
judged image, a JPEG data URL) and, with the export's gate (`artjax.gate`), `painting` (false: it
does not look like a painting, still HTTP 200) with `painting_distance` and `painting_threshold`.
`/v1/similar` and `/v1/explain` work on the straightened painting.

Limits (`Limits`): the body is counted while it is read (`BodyLimit`, 413), Pillow opens uploads
with the allowed decoders under a pixel limit (`uploads`), and predictions queue for the batcher
(`batching`) up to `max_queue` (then 503 with Retry-After). Errors are JSON {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import dataclasses
import hashlib
import io
import logging
import pathlib
import time
from typing import Annotated, NamedTuple

import ml_collections
import numpy as np
import tensorflow as tf
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from artjax import era, finder, gate
from artjax.serving import batching, collection, records, uploads

PAGE = pathlib.Path(__file__).parent / "static" / "index.html"
log = logging.getLogger("artjax.serve")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20  # request body
    max_pixels: int = 40_000_000  # decoded image (Pillow's decompression-bomb limit)
    formats: tuple = uploads.DEFAULT_FORMATS  # Pillow decoders allowed
    max_batch: int = 16  # images per model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_queue: int = 256  # requests waiting for the model; beyond: 503
    top_k: int = 3
    max_similar: int = 48
    recent_uploads: int = 32  # uploads whose judged painting and embedding are kept (0: none)
    recent_uploads_bytes: int = 256 * 2**20  # and at most this much of their judged images


class RecentUploads:
    """What is known of the last `size` uploads, by their bytes' hash: the judged painting (the
    finder's work) and its embedding. The page sends each upload to /v1/predict and then to
    /v1/explain and /v1/similar, which so find the painting and embed it once between them. The
    oldest are forgotten beyond `size` uploads or `max_bytes` of judged images. Used on the event
    loop only."""

    def __init__(self, size: int, max_bytes: int):
        self.size, self.max_bytes = size, max_bytes
        self._known: collections.OrderedDict[bytes, dict] = collections.OrderedDict()
        self._held = 0  # the bytes of the records kept

    @staticmethod
    def key(encoded: bytes) -> bytes:
        return hashlib.sha256(encoded).digest()

    def get(self, key: bytes) -> dict | None:
        """The record of an upload (now the most recent), or None."""
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
        return known

    def put(self, key: bytes, looked: finder.Looked) -> dict:
        """A record of the upload found as `looked` (kept with a preview-sized painting, all the
        service reads of it)."""
        known = {"looked": looked._replace(painting=np.asarray(preview(looked.painting)))}
        known["bytes"] = len(looked.encoded) + known["looked"].painting.nbytes
        self._forget(key)  # the most recent, if it was known already
        self._known[key] = known
        self._held += known["bytes"]
        while self._known and (len(self._known) > self.size or self._held > self.max_bytes):
            self._forget(next(iter(self._known)))
        return known

    def _forget(self, key: bytes) -> None:
        forgotten = self._known.pop(key, None)
        if forgotten is not None:
            self._held -= forgotten["bytes"]

    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._known)


def preview(painting: np.ndarray) -> Image.Image:
    """The judged painting as the page shows it: at most 320 px a side."""
    found = Image.fromarray(painting)
    found.thumbnail((320, 320))
    return found


class ServiceError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 as soon as its declared
    length or the bytes read so far pass the limit (Starlette and uvicorn set none); the body read
    is handed on to the app unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send, size: str) -> None:
        response = _error(413, f"the request body ({size}) exceeds --max_bytes={self.max_bytes}")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, f"{int(declared):,} bytes declared")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send, f"over {size:,} bytes")
            if not message.get("more_body", False):
                break
        body, handed = b"".join(chunks), False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def batch_sizes(max_batch: int) -> tuple[int, ...]:
    """The batch sizes the model runs at: powers of two below `max_batch`, and `max_batch`.
    The SavedModel's XLA program compiles once per batch size it sees (in the first call at that
    size, seconds), so a batch is padded up to the next of these, as TF Serving's batching pads
    to its `allowed_batch_sizes`: at most twice the work, and no compilation under load."""
    return tuple(sorted({2**i for i in range(max(max_batch, 1).bit_length())} | {max_batch}))


class Served(NamedTuple):
    """What serve_encoded gives for one image."""

    probabilities: np.ndarray  # [C]
    era_year: float | None  # with an era head
    embedding: np.ndarray | None  # [D], the gate's; None from exports before it was an output


class GalleryModel:
    """The export's SavedModel, its record (export.json) and its collection index, if any;
    predictions in batches of at most `max_batch`."""

    def __init__(self, export_dir, max_batch: int = 1):
        self.export_dir = pathlib.Path(export_dir)
        self.batch_sizes = batch_sizes(max_batch)
        self.warm_sizes: tuple[int, ...] = ()  # those compiled by warm_up, which batches use
        self.record = records.read_record(self.export_dir)
        if self.record["format"] != "savedmodel":
            raise ValueError(
                f"{self.export_dir}: a {self.record['format']} export; serve a savedmodel"
            )
        self.classes = list(self.record["classes"])
        self.version = int(self.record.get("version", 1))
        self.uncertain_below = self.record.get("uncertain_below")
        self.saved = tf.saved_model.load(str(self.export_dir))
        self._signatures = self.saved.signatures
        index_path = self.export_dir / collection.INDEX_FILE
        self.index = collection.CollectionIndex.load(index_path) if index_path.is_file() else None
        # beside the graph: the finder's settings (exports from before it: defaults) and the gate
        settings = self.record.get("finder")
        self.finder = ml_collections.ConfigDict(settings) if settings else None
        self.gate = gate.load_if_any(self.export_dir)

    def warm_up(self, sizes=None) -> None:
        """Predictions at each batch size of `sizes` (default: all) not yet warm, and the other
        signatures at the first call: the first call at a size builds TensorFlow's function
        and compiles the XLA program. Batches then use the warm sizes."""
        encoded = tf.io.encode_png(np.full((64, 64, 3), 128, np.uint8)).numpy()
        if not self.warm_sizes:
            self.embedding(encoded)
            self.explained(encoded)
        for size in self.batch_sizes if sizes is None else sizes:
            if size not in self.warm_sizes:
                self._serve([encoded] * size)
                self.warm_sizes = tuple(sorted({*self.warm_sizes, size}))

    def _serve(self, encoded: list[bytes]) -> list[Served]:
        found = self._signatures["serve_encoded"](encoded=tf.constant(encoded))
        probabilities = found["probabilities"].numpy()
        years = found["era_year"].numpy().astype(float).tolist() if "era_year" in found else None
        # exports from before serve_encoded gave the embedding: the gate calls `embed`
        embeddings = found["embedding"].numpy() if "embedding" in found else None
        return [
            Served(
                probabilities[i],
                None if years is None else years[i],
                None if embeddings is None else embeddings[i],
            )
            for i in range(len(encoded))
        ]

    def predictions(self, encoded: list[bytes]) -> list[Served]:
        """The probabilities, era estimate and embedding of each of `encoded`: padded to the
        next warm batch size, in chunks of the largest (all sizes before any is warm)."""
        sizes = self.warm_sizes or self.batch_sizes
        found = []
        for start in range(0, len(encoded), sizes[-1]):
            chunk = encoded[start : start + sizes[-1]]
            size = next(b for b in sizes if b >= len(chunk))
            found += self._serve(chunk + chunk[:1] * (size - len(chunk)))[: len(chunk)]
        return found

    def probabilities(self, encoded: list[bytes]) -> np.ndarray:
        """[len(encoded), C]: the probabilities of `predictions`."""
        return np.stack([served.probabilities for served in self.predictions(encoded)])

    @staticmethod
    def decoded(encoded: bytes):
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)[None]

    def embedding(self, encoded: bytes) -> np.ndarray:
        return self._signatures["embed"](images=self.decoded(encoded))["embedding"].numpy()[0]

    def explained(self, encoded: bytes) -> dict:
        image = self.decoded(encoded)
        found = self._signatures["explain"](images=image)
        return dict(
            image=image.numpy()[0],
            classes=[c.decode() for c in found["classes"].numpy()[0]],
            probabilities=found["probabilities"].numpy()[0].tolist(),
            maps=found["maps"].numpy()[0],
        )

    def describe(self, probabilities: np.ndarray, top_k: int, era_year=None) -> dict:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        top = [{"style": self.classes[i], "probability": float(probabilities[i])} for i in order]
        found = {
            "top_k": top,
            "uncertain": bool(
                self.uncertain_below is not None and top[0]["probability"] < self.uncertain_below
            ),
            "version": self.version,
        }
        if era_year is not None:  # an export with an era head
            found["era_year"] = round(float(era_year), 1)
            found["period"] = era.period_text(era_year, self.record["era"]["span_years"])
        return found

    def looked_at(self, encoded: bytes) -> finder.Looked:
        """The painting to judge in an upload (straightened where an outline is found)."""
        if self.finder is None or not self.finder.enabled:
            image = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
            height, width = image.shape[:2]
            whole = finder.Found(finder.whole_image(width, height), False, "off")
            return finder.Looked(encoded, whole, image)
        return finder.painting_bytes(encoded, self.finder)

    def looks(self, looked: finder.Looked, embedding: np.ndarray | None = None) -> dict:
        """The outline, the judged image and the gate's answer, as a prediction carries them; the
        gate measures `embedding` (the prediction's, from the same pass), or embeds the image."""
        buffer = io.BytesIO()
        preview(looked.painting).save(buffer, "JPEG", quality=85)
        found = {
            "corners": np.round(looked.found.corners, 1).tolist(),
            "found_painting": bool(looked.found.found),
            "straightened": "data:image/jpeg;base64,"
            + base64.b64encode(buffer.getvalue()).decode(),
            "painting": None,
            "painting_distance": None,
            "painting_threshold": None,
        }
        if self.gate is not None:
            if embedding is None:
                embedding = self.embedding(looked.encoded)
            distance = float(self.gate.distances(embedding)[0])
            found.update(
                painting=distance <= self.gate.threshold,
                painting_distance=round(distance, 4),
                painting_threshold=round(self.gate.threshold, 4),
            )
        return found

    def metadata(self) -> dict:
        keys = ("classes", "signatures", "source", "views", "image_size", "calibrated")
        found = {k: self.record.get(k) for k in keys}
        found.update(
            version=self.version,
            uncertain_below=self.uncertain_below,
            index=self.record.get("index"),
            synthetic=self.record.get("synthetic"),
            finder=self.record.get("finder"),
            gate=None if self.gate is None else self.gate.summary(),
        )
        return found


def overlay_png(image: np.ndarray, heat: np.ndarray) -> bytes:
    """The painting with the map over it: clear where the map is 0, yellow to red towards 1."""
    heat = np.clip(heat, 0.0, 1.0)[..., None]
    colour = np.concatenate([np.ones_like(heat), 1 - heat, np.zeros_like(heat)], -1) * 255
    alpha = 0.7 * heat
    blended = image.astype(np.float32) * (1 - alpha) + colour * alpha
    buffer = io.BytesIO()
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def create_app(export_dir, name: str = "artjax", limits: Limits = Limits()) -> FastAPI:
    """The service for the export at `export_dir`, served as model `name`. The model loads (and
    warms up) in a thread at startup: /healthz answers at once, /readyz once it is ready."""
    state: dict = {"model": None, "error": None}
    recent = RecentUploads(limits.recent_uploads, limits.recent_uploads_bytes)

    def load():
        try:
            model = GalleryModel(export_dir, limits.max_batch)
            model.warm_up([1])
            state["model"] = model  # ready: batches run one at a time until larger sizes warm
            started = time.perf_counter()
            model.warm_up()
            log.info(
                "batch sizes %s warm in %.1f s", model.warm_sizes, time.perf_counter() - started
            )
        except Exception as e:  # reported by /readyz, and in the log
            state["error"] = f"{type(e).__name__}: {e}"
            log.error("the model at %s did not load: %s", export_dir, state["error"])

    def run_batch(encoded):
        return state["model"].predictions(list(encoded))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["batcher"] = batching.Batcher(
            run_batch, limits.max_batch, limits.max_wait_ms, limits.max_queue
        )
        worker = asyncio.create_task(state["batcher"].run())
        loader = asyncio.create_task(asyncio.to_thread(load))
        yield
        worker.cancel()
        await loader

    app = FastAPI(
        title="artjax gallery",
        description="The art style of a painting, where the model looked, and similar paintings.",
        lifespan=lifespan,
    )
    app.state.gallery = state
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)

    @app.exception_handler(ServiceError)
    async def service_error(request, e: ServiceError):
        return _error(e.status, str(e), e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, e: RequestValidationError):
        missing = [".".join(str(p) for p in err["loc"][1:]) for err in e.errors()]
        return _error(422, f"missing or invalid field(s): {', '.join(missing) or 'body'}")

    def model() -> GalleryModel:
        if state["model"] is None:
            why = state["error"] or "the model is loading"
            raise ServiceError(503, why, {"Retry-After": "1"})
        return state["model"]

    def checked_name(requested: str) -> None:
        if requested != name:
            raise ServiceError(404, f"model {requested!r} is not served here; this serves {name!r}")

    async def model_input(raw: bytes) -> bytes:
        try:
            encoded = await asyncio.to_thread(
                uploads.model_bytes, raw, limits.max_pixels, limits.formats
            )
        except uploads.UploadError as e:
            log.info("refused an upload of %d bytes: %d", len(raw), e.status)
            raise ServiceError(e.status, str(e)) from None
        log.info("an upload of %d bytes", len(raw))
        return encoded

    def undecodable(e: tf.errors.OpError) -> ServiceError:
        return ServiceError(400, f"TensorFlow could not decode the image ({e.message})")

    async def predicted(encoded: bytes) -> Served:
        try:
            return await state["batcher"].submit(encoded)
        except batching.QueueFull as e:
            raise ServiceError(503, f"the server is busy: {e}", {"Retry-After": "1"}) from None
        except tf.errors.OpError as e:
            raise undecodable(e) from None

    async def in_thread(fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except tf.errors.OpError as e:
            raise undecodable(e) from None

    async def judged(found: GalleryModel, raw: bytes) -> tuple[finder.Looked, dict]:
        """The painting to judge in an upload, and the record of what is known of it (found
        once per upload among the recent ones)."""
        encoded = await model_input(raw)
        key = await asyncio.to_thread(RecentUploads.key, encoded)
        known = recent.get(key)
        if known is None:  # a failed upload is not recorded
            known = recent.put(key, await in_thread(found.looked_at, encoded))
        return known["looked"], known

    def remembered(known: dict, served: Served) -> np.ndarray | None:
        """The upload's embedding: the prediction's (kept for /v1/similar), or one embedded
        before (an export whose serve_encoded gives none)."""
        if served.embedding is not None:
            known["embedding"] = served.embedding
        return known.get("embedding")

    @app.get("/healthz", summary="The process is alive")
    async def healthz():
        return {"status": "alive"}

    @app.get("/readyz", summary="The model is loaded and answers")
    async def readyz():
        found = model()
        return {
            "status": "ready",
            "model": name,
            "version": found.version,
            "warm_batch_sizes": list(found.warm_sizes),  # the rest compile in the background
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text())

    @app.get("/v1/models/{model_name}", summary="Version status and metadata (TF Serving)")
    async def model_status(model_name: str):
        checked_name(model_name)
        found = model()
        return {
            "model_version_status": [
                {
                    "version": str(found.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ],
            "metadata": found.metadata(),
        }

    @app.post("/v1/models/{model_name}:predict", summary="TF Serving's predict, b64 instances")
    async def tf_serving_predict(model_name: str, request: Request):
        checked_name(model_name)
        try:
            body = await request.json()
            instances = body["instances"]
            if not isinstance(instances, list) or not instances:
                raise ValueError
        except Exception:
            raise ServiceError(
                400, 'the body must be JSON {"instances": [{"b64": "..."}, ...]}'
            ) from None
        found = model()
        raws = []
        for i, instance in enumerate(instances):
            value = instance.get("encoded", instance) if isinstance(instance, dict) else None
            try:
                raws.append(base64.b64decode(value["b64"], validate=True))
            except (TypeError, KeyError, binascii.Error):
                raise ServiceError(400, f"instances[{i}] is not {{'b64': base64 bytes}}") from None
        # each instance checked and found in order (the first bad one answers), then one batch
        judged_all = [await judged(found, raw) for raw in raws]
        outputs = await asyncio.gather(*(predicted(one.encoded) for one, _ in judged_all))
        predictions = []
        for (one, known), served in zip(judged_all, outputs):
            described = found.describe(served.probabilities, limits.top_k, served.era_year)
            top_class = described["top_k"][0]["style"]
            tf_outputs = {"probabilities": served.probabilities.tolist(), "classes": found.classes}
            looks = await in_thread(found.looks, one, remembered(known, served))
            predictions.append({**tf_outputs, "top_class": top_class, **described, **looks})
        return {"predictions": predictions}

    @app.post("/v1/predict", summary="The styles of an uploaded painting")
    async def predict(file: Annotated[UploadFile, File(description="a photo of a painting")]):
        found = model()
        looked, known = await judged(found, await file.read())
        served = await predicted(looked.encoded)
        looks = await in_thread(found.looks, looked, remembered(known, served))
        return {**found.describe(served.probabilities, limits.top_k, served.era_year), **looks}

    @app.post("/v1/similar", summary="The most similar paintings of the collection")
    async def similar(file: Annotated[UploadFile, File()], k: Annotated[int, Form(ge=1)] = 8):
        found = model()
        if found.index is None:
            raise ServiceError(404, "this export has no collection index (artjax.export --index)")
        looked, known = await judged(found, await file.read())
        if "embedding" not in known:  # not predicted before: embed it here
            known["embedding"] = await in_thread(found.embedding, looked.encoded)
        neighbours = found.index.nearest(known["embedding"], min(k, limits.max_similar))
        return {
            "similar": [
                {
                    **found.index.describe(i),
                    "similarity": s,
                    "thumbnail": f"/v1/thumbnails/{i}",
                }
                for i, s in neighbours
            ]
        }

    @app.get("/v1/thumbnails/{painting}", summary="A painting of the index, by id")
    async def thumbnail(painting: int):
        found = model()
        if found.index is None:
            raise ServiceError(404, "this export has no collection index")
        try:
            return Response(found.index.thumbnail(painting), media_type="image/jpeg")
        except IndexError as e:
            raise ServiceError(404, str(e)) from None

    @app.post("/v1/explain", summary="Where the model looked: a Grad-CAM overlay or map")
    async def explain(
        file: Annotated[UploadFile, File()],
        rank: Annotated[int, Form(ge=0, description="0: the top style, 1: the next, ...")] = 0,
        output: Annotated[str, Form(pattern="^(png|map)$")] = "png",
    ):
        found = model()
        looked, _ = await judged(found, await file.read())
        explained = await in_thread(found.explained, looked.encoded)
        if rank >= len(explained["classes"]):
            raise ServiceError(400, f"rank {rank}: the export maps {len(explained['classes'])}")
        style, probability = explained["classes"][rank], explained["probabilities"][rank]
        if output == "map":
            return {
                "style": style,
                "probability": probability,
                "map": np.round(explained["maps"][rank], 3).tolist(),
            }
        png = await asyncio.to_thread(overlay_png, explained["image"], explained["maps"][rank])
        headers = {"X-Style": style, "X-Probability": f"{probability:.4f}"}
        return Response(png, media_type="image/png", headers=headers)

    return app
