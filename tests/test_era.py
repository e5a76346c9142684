"""The era head: its target is the rule applied to artists.csv, its loss the distance to the
artist's active period, and a trained head's estimate reaches the CV report, the Predictor,
`artjax.predict`, the export and the gallery service; a model without one is as before."""

import csv
import dataclasses
import json
import re
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

from artjax import configs, crossval, era, gate, models, steps, train_state
from artjax.data import catalog, feature_batches
from artjax.serving import app as gallery
from artjax.serving import exported, inference
from tests import test_serve
from tests.conftest import frozen_resnet_config, head_step, make_config, run_command, tiny_head

pytestmark = pytest.mark.xdist_group("era")


def parsed_periods(csv_path) -> dict:
    """(birth + 20, death) of every row, parsed here without artjax."""
    found = {}
    with open(csv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            birth, death = map(int, re.findall(r"\d{3,4}", row["years"]))
            found[row["name"]] = (min(birth + 20, death), death)
    return found


def test_the_era_target_of_every_real_painting_is_its_artists_period(real_data_root):
    images = catalog.read_catalog(real_data_root, include_multi_genre=True).images
    periods = catalog.read_active_periods(real_data_root / "artists.csv")
    found = era.to_years(era.targets(images["artist"].tolist(), periods))
    reference = parsed_periods(real_data_root / "artists.csv")
    np.testing.assert_allclose(found, [reference[a] for a in images["artist"]], atol=1e-3)
    assert len(set(images["artist"])) == 38  # every artist with paintings, multi-genre included


def test_an_artist_without_years_is_named():
    with pytest.raises(KeyError, match="Nobody"):
        era.targets(["Nobody"], {"Somebody": (1800, 1850)})


def test_era_losses_against_numpy():
    estimate = np.array([0.5, 1.2, 2.5, 1.0], np.float32)
    period = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 1.0]], np.float32)
    outside = np.where(estimate < period[:, 0], period[:, 0] - estimate, 0.0) + np.where(
        estimate > period[:, 1], estimate - period[:, 1], 0.0
    )
    np.testing.assert_allclose(
        steps.ERA_LOSSES["interval"](estimate[:, None], period, None), outside, rtol=1e-6
    )
    assert outside.tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0])
    middle = np.abs(estimate - period.mean(1))
    np.testing.assert_allclose(
        steps.ERA_LOSSES["midpoint"](estimate[:, None], period, None), middle, rtol=1e-6
    )


def test_the_bins_loss_is_the_cross_entropy_against_the_periods_share_of_each_bin():
    edges = era.from_years([1800, 1825, 1850, 1875, 1900])
    periods = era.from_years([[1810, 1860], [1830, 1830]])
    targets = np.asarray(steps.era_bin_targets(periods, edges))
    np.testing.assert_allclose(targets[0], [15 / 50, 25 / 50, 10 / 50, 0], atol=1e-5)
    np.testing.assert_allclose(targets[1], [0, 1, 0, 0], atol=1e-5)  # a period of no length
    logits = np.array([[0.1, 2.0, -1.0, 0.3], [1.0, 0.0, 0.5, -0.5]], np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(targets * log_p).sum(-1)
    found = steps.ERA_LOSSES["bins"](logits, periods, edges)
    np.testing.assert_allclose(found, expected, rtol=1e-5)


def test_a_binned_era_head_estimates_the_expected_centre(tmp_path):
    model, state = tiny_head(
        tmp_path, 3, era_head=True, era_bins=4, era_bin_start=1800.0, era_bin_years=25.0
    )
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (4, 16)))
    variables = {"params": state.params}
    _, outputs = model.apply(variables, features, method="heads")
    _, estimate = model.apply(variables, features, method="classify_with_era")
    p = np.exp(outputs) / np.exp(outputs).sum(-1, keepdims=True)
    centres = [1812.5, 1837.5, 1862.5, 1887.5]
    np.testing.assert_allclose(era.to_years(estimate), p @ centres, rtol=1e-5)


