"""A trained run (or a CV workdir's bag of fold models) for applications:

  python -m artjax.export --workdir checkpoints/<run> [--checkpoint best] \
      --format savedmodel|tflite --output DIR [--index DATA_ROOT]

DIR gets the model with its preprocessing and views inside, and export.json (classes, signatures,
input contract, source workdir and steps, convolutions per platform, versions). With --index, also
the collection index of a Kaggle-layout folder (`artjax.serving.collection`). Signatures:
`artjax.serving.exported`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags

from artjax import cli
from artjax.serving import collection, exported


def main(argv):
    args = cli.start(argv)
    with cli.reported_errors():
        record = exported.export(args.workdir, args.output, args.format, args.checkpoint)
        source = record["source"]
        print(
            f"{record['format']} of {source['workdir']} (steps {source['steps']}, "
            f"{len(record['classes'])} classes) written to {args.output}"
        )
        for name, signature in record["signatures"].items():
            print(f"  {name}: {signature['inputs']} -> {signature['outputs']}")
        if args.index:
            index = collection.build(args.workdir, args.index, args.output, args.checkpoint)
            print(f"index of {len(index)} paintings of {args.index} written to {index.path}")


if __name__ == "__main__":
    cli.define_checkpoint_flags()
    flags.DEFINE_enum("format", "savedmodel", list(exported.FORMATS), "Export format.")
    flags.DEFINE_string("output", None, "Folder to write the exported model and export.json to.")
    flags.DEFINE_string(
        "index", None, "A Kaggle-layout folder (artists.csv + images/) to index beside the model."
    )
    flags.mark_flags_as_required(["output"])
    app.run(main)
