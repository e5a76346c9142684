"""Class sets, artist-disjoint splits, cross-validation, bagging and the unseen-artist report."""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn import metrics as skm

from artjax import checkpointing, crossval, evaluation, hooks, train_state, trainer
from artjax.data import catalog, splits
from artjax.data import input_pipeline as ip
from tests.conftest import (
    PROJECT_ROOT,
    frozen_resnet_config,
    make_config,
    run_command,
)

STUDY_TEST_FILES = PROJECT_ROOT / "tests" / "data" / "study_test_files.txt"


def tiny_config(root, prepared, **data_overrides):
    config = make_config(root, prepared, **data_overrides)
    config.data.image_size = 48  # the CNN's four conv+pool stages need at least 46
    config.num_epochs = 2
    config.log_every_steps = 2
    config.model.dropout_rate = 0.0
    config.data.augment_enabled = False
    return config


def _artists(data, split):
    return {r.artist for r in data.rows if r.filename in data.members[split]}


# --- the real paintings ---------------------------------------------------------------------------


@pytest.mark.xdist_group("real_data")  # one worker prepares the real paintings
def test_the_study_test_split_is_the_same_230_files(real_builder, real_data_root):
    config = make_config(real_data_root, real_builder.data_dir_root)
    data = ip.prepare_data(config.data, 0)
    expected = STUDY_TEST_FILES.read_text().split()
    assert len(expected) == 230
    assert sorted(data.members["test"]) == expected


@pytest.mark.xdist_group("real_data")  # one worker prepares the real paintings
def test_real_artist_folds_hold_out_whole_artists(real_builder, real_data_root):
    config = make_config(real_data_root, real_builder.data_dir_root, classes="all")
    config.data.cv.by, config.data.cv.folds = "artist", 5
    data = ip.prepare_data(config.data, 0)
    artist_classes = {r.artist: data.classes_of(r) for r in data.rows}
    candidates = splits.heldout_candidates(artist_classes)
    held_everywhere = []
    for fold in range(data.fold_count):
        config.data.cv.fold = fold
        data = ip.prepare_data(config.data, 0)
        training = _artists(data, "train") | _artists(data, "val")
        assert not training & _artists(data, "test"), fold  # no artist on both sides
        assert _artists(data, "test") == set(data.heldout_artists)
        held_styles = [artist_classes[a][0] for a in data.heldout_artists]
        assert len(held_styles) == len(set(held_styles))  # one artist per style per fold (5 folds)
        assert all(c > 0 for c in data.counts["train"])  # no class without training images
        held_everywhere += list(data.heldout_artists)
    assert sorted(held_everywhere) == candidates  # every holdable artist is held out once
    assert set(data.single_artist_classes) == {
        c for c in data.classes if sum(cs == (c,) for cs in artist_classes.values()) == 1
    }


# --- class sets and splits (synthetic) ------------------------------------------------------------


def _add_artist(root, name, genre, images=6):
    """A new artist of the download: its CSV row and paintings unlike any other (random noise, so
    no near-duplicate joins them to another artist's group)."""
    csv = pd.read_csv(root / "artists.csv")
    csv.loc[len(csv)] = {**csv.iloc[0].to_dict(), "name": name, "genre": genre, "paintings": images}
    csv.to_csv(root / "artists.csv", index=False)
    folder = root / "images" / name.replace(" ", "_")
    folder.mkdir()
    rng = np.random.default_rng(len(name))
    for i in range(images):
        pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{folder.name}_{i + 1}.jpg")


def test_a_grown_download_keeps_a_class_sets_splits(synthetic_root, tmp_path):
    grown = tmp_path / "grown"
    shutil.copytree(synthetic_root, grown)
    _add_artist(grown, "New Baroque Painter", "Baroque")
    before = ip.prepare_data(make_config(synthetic_root, tmp_path / "p1").data, 3)
    after = ip.prepare_data(make_config(grown, tmp_path / "p2").data, 3)
    assert after.members == before.members  # train, val and test: the same files
    everything = ip.prepare_data(make_config(grown, tmp_path / "p2", classes="all").data, 3)
    assert "Baroque" in everything.classes


