"""Prepared data: `python -m artjax.prepare --config experiments/<exp>.py [--config.data.root=...]`
prepares the config's download (as the first run would) and lists every prepared copy under
data.prepared_dir with its size and whether it still matches its download; `--clean` removes those
that match no download's current content (older builder versions, changed or deleted downloads,
interrupted preparations) and reports the space freed.
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


def main(argv):
    config = cli.start(argv).config
    with cli.reported_errors():
        data = ip.prepare_data(config.data, config.seed)
    prepared_dir = config.data.prepared_dir
    roots = [data.root.absolute()]
    for copy in best_artworks.prepared_copies(prepared_dir, roots):
        state = f"stale: {copy.stale}" if copy.stale else "current"
        source = copy.source_root or "download not recorded"
        print(f"{copy.size / 1e6:9.1f} MB  {copy.path}  ({source}; {state})")
    if flags.FLAGS.clean:
        removed = best_artworks.clean_prepared(prepared_dir, roots)
        freed = sum(c.size for c in removed) / 1e6
        print(f"removed {len(removed)} stale prepared copies: {freed:.1f} MB freed")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_bool("clean", False, "Remove the prepared copies that match no download.")
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=configs.parse_flags)
