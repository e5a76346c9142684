"""An export folder's record (export.json) and file names: what the exporter writes and a server
reads, with no JAX or TensorFlow import."""

from __future__ import annotations

import json
import pathlib

EXPORT_FILE = "export.json"
TFLITE_FILE = "model.tflite"


def read_record(export_dir) -> dict:
    """export.json of an export folder; a clear error where there is none."""
    path = pathlib.Path(export_dir) / EXPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {export_dir} an artjax.export folder?")
    return json.loads(path.read_text())
