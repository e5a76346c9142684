"""A trained run (or a CV workdir's bag of fold models) for applications:

  python -m artjax.export --workdir checkpoints/<run> [--checkpoint best] \
      --format savedmodel|tflite --output DIR

DIR gets the model with its preprocessing inside, and export.json (classes, input contract, source
workdir and step, versions). Signatures and input contracts: `artjax.serving`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags

from artjax import cli, serving


def main(argv):
    args = cli.start(argv)
    with cli.reported_errors():
        record = serving.export(args.workdir, args.output, args.format, args.checkpoint)
    source = record["source"]
    print(
        f"{record['format']} of {source['workdir']} (steps {source['steps']}, "
        f"{len(record['classes'])} classes) written to {args.output}"
    )
    for name, contract in record["input"].items():
        print(f"  {name}: {contract}")


if __name__ == "__main__":
    cli.define_checkpoint_flags()
    flags.DEFINE_enum("format", "savedmodel", list(serving.FORMATS), "Export format.")
    flags.DEFINE_string("output", None, "Folder to write the exported model and export.json to.")
    flags.mark_flags_as_required(["output"])
    app.run(main)
