"""Reading the Kaggle layouts, name matching, labels and bad input."""

import logging
import re
import shutil
import unicodedata

import pandas as pd
import pytest
from PIL import Image

from artjax.data import catalog


def _write(root, artists, files):
    """artists: [(name, genre)]; files: relative paths of small JPEGs to create."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "id": range(len(artists)),
            "name": [a for a, _ in artists],
            "genre": [g for _, g in artists],
            "paintings": 1,
        }
    ).to_csv(root / "artists.csv", index=False)
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return root


ARTISTS = [
    ("Claude Monet", "Impressionism"),
    ("Albrecht Dürer", "Northern Renaissance"),
    ("Vasiliy Kandinskiy", "Expressionism,Abstractionism"),
    ("Nobody Painted", "Cubism"),
]


@pytest.mark.parametrize("layout", ["images", "images/images"])
def test_folder_layouts_match_names_across_unicode_forms(tmp_path, layout):
    nfd = unicodedata.normalize("NFD", "Albrecht_Dürer")
    root = _write(
        tmp_path / "dl",
        ARTISTS,
        [
            f"{layout}/Claude_Monet/Claude_Monet_1.jpg",
            f"{layout}/{nfd}/{nfd}_1.jpg",
            f"{layout}/Vasiliy_Kandinskiy/Vasiliy_Kandinskiy_1.jpg",
            f"{layout}/Unknown_Person/Unknown_Person_1.jpg",
        ],
    )
    result = catalog.read_catalog(root)
    assert sorted(result.images["style"]) == ["Impressionism", "Northern Renaissance"]
    assert "Albrecht Dürer" in set(result.images["artist"])
    assert result.multi_genre_artists == ("Vasiliy Kandinskiy",)  # its image is dropped
    assert [p.split("/")[-1] for p in result.unmatched_files] == ["Unknown_Person_1.jpg"]
    assert result.artists_without_files == ("Nobody Painted",)


@pytest.mark.parametrize("layout", ["resized", "resized/resized"])
def test_flat_resized_layout(tmp_path, layout):
    root = _write(
        tmp_path / "dl",
        ARTISTS,
        [
            f"{layout}/Claude_Monet_1.jpg",
            f"{layout}/Claude_Monet_12.jpg",
            f"{layout}/Albrecht_Dürer_3.jpg",
        ],
    )
    result = catalog.read_catalog(root)
    assert sorted(result.images["artist"]) == ["Albrecht Dürer", "Claude Monet", "Claude Monet"]


def test_non_image_file_is_reported_not_read(tmp_path, caplog):
    root = _write(tmp_path / "dl", ARTISTS, ["images/Claude_Monet/Claude_Monet_1.jpg"])
    (root / "images/Claude_Monet/notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        result = catalog.read_catalog(root)
    assert [p.split("/")[-1] for p in result.non_image_files] == ["notes.txt"]
    assert "notes.txt" in caplog.text
    assert len(result.images) == 1


def test_missing_column_names_file_and_column(tmp_path):
    root = _write(tmp_path / "dl", ARTISTS, ["images/Claude_Monet/Claude_Monet_1.jpg"])
    pd.read_csv(root / "artists.csv").drop(columns=["genre"]).to_csv(
        root / "artists.csv", index=False
    )
    with pytest.raises(catalog.DataError, match=r"artists\.csv.*missing column.*genre"):
        catalog.read_catalog(root)


def test_missing_csv_and_missing_images_folder(tmp_path):
    root = _write(tmp_path / "dl", ARTISTS, ["images/Claude_Monet/Claude_Monet_1.jpg"])
    shutil.rmtree(root / "images")
    with pytest.raises(catalog.DataError, match="no image folder"):
        catalog.read_catalog(root)
    (root / "artists.csv").unlink()
    with pytest.raises(catalog.DataError, match="artists.csv not found"):
        catalog.read_catalog(root)


def test_class_sets(caplog):
    styles = ["Impressionism", "Cubism", "Pop Art", "Baroque"]
    with caplog.at_level(logging.WARNING):
        assert catalog.resolve_classes("study", styles) == ("Impressionism", "Cubism", "Pop Art")
    assert "Byzantine Art" in caplog.text and "Abstract Expressionism" in caplog.text  # one warning
    assert catalog.resolve_classes("all", styles) == (
        "Baroque",
        "Cubism",
        "Impressionism",
        "Pop Art",
    )
    assert catalog.resolve_classes("Pop Art, Baroque", styles) == ("Pop Art", "Baroque")
    with pytest.raises(catalog.DataError, match="at least two"):
        catalog.resolve_classes("Baroque,Rococo", styles)


def test_real_data_six_styles(real_data_root):
    result = catalog.read_catalog(real_data_root)
    study = result.images[result.images["style"].isin(catalog.STUDY_STYLES)]
    assert study["artist"].nunique() == 9
    assert len(study) == 2306
    counts = pd.read_csv(real_data_root / "artists.csv").set_index("name")["paintings"]
    for artist, n in study.groupby("artist").size().items():
        assert counts[artist] == n  # every painting of every artist was found
    # The real file has 20 single-genre styles; the shared subset holds images of the six.
    genres = pd.read_csv(real_data_root / "artists.csv")["genre"]
    assert genres[~genres.str.contains(",")].nunique() == 20


# --- time: active periods and the order of the styles ------------------------------------------


def test_active_periods_are_the_rule_applied_to_the_real_artists_csv(real_data_root):
    rows = pd.read_csv(real_data_root / "artists.csv")
    periods = catalog.read_active_periods(real_data_root / "artists.csv")
    assert len(periods) == len(rows) == 50  # every row, paintings shared or withheld
    for name, years in zip(rows["name"], rows["years"]):
        birth, death = (int(y) for y in re.findall(r"\d{3,4}", years))
        assert periods[name] == (birth + catalog.ACTIVE_FROM_AGE, death)
    assert periods["Claude Monet"] == (1860, 1926)
    assert periods["Vincent van Gogh"] == (1873, 1890)  # an en dash in the file


def test_styles_are_ordered_by_the_median_middle_of_their_artists_periods(real_data_root):
    rows = pd.read_csv(real_data_root / "artists.csv")
    periods = catalog.read_active_periods(real_data_root / "artists.csv")
    genres = {n: catalog.listed_genres(g) for n, g in zip(rows["name"], rows["genre"])}
    # the reference: every (artist, listed genre) pair, by pandas
    pairs = rows.assign(genre=rows["genre"].str.split(",")).explode("genre")
    pairs["middle"] = [sum(periods[n]) / 2 for n in pairs["name"]]
    expected = pairs.groupby(pairs["genre"].str.strip())["middle"].median()
    classes = ["Pop Art", "Baroque", "Impressionism", "Byzantine Art", "Symbolism", "Cubism"]
    years = catalog.style_years(classes, genres, periods)
    assert years == {c: expected[c] for c in classes}
    order = sorted(classes, key=years.get)
    assert order == ["Byzantine Art", "Baroque", "Impressionism", "Symbolism", "Cubism", "Pop Art"]
    neighbours = catalog.time_neighbours(classes, genres, periods)
    assert neighbours["Byzantine Art"] == ("Baroque",)
    assert neighbours["Impressionism"] == ("Baroque", "Symbolism")
    assert neighbours["Pop Art"] == ("Cubism",)


def test_bad_years_name_the_file_and_the_artist(tmp_path):
    root = _write(tmp_path / "dl", ARTISTS, ["images/Claude_Monet/Claude_Monet_1.jpg"])
    rows = pd.read_csv(root / "artists.csv")
    rows["years"] = "1840 - 1926"
    rows.loc[0, "years"] = "c. 1840"
    rows.to_csv(root / "artists.csv", index=False)
    with pytest.raises(catalog.DataError, match=rf"artists\.csv: artist '{rows['name'][0]}'.*1840"):
        catalog.read_active_periods(root / "artists.csv")
    rows.drop(columns=["years"]).to_csv(root / "artists.csv", index=False)
    with pytest.raises(catalog.DataError, match=r"artists\.csv: no 'years' column"):
        catalog.read_active_periods(root / "artists.csv")
