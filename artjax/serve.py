"""The gallery service (artjax.serving.app) on uvicorn:

  python -m artjax.serve --model EXPORT_DIR [--host 127.0.0.1] [--port 8000] [--name artjax]
  python -m artjax.serve --workdir checkpoints/<run>   # exports to a temp folder first (needs JAX)

Serving an export imports TensorFlow alone. Limits, batching and the memory of recent uploads
are flags (--max_bytes, --max_pixels, --formats, --max_batch, --max_wait_ms, --max_queue,
--recent_uploads); README, "For museum and education tools".
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow is imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import tempfile

from absl import app, flags

F = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(F.model) == bool(F.workdir):
        raise app.UsageError("give one of --model EXPORT_DIR or --workdir RUN")
    import tensorflow as tf
    import uvicorn

    from artjax.serving import app as gallery

    tf.config.set_visible_devices([], "GPU")  # a CPU server; TF Serving is the GPU path (README)
    limits = gallery.Limits(
        max_bytes=F.max_bytes,
        max_pixels=F.max_pixels,
        formats=tuple(f.upper() for f in F.formats),
        max_batch=F.max_batch,
        max_wait_ms=F.max_wait_ms,
        max_queue=F.max_queue,
        recent_uploads=F.recent_uploads,
        recent_uploads_bytes=F.recent_uploads_mib * 2**20,
    )
    with tempfile.TemporaryDirectory() as scratch:
        model = F.model
        if F.workdir:  # the convenience path: export first (JAX, in this process)
            from artjax.serving import exported

            model = f"{scratch}/savedmodel"
            exported.export(F.workdir, model, "savedmodel")
        service = gallery.create_app(model, F.name, limits)
        uvicorn.run(service, host=F.host, port=F.port, log_level=F.log_level)


if __name__ == "__main__":
    flags.DEFINE_string("model", None, "An export folder of artjax.export (savedmodel).")
    flags.DEFINE_string("workdir", None, "A trained run to export and serve (convenience).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
    flags.DEFINE_integer("port", 8000, "Port to listen on.")
    flags.DEFINE_string("name", "artjax", "The model's name in /v1/models/<name>.")
    flags.DEFINE_integer("max_bytes", 20 * 2**20, "Largest request body, in bytes (413 above).")
    flags.DEFINE_integer("max_pixels", 40_000_000, "Largest decoded image, in pixels (413 above).")
    flags.DEFINE_list("formats", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"], "Decoders allowed (415).")
    flags.DEFINE_integer("max_batch", 16, "Most images in one model call (1: no batching).")
    flags.DEFINE_float("max_wait_ms", 5.0, "How long a request waits for others to batch with.")
    flags.DEFINE_integer("max_queue", 256, "Requests waiting for the model before 503s.")
    flags.DEFINE_integer(
        "recent_uploads",
        32,
        "Uploads whose found painting and embedding are kept in memory, so that /v1/explain and "
        "/v1/similar of an upload just predicted do not find and embed it again (0: none).",
    )
    flags.DEFINE_integer("recent_uploads_mib", 256, "At most this much of their images, in MiB.")
    flags.DEFINE_string("log_level", "info", "uvicorn's log level.")
    app.run(main)