def test_all_with_a_minimum_image_count_and_its_table(synthetic_root, tmp_path, caplog):
    grown = tmp_path / "grown"
    shutil.copytree(synthetic_root, grown)
    _add_artist(grown, "New Baroque Painter", "Baroque", images=3)
    config = make_config(grown, tmp_path / "p", classes="all", min_class_images=5)
    with caplog.at_level(logging.WARNING):
        data = ip.prepare_data(config.data, 0)
    assert "Baroque" not in data.classes and "Baroque" in caplog.text
    from artjax.data import exploration

    table = exploration.class_table(data).splitlines()
    assert table[1].split()[:2] == ["Abstract", "Expressionism"]
    assert "2: Synthetic" in table[1] and table[1].split()[2] == "16"  # 2 artists x 8 images


def test_genres_targets_are_multi_hot_from_artists_csv(synthetic_root, tmp_path):
    data = ip.prepare_data(make_config(synthetic_root, tmp_path / "p", classes="genres").data, 0)
    assert data.multi_label
    listed = catalog.read_catalog(synthetic_root, include_multi_genre=True).artist_genres
    artist_of = {r.filename: r.artist for r in data.rows}
    seen_multi = False
    for split in ip.SPLITS:
        for ex in ip.split_dataset(data, split).as_numpy_iterator():
            genres = listed[artist_of[ex["filename"].decode()]]
            expected = [float(c in genres) for c in data.classes]
            np.testing.assert_array_equal(ex["label"], expected)
            seen_multi |= len(genres) > 1
    assert seen_multi  # the multi-genre artist is in the set


def test_split_by_artist_holds_whole_artists_out_of_training(synthetic_root, tmp_path):
    data = ip.prepare_data(make_config(synthetic_root, tmp_path / "p", split_by="artist").data, 0)
    assert _artists(data, "val") and not _artists(data, "val") & _artists(data, "train")
    assert all(n > 0 for n in data.counts["train"])


def test_bad_folds_are_clear_errors(synthetic_root, tmp_path):
    config = make_config(synthetic_root, tmp_path / "p")
    config.data.cv.by, config.data.cv.folds = "artist", 13
    with pytest.raises(splits.SplitError, match=r"13 artist folds: need 2 to 12"):
        ip.prepare_data(config.data, 0)
    artist_classes = {"a": ("X",), "b": ("X",), "c": ("Y",), "d": ("Y",), "e": ("X", "Y")}
    sizes = dict.fromkeys(artist_classes, 1)
    with pytest.raises(splits.SplitError, match=r"fold \d holds out every artist of"):
        # every pair of artists shares a class: the third artist empties one in either fold
        triangle = {"a": ("X", "Y"), "b": ("X", "Z"), "c": ("Y", "Z")}
        splits.artist_folds(triangle, dict.fromkeys(triangle, 1), 2, 0)
    folds = splits.artist_folds(artist_classes, sizes, 2, 0)
    assert sorted(sum(folds, [])) == sorted(artist_classes)


