"""TFDS preparation, duplicate groups, leak-free splits and bad files."""

import logging
import pathlib

import pytest
from PIL import Image

from artjax.data import best_artworks, catalog, synthetic
from artjax.data import input_pipeline as ip
from tests.conftest import make_config


def _split_rows(builder, split):
    return ip.split_metadata(builder, split)


@pytest.mark.xdist_group("real_data")  # one worker prepares the real paintings
def test_real_splits_are_disjoint_and_keep_duplicate_groups_together(real_builder):
    all_test = _split_rows(real_builder, best_artworks.TEST_SPLIT)
    all_trainval = _split_rows(real_builder, best_artworks.TRAINVAL_SPLIT)
    assert not {r.filename for r in all_test} & {r.filename for r in all_trainval}
    assert not {r.group for r in all_test} & {r.group for r in all_trainval}
    # The download holds more styles than the study's; its class set is the study's 2,306 images.
    test = [r for r in all_test if r.style in catalog.STUDY_STYLES]
    trainval = [r for r in all_trainval if r.style in catalog.STUDY_STYLES]
    assert len(test) + len(trainval) == 2306
    assert len(test) == 230
    assert not {r.filename for r in test} & {r.filename for r in trainval}
    assert not {r.group for r in test} & {r.group for r in trainval}
    # stratified: every style is about 10% in test
    for style in catalog.STUDY_STYLES:
        n_test = sum(r.style == style for r in test)
        n_all = n_test + sum(r.style == style for r in trainval)
        assert abs(n_test - 0.1 * n_all) <= max(2, 0.03 * n_all), style
    # known duplicate scans share a group
    group = {r.filename.split("/")[-1]: r.group for r in test + trainval}
    assert group["Edgar_Degas_516.jpg"] == group["Edgar_Degas_97.jpg"]
    assert group["Pablo_Picasso_256.jpg"] == group["Pablo_Picasso_296.jpg"]
    assert real_builder.info.metadata["duplicate_groups"] > 50


# The fixed test split of today's download (38 artists), as this code prepared it on 2026-12-01:
# every run and machine must prepare the same one.
TEST_FILES = pathlib.Path(__file__).with_name("data") / "test_files.txt"


@pytest.mark.xdist_group("real_data")  # one worker prepares the real paintings
def test_real_test_split_is_fixed_and_val_follows_seed(real_builder, real_data_root):
    found = sorted(r.filename for r in _split_rows(real_builder, "test"))
    assert found == TEST_FILES.read_text().split()
    config = make_config(real_data_root, real_builder.data_dir_root)
    runs = {seed: ip.prepare_data(config.data, seed) for seed in (0, 1)}
    assert runs[0].counts["test"] == runs[1].counts["test"]
    assert runs[0].val_files != runs[1].val_files
    assert ip.prepare_data(config.data, 0).val_files == runs[0].val_files
    # Another class set keeps the same test images of the classes it shares.
    config.data.classes = "Cubism,Pop Art"
    small = ip.prepare_data(config.data, 0)
    assert small.counts["test"] == [runs[0].counts["test"][1], runs[0].counts["test"][3]]
    trainval_groups = {r.filename: r.group for r in _split_rows(real_builder, "trainval")}
    val_groups = {trainval_groups[f] for f in runs[0].val_files}
    train_groups = {g for f, g in trainval_groups.items() if f not in runs[0].val_files}
    assert not val_groups & train_groups


def test_bad_files_are_skipped_with_one_warning(synthetic_root, tmp_path, caplog):
    import shutil

    root = tmp_path / "dl"
    shutil.copytree(synthetic_root, root)
    folder = root / "images" / "Synthetic_Cubism_Painter_1"
    (folder / "Synthetic_Cubism_Painter_1_90.jpg").write_bytes(b"")
    good = (folder / "Synthetic_Cubism_Painter_1_1.jpg").read_bytes()
    (folder / "Synthetic_Cubism_Painter_1_91.jpg").write_bytes(good[: len(good) // 2])
    (folder / "Synthetic_Cubism_Painter_1_92.jpg").write_text("<html>not a jpeg</html>")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "Synthetic_Cubism_Painter_1_93.jpg")
    with caplog.at_level(logging.WARNING):
        builder = best_artworks.prepare(root, tmp_path / "prepared")
    unreadable = builder.info.metadata["unreadable_files"]
    assert sorted(u.split(":")[0].rsplit("_", 1)[-1] for u in unreadable) == [
        "90.jpg",
        "91.jpg",
        "92.jpg",
    ]
    assert "3 unreadable image(s) skipped" in caplog.text
    rows = _split_rows(builder, "trainval") + _split_rows(builder, "test")
    names = {r.filename for r in rows}
    assert "Synthetic_Cubism_Painter_1/Synthetic_Cubism_Painter_1_93.jpg" in names  # CMYK is fine
    # Multi-genre artists are prepared with their genres and no single style (the study's class
    # sets leave them out; the multi-label `genres` set uses them).
    multi = [r for r in rows if r.filename.startswith("Synthetic_Multi")]
    assert multi and all(r.style == "" and len(r.genres) == 2 for r in multi)


def test_empty_class_is_skipped_with_warning(synthetic_root, tmp_path, caplog):
    config = make_config(synthetic_root, tmp_path / "prepared", classes="Cubism,Pop Art,Baroque")
    with caplog.at_level(logging.WARNING):
        data = ip.prepare_data(config.data, 0)
    assert data.classes == ("Cubism", "Pop Art")
    assert "Baroque" in caplog.text


def test_embedded_default_is_synthetic_and_says_so(tmp_path, caplog):
    config = make_config("", tmp_path / "prepared", synthetic_dir=str(tmp_path / "syn"))
    with caplog.at_level(logging.WARNING):
        root, is_synthetic = ip.resolve_root(config.data)
    assert is_synthetic and synthetic.is_synthetic(root)
    assert "SYNTHETIC" in caplog.text
    assert len(catalog.read_catalog(root).images) == 6 * 2 * 20