def test_the_era_weighs_on_the_style_at_prediction_and_not_in_training(tmp_path):
    years = (1.0, 1.5, 2.0)  # 1800, 1850, 1900 in era units
    bins = dict(era_head=True, era_bins=4, era_bin_start=1800.0, era_bin_years=25.0)
    model, state = tiny_head(tmp_path, 3, era_style_weight=2.0, style_years=years, **bins)
    plain, _ = tiny_head(tmp_path / "plain", 3, **bins)
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (4, 16)))
    variables = {"params": state.params}
    raw, outputs = model.apply(variables, features, method="heads")
    logits, estimate = model.apply(variables, features, method="classify_with_era")
    expected = np.asarray(raw) - 2.0 * np.abs(np.asarray(estimate)[:, None] - np.array(years))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.apply(variables, features, method="classify"), expected, 1e-5)
    # training's losses see the heads' own outputs; without the weight, prediction does too
    np.testing.assert_allclose(raw, plain.apply(variables, features, method="classify"), 1e-6)
    with pytest.raises(ValueError, match="style_years has 2"):
        tiny_head(tmp_path / "short", 3, era_style_weight=1.0, style_years=(1.0, 2.0), **bins)[
            0
        ].apply(variables, features, method="classify")
    with pytest.raises(ValueError, match="set model.era_head"):
        tiny_head(tmp_path / "no_era", 3, era_style_weight=1.0)


def test_the_styles_places_in_time_come_from_the_training_artists_alone(era_cv, tmp_path):
    from artjax.data import input_pipeline as ip

    cv, _, periods, data_root = era_cv
    run = json.loads((cv / "fold_0" / "run.json").read_text())
    config = crossval.fold_config(configs.from_record(run["config"]), "artist", 2, 0)
    data = ip.prepare_data(config.data, config.seed)
    train = [r for r in data.rows if r.filename in data.members["train"]]
    expected = [
        (
            np.median([np.mean(periods[a]) for a in {r.artist for r in train if c in r.genres}])
            - 1700
        )
        / 100
        for c in data.classes
    ]
    found = ip.training_style_years(data)
    np.testing.assert_allclose(found, expected, atol=1e-6)
    assert run["model"]["style_years"] == pytest.approx(found)  # what prediction rebuilds
    # moving the held-out artists' years moves nothing; moving a training artist's does
    rows = list(csv.reader(open(data_root / "artists.csv", encoding="utf-8")))
    for moved, changes in ((set(data.heldout_artists), False), ({train[0].artist}, True)):
        (tmp_path / "csv").mkdir(exist_ok=True)
        with open(tmp_path / "csv" / "artists.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(
                [r[:2] + ["1000 - 1060"] + r[3:] if r[1] in moved else r for r in rows]
            )
        shifted = ip.training_style_years(dataclasses.replace(data, root=tmp_path / "csv"))
        assert (shifted != found) == changes


def test_era_errors_and_the_period_a_visitor_reads():
    found = era.errors([1850.0, 1905.0, 1960.0], [[1860, 1900]] * 3)
    assert found["mae_to_period"] == pytest.approx((10 + 5 + 60) / 3)
    assert found["mae_to_middle"] == pytest.approx((30 + 25 + 80) / 3)
    assert found["share_within_25"] == pytest.approx(2 / 3)
    assert era.period_text(1884.0, 30) == "about 1870-1900"
    assert era.period_text(1431.0, 30) == "about 1420-1450"


def test_the_train_step_adds_the_weighted_era_loss(tmp_path):
    """One step's loss on features: the style loss plus era_weight times the mean distance to
    the period, as computed here from the initial head."""
    model, state = tiny_head(tmp_path, 3, era_head=True)
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (8, 16)))
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    periods = era.from_years([[1500, 1560], [1800, 1850]] * 4)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, estimate = model.apply(variables, features, method="classify_with_era")
    style = np.mean(np.asarray(steps.example_losses(logits, labels, 0.0)))
    distance = np.maximum(periods[:, 0] - estimate, 0) + np.maximum(estimate - periods[:, 1], 0)
    batch = {"image": features, "label": labels, "era": periods}
    new_state, metrics = head_step(model, state, batch, era_weight=0.5)
    assert float(metrics["loss"][0]) == pytest.approx(style + 0.5 * np.mean(distance), rel=1e-5)
    old, new = state.params["era_head"]["kernel"], new_state.params["era_head"]["kernel"][0]
    assert not np.allclose(old, new)  # the era head trains