# --- cross-validation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cv_run(synthetic_root, tmp_path_factory):
    """One artist-disjoint CV (2 folds) of the tiny CNN, run uninterrupted."""
    root = tmp_path_factory.mktemp("cv")
    config = tiny_config(synthetic_root, root / "prepared")
    report = crossval.run_cv(config, root / "cv", 2, "artist")
    return config, root, report


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_cv_report_pooled_metrics_equal_sklearns(cv_run):
    config, root, report = cv_run
    pooled = [crossval.load_heldout(d)[0] for d in checkpointing.fold_workdirs(root / "cv")]
    labels = np.concatenate([p.labels for p in pooled])
    predicted = np.concatenate([p.probabilities.argmax(-1) for p in pooled])
    assert report["images"] == len(labels) == 12 * 8  # every artist held out once, all images
    assert report["pooled"]["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert report["pooled"]["confusion_matrix"] == skm.confusion_matrix(labels, predicted).tolist()
    f1 = skm.f1_score(labels, predicted, average=None)
    for i, c in enumerate(pooled[0].classes):
        assert report["pooled"]["per_class"][c]["f1"] == pytest.approx(f1[i])
    artists = np.concatenate([p.artists for p in pooled])
    for artist, found in report["pooled"]["artists"]["per_artist"].items():
        mine = predicted[artists == artist]
        expected_class = pooled[0].classes.index(found["listed_genres"][0])
        assert found["share_listed"] == pytest.approx(np.mean(mine == expected_class))
    assert (root / "cv" / "cv_report.md").read_text().startswith("# Cross-validation by artist")
    # Near misses: the top-1 is a neighbour in time of the listed style (catalog.time_neighbours)
    near = report["near_miss"]
    for artist, found in report["pooled"]["artists"]["per_artist"].items():
        style = found["listed_genres"][0]
        neighbours = [pooled[0].classes.index(c) for c in near["neighbours"][style]]
        mine = predicted[artists == artist]
        assert near["per_artist"][artist] == pytest.approx(np.mean(np.isin(mine, neighbours)))
    assert near["macro_near_miss"] == pytest.approx(np.mean(list(near["per_artist"].values())))


def test_near_misses_count_the_neighbours_of_listed_genres_only():
    neighbours = {"X": ("Y",), "Y": ("X", "Z"), "Z": ("Y",)}
    found = evaluation.near_miss_shares(
        ["a", "a", "b", "b", "c"],
        ["Y", "Z", "X", "Y", "X"],  # b's "Y" is listed: a hit, not a near miss
        {"a": ("X",), "b": ("Y", "W"), "c": ("W",)},  # c: no listed genre among the classes
        ["X", "Y", "Z"],
        neighbours,
    )
    assert found["per_artist"] == {"a": 0.5, "b": 0.5}
    assert found["macro_near_miss"] == 0.5 and found["overall_near_miss"] == 0.5


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_the_cv_fits_a_temperature_for_unseen_artists_and_a_run_can_take_it(cv_run, tmp_path):
    from artjax import calibration

    _, root, report = cv_run
    pooled = [crossval.load_heldout(d)[0] for d in checkpointing.fold_workdirs(root / "cv")]
    labels = np.concatenate([p.labels for p in pooled])
    temperatures, crossed = calibration.cross_fitted(
        [(p.probabilities, p.labels) for p in pooled], False
    )
    held = report["heldout_calibration"]
    assert held["cross_fitted_temperatures"] == pytest.approx(temperatures)
    assert held["ece_cross_fitted"] == pytest.approx(
        calibration.expected_calibration_error(np.concatenate(crossed), labels, False)
    )
    raw = np.concatenate([p.probabilities for p in pooled])
    saved = json.loads((root / "cv" / calibration.UNSEEN_ARTISTS_FILE).read_text())
    assert saved["classes"] == pooled[0].classes
    assert saved["temperature"] == pytest.approx(calibration.fit_temperature(raw, labels, False))
    # A run calibrated `from_cv` takes the CV's temperature and threshold.
    run = tmp_path / "run"
    shutil.copytree(root / "cv" / "fold_0", run)
    record = json.loads((run / "run.json").read_text())
    record["config"]["calibration"]["from_cv"] = str(root / "cv")
    (run / "run.json").write_text(json.dumps(record))
    fitted = evaluation.calibrate(run)
    assert fitted["temperature"] == saved["temperature"]
    assert fitted["uncertain_below"] == saved["uncertain_below"]
    assert json.loads((run / "calibration.json").read_text())["from_cv"] == str(root / "cv")
    saved["classes"] = saved["classes"][::-1]
    (tmp_path / calibration.UNSEEN_ARTISTS_FILE).write_text(json.dumps(saved))
    with pytest.raises(calibration.CalibrationError, match=calibration.UNSEEN_ARTISTS_FILE):
        calibration.load_unseen_artists(tmp_path, pooled[0].classes)
    with pytest.raises(FileNotFoundError, match="artjax.cv --by artist"):
        calibration.load_unseen_artists(run, pooled[0].classes)


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_a_cv_workdir_explains_with_the_mean_of_its_fold_models_maps(cv_run):
    from artjax.serving import attribution

    _, root, _ = cv_run
    images = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 3)).astype(np.float32)
    targets = np.array([0, 3, 5])
    bag = attribution.Explainer(root / "cv", batch_size=2).maps(images, targets)
    folds = [
        attribution.Explainer(d, batch_size=2).maps(images, targets)
        for d in checkpointing.fold_workdirs(root / "cv")
    ]
    np.testing.assert_allclose(bag, np.mean(folds, axis=0), atol=1e-6)
    assert not np.allclose(folds[0], folds[1])  # two models, two views of the paintings


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_a_cv_killed_and_rerun_equals_the_uninterrupted_cv(cv_run, tmp_path):
    config, root, report = cv_run

    class Kill(hooks.Hook):  # as a kill would, after the second fold's first checkpoint
        def end_epoch(self, epoch, step, state, summary):
            if (tmp_path / "cv" / "fold_1").exists() and epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crossval.run_cv(config, tmp_path / "cv", 2, "artist", extra_hooks=[Kill()])
    assert (tmp_path / "cv" / "fold_0" / crossval.HELDOUT_JSON).is_file()  # the finished fold
    assert not (tmp_path / "cv" / "fold_1" / crossval.HELDOUT_JSON).exists()
    resumed = crossval.run_cv(config, tmp_path / "cv", 2, "artist")
    for a, b in zip(report["folds"], resumed["folds"]):
        for key, value in a.items():
            assert b[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    for fold in ("fold_0", "fold_1"):
        mine = crossval.load_heldout(root / "cv" / fold)[0]
        theirs = crossval.load_heldout(tmp_path / "cv" / fold)[0]
        np.testing.assert_allclose(mine.probabilities, theirs.probabilities, rtol=1e-5, atol=1e-6)
    with pytest.raises(checkpointing.CheckpointMismatchError, match="another cross-validation"):
        crossval.run_cv(config, tmp_path / "cv", 3, "artist")


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_a_bag_of_cvs_averages_their_heldout_probabilities_fold_by_fold(cv_run, tmp_path):
    _, root, report = cv_run
    # Another recipe's CV of the same folds: its held-out probabilities in reversed class order.
    other = tmp_path / "other"
    shutil.copytree(root / "cv", other, ignore=shutil.ignore_patterns("checkpoints"))
    for fold_dir in checkpointing.fold_workdirs(other):
        with np.load(fold_dir / crossval.HELDOUT_NPZ) as f:
            stored = dict(f)
        stored["probabilities"] = stored["probabilities"][:, ::-1]
        stored["calibrated"] = stored["calibrated"][:, ::-1]
        np.savez(fold_dir / crossval.HELDOUT_NPZ, **stored)
    bag = crossval.bag_cvs(tmp_path / "bag", [root / "cv", other])
    mine = [crossval.load_heldout(d)[0] for d in checkpointing.fold_workdirs(root / "cv")]
    labels = np.concatenate([p.labels for p in mine])
    mean = np.concatenate([(p.probabilities + p.probabilities[:, ::-1]) / 2 for p in mine])
    assert bag["pooled"]["accuracy"] == pytest.approx(skm.accuracy_score(labels, mean.argmax(-1)))
    assert bag["pooled"]["accuracy"] != report["pooled"]["accuracy"]
    folds = checkpointing.fold_workdirs(tmp_path / "bag")  # evaluate and predict use them all
    assert [d.resolve() for d in folds] == [
        d.resolve() for cv in (root / "cv", other) for d in checkpointing.fold_workdirs(cv)
    ]
    # a bag of a CV with itself is that CV
    assert crossval.bag_cvs(tmp_path / "same", [root / "cv"] * 2)["pooled"] == report["pooled"]
    # other paintings in a fold: an error naming the CV, from the command too
    stored["filenames"] = stored["filenames"][::-1]
    np.savez(fold_dir / crossval.HELDOUT_NPZ, **stored)
    found = run_command(
        ["artjax.cv", "--workdir", tmp_path / "mixed", "--bag_of", f"{root / 'cv'},{other}"]
    )
    assert found.returncode == 1
    assert f"error: {other}" in found.stderr and "holds other paintings" in found.stderr
    assert not (tmp_path / "mixed").exists()


def test_a_bag_of_identical_models_equals_the_model(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path / "prepared", **{"classes": "Cubism,Pop Art"})
    config.num_epochs = 1
    trainer.train_and_evaluate(config, tmp_path / "single")
    single = evaluation.evaluate(tmp_path / "single", "test")
    bag = tmp_path / "bag"
    for k in range(3):
        shutil.copytree(tmp_path / "single", bag / f"fold_{k}")
    names = [f"fold_{k}" for k in range(3)]
    (bag / checkpointing.CV_FILE).write_text(json.dumps({"fold_workdirs": names}))
    bagged = evaluation.evaluate(bag, "test")
    assert bagged["models"] == 3 and bagged["images"] == single["images"]
    mine = pd.read_csv(tmp_path / "single" / "eval_test" / "predictions.csv")
    theirs = pd.read_csv(bag / "eval_test" / "predictions.csv")
    probabilities = [c for c in mine.columns if c.startswith("p_")]
    np.testing.assert_allclose(theirs[probabilities], mine[probabilities], rtol=1e-6, atol=1e-7)
    assert bagged["accuracy"] == single["accuracy"]


@pytest.mark.xdist_group("cv_run")  # one worker builds the fixture
def test_the_unseen_artist_report_on_a_held_out_artist(cv_run, synthetic_root, tmp_path):
    config, root, _ = cv_run
    fold_dir = root / "cv" / "fold_0"
    held = json.loads((fold_dir / crossval.HELDOUT_JSON).read_text())["heldout_artists"][0]
    folder = tmp_path / "unseen"
    (folder / "images").mkdir(parents=True)
    shutil.copy(synthetic_root / "artists.csv", folder / "artists.csv")
    shutil.copytree(
        synthetic_root / "images" / held.replace(" ", "_"),
        folder / "images" / held.replace(" ", "_"),
    )
    stranger = folder / "images" / "Not_In_The_Csv"
    stranger.mkdir()
    shutil.copy(
        next((folder / "images" / held.replace(" ", "_")).iterdir()),
        stranger / "Not_In_The_Csv_1.jpg",
    )
    report = evaluation.evaluate_images(fold_dir, folder)
    assert list(report["per_artist"]) == [held]  # the stranger is listed, not scored
    assert [f.split("/")[-1] for f in report["files_without_artist_row"]] == [
        "Not_In_The_Csv_1.jpg"
    ]
    from artjax.serving.inference import Predictor

    files = sorted(str(p) for p in (folder / "images" / held.replace(" ", "_")).iterdir())
    probabilities, readable, _ = Predictor(fold_dir).predict_files(files)
    classes = json.loads((fold_dir / "run.json").read_text())["classes"]
    genre = catalog.read_catalog(folder).artist_genres[held][0]
    share = np.mean(probabilities.argmax(-1) == classes.index(genre))
    assert report["per_artist"][held]["share_listed"] == pytest.approx(share)
    assert report["per_artist"][held]["images"] == len(files) == 8
    assert report["macro_share_listed"] == pytest.approx(share)
    assert (fold_dir / "eval_images_unseen" / "artists.png").stat().st_size > 1000
    empty = tmp_path / "no_csv"
    empty.mkdir()
    with pytest.raises(catalog.DataError, match="no_csv: no artists.csv"):
        evaluation.evaluate_images(fold_dir, empty)


def test_frozen_backbone_folds_share_one_feature_cache(synthetic_root, tmp_path, monkeypatch):
    config = frozen_resnet_config(synthetic_root, tmp_path)
    from artjax.data import feature_batches

    saved = []
    save = feature_batches.save_cache
    monkeypatch.setattr(feature_batches, "save_cache", lambda *a: saved.append(1) or save(*a))
    crossval.run_cv(config, tmp_path / "cv", 2, "artist")
    assert saved == [1]  # the backbone ran once for both folds
    cache = np.load(tmp_path / "cv" / "feature_cache" / feature_batches.CACHE_FEATURES)
    assert len(cache["filename"]) == 12 * 8  # every image of the class set
    # The held-out predictions through the cache equal the full model's on decoded images.
    fold = tmp_path / "cv" / "fold_0"
    cached, _ = crossval.load_heldout(fold)
    fold_config, run, state, _ = train_state.load_run(fold, "best")
    data = ip.prepare_data(fold_config.data, fold_config.seed)
    on_images = evaluation.model_predictions(fold_config, run, state, data, "test")
    assert sorted(on_images.filenames) == sorted(cached.filenames)
    order = lambda p: np.argsort(p.filenames)
    np.testing.assert_allclose(
        on_images.probabilities[order(on_images)],
        cached.probabilities[order(cached)],
        rtol=1e-4,
        atol=1e-5,
    )
