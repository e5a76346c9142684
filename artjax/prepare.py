"""Prepared data: `python -m artjax.prepare --config experiments/<exp>.py [--config.data.root=...]`
prepares the config's download (as the first run would) and lists every prepared copy under
data.prepared_dir with its size and whether it still matches its download; `--clean` removes those
that match no download's current content (older builder versions, changed or deleted downloads,
interrupted preparations) and reports the space freed.

WikiArt (README, "WikiArt"): `--beam_pipeline_options=runner=...,...` writes the examples with
Apache Beam (the decoding pass stays on this machine's cores); `--tfds_build` prints the equivalent
`tfds build` command, to run where the Beam cluster is reachable.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags
from ml_collections import config_flags

from artjax import cli, configs
from artjax.data import best_artworks
from artjax.data import input_pipeline as ip
from artjax.data.wikiart import builder as wikiart_builder
from artjax.data.wikiart import layouts


def prepare_with_beam(data_config, options: str, print_only: bool) -> None:
    """Prepares a WikiArt download with Beam (`options`: tfds build's --beam_pipeline_options),
    or prints the `tfds build` command that would."""
    root, _ = ip.resolve_root(data_config)
    layout = layouts.detect(root, data_config.source)
    if layout == "best_artworks":
        raise ValueError(f"{root}: Best Artworks prepares on one machine; Beam is for WikiArt")
    settings = dict(
        test_fraction=data_config.test_fraction,
        max_hamming=data_config.max_hamming,
        min_correlation=data_config.min_correlation,
    )
    if print_only:
        config = wikiart_builder.make_config(root, layout, **settings)
        print(wikiart_builder.tfds_build_command(config, root, data_config.prepared_dir, options))
        return
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise ValueError(
            "--beam_pipeline_options needs Apache Beam: pip install apache-beam (and the extras "
            "of its runner, e.g. apache-beam[gcp])"
        ) from None

    beam_options = PipelineOptions([f"--{o}" for o in options.split(",") if o])
    wikiart_builder.prepare(
        root,
        data_config.prepared_dir,
        layout,
        workers=data_config.prepare_workers,
        beam_options=beam_options,
        **settings,
    )


def main(argv):
    config = cli.start(argv).config
    F = flags.FLAGS
    with cli.reported_errors():
        if F.beam_pipeline_options or F.tfds_build:
            prepare_with_beam(config.data, F.beam_pipeline_options, F.tfds_build)
            if F.tfds_build:
                return
        data = ip.prepare_data(config.data, config.seed)
    prepared_dir = config.data.prepared_dir
    roots = [data.root.absolute()]
    copies = best_artworks.prepared_copies(prepared_dir, roots)
    copies += wikiart_builder.prepared_copies(prepared_dir, roots)
    for copy in copies:
        state = f"stale: {copy.stale}" if copy.stale else "current"
        source = copy.source_root or "download not recorded"
        print(f"{copy.size / 1e6:9.1f} MB  {copy.path}  ({source}; {state})")
    if flags.FLAGS.clean:
        removed = best_artworks.clean_prepared(prepared_dir, roots, copies)
        freed = sum(c.size for c in removed) / 1e6
        print(f"removed {len(removed)} stale prepared copies: {freed:.1f} MB freed")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_bool("clean", False, "Remove the prepared copies that match no download.")
    flags.DEFINE_string(
        "beam_pipeline_options",
        "",
        "WikiArt: prepare with Apache Beam, e.g. runner=DirectRunner,direct_num_workers=2 (as "
        "tfds build takes them).",
    )
    flags.DEFINE_bool("tfds_build", False, "WikiArt: print the `tfds build` command and exit.")
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=configs.parse_flags)