@pytest.fixture(scope="module")
def era_cv(synthetic_root, tmp_path_factory):
    """A 2-fold leave-artists-out CV of a frozen tiny ResNet with an era head, on the synthetic
    paintings whose artists.csv gives each style its own century."""
    root = tmp_path_factory.mktemp("era")
    data_root = root / "data"
    shutil.copytree(synthetic_root, data_root)
    rows = list(csv.reader(open(data_root / "artists.csv", encoding="utf-8")))
    styles = sorted({r[3] for r in rows[1:]})
    for r in rows[1:]:
        born = 1400 + 100 * styles.index(r[3])
        r[2] = f"{born} - {born + 60}"
    with open(data_root / "artists.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    config = frozen_resnet_config(data_root, root, epochs=10)
    config.model.era_head = True
    config.model.era_style_weight = 1.0  # every command below predicts with the era's opinion
    config.optimizer.learning_rate = 0.1
    report = crossval.run_cv(config, root / "cv", 2, "artist")
    return root / "cv", report, parsed_periods(data_root / "artists.csv"), data_root


def test_the_cv_reports_the_era_of_held_out_artists(era_cv):
    cv, report, periods, _ = era_cv
    held = [crossval.load_heldout(d)[0] for d in sorted(cv.glob("fold_*"))]
    years = np.concatenate([h.era_years for h in held])
    artists = sum((h.artists for h in held), [])
    expected = era.errors(years, [periods[a] for a in artists])
    assert report["era"]["overall"] == pytest.approx(expected)
    assert set(report["era"]["per_artist"]) == set(artists)
    assert "Era (the era head" in (cv / "cv_report.md").read_text()
    # the head learned the styles' centuries: better than the middle of all periods
    middle = np.mean([np.mean(p) for p in periods.values()])
    constant = era.errors(np.full(len(artists), middle), [periods[a] for a in artists])
    assert expected["mae_to_middle"] < constant["mae_to_middle"]


@pytest.fixture(scope="module")
def era_export(era_cv, tmp_path_factory):
    """The era CV's first fold exported (without a collection index: the page shows the style and
    the period before it asks for similar paintings)."""
    cv, _, _, _ = era_cv
    out = tmp_path_factory.mktemp("era_export") / "savedmodel"
    return out, exported.export(cv / "fold_0", out)


def test_predictor_predict_and_export_give_the_period(era_cv, era_export, synthetic_root):
    cv, _, _, _ = era_cv
    fold = cv / "fold_0"
    predictor = inference.Predictor(fold)
    assert predictor.has_era
    paths = sorted((synthetic_root / "images").rglob("*.jpg"))[::12][:4]
    images = np.stack([predictor.preprocess(p.read_bytes()) for p in paths])
    probabilities, years = predictor.outputs_of(images)
    found = predictor.describe_file(paths[0])
    assert found.era_year == pytest.approx(years[0], abs=1e-3)
    assert found.period == era.period_text(years[0], 30)

    result = run_command(["artjax.predict", f"--workdir={fold}", str(paths[0])], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"period: {found.period}" in result.stdout

    out, record = era_export
    assert record["era"]["span_years"] == 30
    served = tf.saved_model.load(str(out)).signatures["serve_encoded"](
        encoded=tf.constant([p.read_bytes() for p in paths])
    )
    np.testing.assert_allclose(served["era_year"].numpy(), years, atol=1e-2)
    np.testing.assert_allclose(served["probabilities"].numpy(), probabilities, atol=1e-4)
    # the gate's embedding from the same pass: the head's input as Flax's interceptor records it
    (model,) = inference.load_models(fold)
    _, head_input = models.logits_and_head_inputs(model.model, model.variables, images)
    np.testing.assert_allclose(served["embedding"].numpy(), gate.unit(head_input), atol=1e-4)
    assert [s.decode() for s in served["period"].numpy()] == [
        era.period_text(y, 30) for y in served["era_year"].numpy()
    ]

    model = gallery.GalleryModel(out, max_batch=2)
    (one,) = model.predictions([paths[0].read_bytes()])
    year = one.era_year
    described = model.describe(one.probabilities, 3, year)
    assert described["period"] == era.period_text(year, 30)
    assert year == pytest.approx(years[0], abs=1e-2)


def test_the_page_in_a_real_browser_shows_the_period_of_an_era_model(era_cv, era_export):
    import httpx
    from selenium.webdriver.common.by import By

    _, _, _, data_root = era_cv
    out, _ = era_export
    painting = sorted((data_root / "images").rglob("*.jpg"))[0]
    with test_serve.serving(out) as (url, _):
        answer = httpx.post(f"{url}/v1/predict", files={"file": ("p.jpg", painting.read_bytes())})
        assert answer.status_code == 200, answer.text
        expected = answer.json()
        assert re.fullmatch(r"about \d{3,4}-\d{3,4}", expected["period"])
        with test_serve.page_with(url, painting) as (page, _):
            assert page.find_element(By.ID, "top-style").text == expected["top_k"][0]["style"]
            assert page.find_element(By.ID, "period-line").is_displayed()
            assert page.find_element(By.ID, "period").text == expected["period"]


def test_an_era_head_on_images_or_the_cnn_is_refused(tmp_path):
    config = make_config("", tmp_path / "prepared")
    config.model.era_head = True
    with pytest.raises(ValueError, match="era_head.*'cnn'"):
        models.create_model(config.model, 3)
    config.model.era_head, config.model.era_style_weight = False, 1.0
    with pytest.raises(ValueError, match="era_style_weight.*'cnn'"):
        models.create_model(config.model, 3)


def test_the_feature_cache_is_shared_with_and_without_an_era_head(tmp_path):
    config = make_config("", tmp_path / "prepared")
    without = feature_batches.cache_identity(config)
    config.model.era_head = True
    assert feature_batches.cache_identity(config) == without
    # the era's vote and each fold's own style years leave the folds one cache
    config.model.era_style_weight, config.model.style_years = 2.0, (1.0, 2.0)
    assert feature_batches.cache_identity(config) == without


def test_a_hidden_layer_is_shared_by_both_heads_and_trains_with_them(tmp_path):
    from artjax import transfer

    config = make_config("", tmp_path / "prepared")
    config.model.update(name="resnet", stage_sizes=(1,), width=4, dropout_rate=0.0)
    config.model.update(era_head=True, head_hidden=8)
    config.freeze.trainable = "head"
    model, plan = train_state.build_model(config, 3)
    assert set(plan.trainable) == set(transfer.HEADS) and plan.frozen_backbone
    state = train_state.create_train_state(config, model, 4, classes=tuple("abc"), plan=plan)
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (4, 16)))
    variables = {"params": state.params}
    logits, estimate = model.apply(variables, features, method="classify_with_era")
    hidden = np.maximum(
        features @ state.params["head_hidden_layer"]["kernel"]
        + state.params["head_hidden_layer"]["bias"],
        0,
    )
    head, era_head = state.params["head"], state.params["era_head"]
    np.testing.assert_allclose(logits, hidden @ head["kernel"] + head["bias"], rtol=1e-4, atol=1e-5)
    expected = (hidden @ era_head["kernel"] + era_head["bias"])[:, 0]
    np.testing.assert_allclose(estimate, expected, rtol=1e-4, atol=1e-5)


def test_evaluation_reports_the_era_on_a_split_and_on_a_folder_of_paintings(era_cv):
    import pandas as pd

    from artjax import evaluation

    cv, _, periods, data_root = era_cv
    fold = cv / "fold_0"
    report = evaluation.evaluate(fold, "test")
    table = pd.read_csv(fold / "eval_test" / "predictions.csv")
    expected = era.errors(table["era_estimate"], [periods[a] for a in table["artist"]])
    assert report["era"]["overall"] == pytest.approx(expected)
    # the model on images (evaluate) and on cached features (the CV) estimate alike
    held, _ = crossval.load_heldout(fold)
    by_file = dict(zip(held.filenames, held.era_years))
    np.testing.assert_allclose(
        table["era_estimate"], [by_file[f] for f in table["filename"]], atol=0.05
    )
    found = evaluation.evaluate_images(fold, data_root)
    predicted = pd.read_csv(fold / f"eval_images_{data_root.name}" / "predictions.csv")
    expected = era.errors(predicted["era_estimate"], [periods[a] for a in predicted["artist"]])
    assert found["era"]["overall"] == pytest.approx(expected)


def test_a_cvs_gate_takes_its_threshold_from_its_held_out_artists(era_cv, tmp_path):
    """`fit_gate` on a frozen backbone's CV: the threshold is the 95th percentile of held-out
    paintings' distances to their fold's training paintings (recomputed here from the feature
    cache with scikit-learn); each fold model then answers with its gate, and its export carries
    it."""
    import pathlib

    import pandas as pd
    from sklearn.neighbors import NearestNeighbors

    from artjax import checkpointing, evaluation, gate_fitting
    from artjax.data import input_pipeline as ip

    cv, _, _, _ = era_cv
    gated = tmp_path / "cv"
    shutil.copytree(cv, gated, ignore=shutil.ignore_patterns("feature_cache"))
    config = configs.from_record(checkpointing.read_run(gated / "fold_0")["config"])
    fitted = gate_fitting.fit_cv(gated, config.gate)

    cache = feature_batches.read_cache(
        config.freeze.feature_cache, feature_batches.cache_identity(config)
    )
    unit = lambda files: gate.unit(np.stack([np.atleast_2d(cache[f]).mean(0) for f in files]))
    distances = []
    for fold_dir in checkpointing.fold_workdirs(gated):
        held = list(crossval.load_heldout(fold_dir)[0].filenames)
        fold_config = configs.from_record(checkpointing.read_run(fold_dir)["config"])
        data = ip.prepare_data(fold_config.data, fold_config.seed)
        training = sorted(data.members["train"] | data.members["val"])
        assert not set(held) & set(training)
        found, _ = (
            NearestNeighbors(n_neighbors=5, metric="cosine")
            .fit(unit(training))
            .kneighbors(unit(held))
        )
        distances.append(found.mean(1))
    distances = np.concatenate(distances)
    assert fitted["threshold"] == pytest.approx(np.percentile(distances, 95), abs=1e-5)
    assert fitted["paintings"] == len(distances)

    predictor = inference.Predictor(gated / "fold_0")
    assert predictor.gate is not None and predictor.gate.threshold == pytest.approx(
        fitted["threshold"]
    )
    held = crossval.load_heldout(gated / "fold_0")[0]
    image_dir, _ = catalog.find_image_dir(ip.resolve_root(config.data)[0])
    described = predictor.describe_file(image_dir / held.filenames[0])
    assert described.painting == (described.painting_distance <= fitted["threshold"])
    record = exported._outside_the_graph(gated / "fold_0", tmp_path)
    assert record["gate"]["threshold"] == pytest.approx(fitted["threshold"])
    assert (tmp_path / gate.GATE_FILE).is_file() and "finder" in record["outside_graph"]

    # predict prints the gate's answer with the distance and the threshold; the images report
    # counts them
    import skimage.data
    from PIL import Image

    wheel = tmp_path / "colour_wheel.png"
    Image.fromarray(skimage.data.colorwheel()).save(wheel)
    painting = image_dir / held.filenames[0]
    result = run_command(
        ["artjax.predict", f"--workdir={gated / 'fold_0'}", str(painting), str(wheel)], timeout=300
    )
    assert result.returncode == 0, result.stderr
    for path in (painting, wheel):
        found = predictor.describe_file(path)
        (line,) = [line for line in result.stdout.splitlines() if line.startswith(f"{path}: ")]
        flagged = f"not a painting (distance {found.painting_distance:.3f} > threshold"
        assert (flagged in line) == (found.painting is False), line
    data_root = pathlib.Path(config.data.root)
    report = evaluation.evaluate_images(gated / "fold_0", data_root)
    table = pd.read_csv(gated / "fold_0" / f"eval_images_{data_root.name}" / "predictions.csv")
    assert report["gate"]["not_a_painting"] == int(table["not_a_painting"].sum())
    assert (table["not_a_painting"] == (table["painting_distance"] > fitted["threshold"])).all()
    assert report["paintings_found"] == int(table["painting_found"].sum())
