"""WikiArt's three distributions (artjax.data.wikiart): each layout, generated here with its quirks,
gives the paintings, labels and splits of a reference computed with pandas from what was written.
Each download is prepared once per module (a few tiny JPEGs): no JAX compile, seconds in all."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artjax import configs
from artjax.data import catalog, dates, splits
from artjax.data import fingerprint as fingerprint_lib
from artjax.data import input_pipeline as ip
from artjax.data.wikiart import builder as wikiart_builder
from artjax.data.wikiart import decode, layouts, names

# --- The paintings every layout holds ------------------------------------------------------------

# artist -> [(style, number of paintings)]; Klimt paints in two styles
ARTISTS = {
    "claude-monet": [("Impressionism", 6)],
    "edgar-degas": [("Impressionism", 4)],
    "joaquin-sorolla": [("Impressionism", 4)],
    "alphonse-mucha": [("Art Nouveau", 5)],
    "gustav-klimt": [("Art Nouveau", 3), ("Symbolism", 2)],
    "odilon-redon": [("Symbolism", 3)],
    "henri-rousseau": [("Naive Art (Primitivism)", 4)],
    "niko-pirosmani": [("Naive Art (Primitivism)", 4)],
}
GENRES = ("portrait", "landscape", "sketch and study", "")  # "": unknown
# Painter by Numbers' dates, and what the parser must make of them (module rule of dates.py)
DATES = {
    "1872": (1872, 1872),
    "c.1650": (1645, 1655),
    "1872-1873": (1872, 1873),
    "1910s": (1910, 1919),
    "": None,
    "May 1901": None,
}
# how each distribution spells the styles
RAW_STYLES = {
    "artgan": {
        "Impressionism": "Impressionism",
        "Art Nouveau": "Art_Nouveau",
        "Symbolism": "Symbolism",
        "Naive Art (Primitivism)": "Naive_Art_Primitivism",
    },
    "painter_by_numbers": {
        "Impressionism": "Impressionism",
        "Art Nouveau": "Art Nouveau (Modern)",
        "Symbolism": "Symbolism",
        "Naive Art (Primitivism)": "Naïve Art (Primitivism)",
    },
}
ARTGAN_FOLDERS = {  # ArtGAN's folder of Art_Nouveau is Art_Nouveau_Modern
    "Impressionism": "Impressionism",
    "Art Nouveau": "Art_Nouveau_Modern",
    "Symbolism": "Symbolism",
    "Naive Art (Primitivism)": "Naive_Art_Primitivism",
}
HF_STYLES = [  # huggan/wikiart's `style` names, in its order
    "Abstract_Expressionism", "Action_painting", "Analytical_Cubism", "Art_Nouveau", "Baroque",
    "Color_Field_Painting", "Contemporary_Realism", "Cubism", "Early_Renaissance",
    "Expressionism", "Fauvism", "High_Renaissance", "Impressionism",
    "Mannerism_Late_Renaissance", "Minimalism", "Naive_Art_Primitivism", "New_Realism",
    "Northern_Renaissance", "Pointillism", "Pop_Art", "Post_Impressionism", "Realism", "Rococo",
    "Romanticism", "Symbolism", "Synthetic_Cubism", "Ukiyo_e",
]  # fmt: skip
HF_GENRES = [
    "abstract_painting", "cityscape", "genre_painting", "illustration", "landscape",
    "nude_painting", "portrait", "religious_painting", "sketch_and_study", "still_life",
    "Unknown Genre",
]  # fmt: skip


def spec() -> pd.DataFrame:
    """One row per painting: its artist, labels, date, release split and pixels' seed. Every
    fourth painting is in the release's test split, so artists are on both sides of it; Monet's
    third painting is a near duplicate of his second, across the release's split."""
    rows = []
    for artist, works in ARTISTS.items():
        for style, count in works:
            for _ in range(count):
                i = len(rows)
                rows.append(
                    dict(
                        key=i,
                        artist=artist,
                        style=style,
                        genre=GENRES[i % len(GENRES)],
                        date=list(DATES)[i % len(DATES)],
                        release="test" if i % 4 == 3 else "train",
                        seed=i,
                    )
                )
    frame = pd.DataFrame(rows)
    frame.loc[3, "seed"] = 2  # the near duplicate: painting 2's pixels (image_bytes)
    return frame


def jpeg(seed: int, size: int = 16, brighter: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pixels = np.clip(pixels.astype(int) + brighter, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def image_bytes(row) -> bytes:
    """A painting's file; painting 3 is painting 2 lightly re-scanned (a near duplicate)."""
    return jpeg(int(row.seed), brighter=3 if row.key == 3 else 0)


# --- Writing each layout -------------------------------------------------------------------


def write_artgan(root) -> pd.DataFrame:
    """The ArtGAN release; returns the spec with each painting's expected `filename` and the
    quirks' files in `problem`."""
    paintings = spec()
    sorolla = paintings.index[paintings["artist"] == "joaquin-sorolla"][1]
    slugs = paintings["artist"].where(paintings.index != sorolla, "joaquãn-sorolla")
    paintings["filename"] = [
        f"{ARTGAN_FOLDERS[s]}/{slug}_painting-{k}.jpg"
        for s, slug, k in zip(paintings["style"], slugs, paintings["key"])
    ]
    paintings["problem"] = ""
    for row in paintings.itertuples():
        path = root / row.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(row))
    broken = pd.DataFrame(
        [
            dict(filename="Impressionism/claude-monet_missing.jpg", problem="missing"),
            dict(filename="Symbolism/odilon-redon_broken.jpg", problem="unreadable"),
        ]
    ).assign(style=["Impressionism", "Symbolism"], genre="", release="train")
    (root / "Symbolism/odilon-redon_broken.jpg").write_bytes(jpeg(99)[:100])  # truncated
    (root / "Impressionism/claude-monet_unlisted.jpg").write_bytes(jpeg(98))
    (root / "Impressionism/notes.txt").write_text("not an image")
    listed = pd.concat([paintings, broken], ignore_index=True)
    style_index = {"Art_Nouveau": 3, "Impressionism": 12, "Naive_Art_Primitivism": 15}
    style_index["Symbolism"] = 24
    genre_index = {"landscape": 0, "portrait": 1, "sketch_and_study": 2}
    for task, classes in (("Style", style_index), ("Genre", genre_index)):
        (root / task).mkdir()
        lines = [f"{i} {name}" for name, i in sorted(classes.items(), key=lambda x: x[1])]
        (root / task / f"{task.lower()}_class.txt").write_text("\n".join(lines) + "\n")
    for release, split in (("train", "train"), ("test", "val")):
        part = listed[listed["release"] == release]
        styles = part["style"].map(RAW_STYLES["artgan"]).map(style_index)
        pd.DataFrame({"p": part["filename"], "i": styles}).to_csv(
            root / "Style" / f"style_{split}.csv", header=False, index=False
        )
        dated = part[part["genre"] != ""]
        genres = dated["genre"].str.replace(" ", "_").map(genre_index)
        pd.DataFrame({"p": dated["filename"], "i": genres}).to_csv(
            root / "Genre" / f"genre_{split}.csv", header=False, index=False
        )
    return listed


def write_huggingface(root) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paintings = spec()
    unknown = dict(key=len(paintings), artist="Unknown Artist", style="Symbolism", genre="")
    paintings = pd.concat(
        [paintings, pd.DataFrame([dict(unknown, date="", release="train", seed=77)])],
        ignore_index=True,
    )
    paintings["problem"] = ""
    extra = pd.DataFrame(
        [
            dict(artist="odilon-redon", style="Symbolism", genre="", problem="unreadable"),
            dict(artist="odilon-redon", style="Symbolism", genre="", problem="missing"),
        ]
    )
    listed = pd.concat([paintings, extra], ignore_index=True)
    artist_names = ["Unknown Artist", *sorted(ARTISTS)]
    meta = {
        "info": {
            "features": {
                "image": {"_type": "Image"},
                "artist": {"names": artist_names, "_type": "ClassLabel"},
                "genre": {"names": HF_GENRES, "_type": "ClassLabel"},
                "style": {"names": HF_STYLES, "_type": "ClassLabel"},
            }
        }
    }
    raw_style = {
        s: s.replace(" (", "_").replace(")", "").replace(" ", "_") for s in RAW_STYLES["artgan"]
    }
    raw_style["Art Nouveau"] = "Art_Nouveau"
    images = [
        {
            "bytes": None
            if p == "missing"
            else b"not an image"
            if p == "unreadable"
            else image_bytes(r),
            "path": None,
        }
        for r, p in zip(listed.itertuples(), listed["problem"])
    ]
    table = pa.table(
        {
            "image": images,
            "artist": [artist_names.index(a) for a in listed["artist"]],
            "genre": [
                HF_GENRES.index(g.replace(" ", "_") if g else "Unknown Genre")
                for g in listed["genre"]
            ],
            "style": [HF_STYLES.index(raw_style[s]) for s in listed["style"]],
        }
    )
    table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    (root / "data").mkdir()
    half = len(listed) // 2
    filenames = []
    for shard, (start, stop) in enumerate(((0, half), (half, len(listed)))):
        name = f"data/train-{shard:05d}-of-00002.parquet"
        pq.write_table(table.slice(start, stop - start), root / name)
        filenames += [f"{name}#{i:06d}" for i in range(stop - start)]
    listed["filename"] = filenames
    listed["release"] = ""
    return listed


def write_painter_by_numbers(root) -> pd.DataFrame:
    paintings = spec()
    paintings["problem"] = ""
    extra = pd.DataFrame(
        [
            dict(artist="Odilon Redon", style="Symbolism", problem="missing"),
            dict(artist="Odilon Redon", style="Symbolism", problem="unreadable"),
            dict(artist="Odilon Redon", style="", problem="unlabelled"),
        ]
    ).assign(genre="", date="", release="train")
    paintings["artist"] = paintings["artist"].str.replace("-", " ").str.title()
    listed = pd.concat([paintings, extra], ignore_index=True)
    listed["new_filename"] = [f"{1000 + i}.jpg" for i in range(len(listed))]
    listed["filename"] = listed["release"] + "/" + listed["new_filename"]
    for row in listed.itertuples():
        path = root / row.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if row.problem == "unreadable":
            path.write_bytes(b"")
        elif row.problem != "missing":
            path.write_bytes(image_bytes(row) if row.problem == "" else jpeg(55))
    (root / "train" / "99999.jpg").write_bytes(jpeg(97))  # on disk, not in the CSV
    raw = listed["style"].map(RAW_STYLES["painter_by_numbers"]).fillna("")
    pd.DataFrame(
        {
            "artist": listed["artist"],
            "date": listed["date"],
            "genre": listed["genre"],
            "pixelsx": 16,
            "pixelsy": 16,
            "size_bytes": 600,
            "source": "wikiart",
            "style": raw,
            "title": "t",
            "artist_group": "train_only",
            "in_train": listed["release"] == "train",
            "new_filename": listed["new_filename"],
        }
    ).to_csv(root / "all_data_info.csv", index=False)
    return listed


WRITERS = {
    "artgan": write_artgan,
    "huggingface": write_huggingface,
    "painter_by_numbers": write_painter_by_numbers,
}


def expected(listed: pd.DataFrame, layout: str) -> pd.DataFrame:
    """The pandas reference: the paintings that should come through, with their labels."""
    good = listed[listed["problem"] == ""].copy()
    years = good["date"].map(DATES) if layout == "painter_by_numbers" else None
    good["years"] = [y or () for y in years] if years is not None else [()] * len(good)
    return good[["filename", "artist", "style", "genre", "release", "years"]]


def data_config(root, prepared, **overrides):
    d = configs.data_config()
    d.root, d.prepared_dir, d.classes = str(root), str(prepared), "all"
    d.prepare_workers = 2 if "huggingface" in str(root) else 1
    d.update(overrides)
    return d


@pytest.fixture(scope="module", params=sorted(WRITERS))
def download(request, tmp_path_factory):
    layout = request.param
    root = tmp_path_factory.mktemp(layout)
    listed = WRITERS[layout](root)
    prepared = tmp_path_factory.mktemp(f"{layout}_prepared")
    data = ip.prepare_data(data_config(root, prepared), seed=0)
    return layout, root, prepared, listed, data


def rows_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame([r._asdict() for r in rows])
    return frame[["filename", "artist", "style", "genre", "release", "years"]]


def sort(frame):
    return frame.sort_values("filename").reset_index(drop=True)


# --- Each layout against its reference ---------------------------------------------------------


def test_layout_is_recognised(download):
    layout, root, *_ = download
    assert layouts.detect(root) == layout


def test_paintings_and_labels_match_pandas_reference(download):
    layout, _, _, listed, data = download
    got = sort(rows_frame(data.rows))
    pd.testing.assert_frame_equal(got, sort(expected(listed, layout)), check_dtype=False)
    assert "joaquãn-sorolla" not in set(got["artist"])  # ArtGAN's mojibake slug: one painter


def test_every_skipped_file_is_listed(download):
    layout, root, _, listed, data = download
    meta = data.builder.info.metadata
    unreadable = [u.split(":")[0] for u in meta["unreadable_files"]]
    skipped = meta["skipped"]
    problems = listed.set_index("filename")["problem"]
    if layout == "huggingface":  # no file to miss: a row without bytes is unreadable
        assert sorted(unreadable) == sorted(problems[problems != ""].index)
        return
    assert unreadable == list(problems[problems == "unreadable"].index)
    assert skipped["missing_files"] == list(problems[problems == "missing"].index)
    unlisted = [f.split(str(root) + "/")[1] for f in skipped["unlisted_files"]]
    if layout == "artgan":
        assert unlisted == ["Impressionism/claude-monet_unlisted.jpg"]
        assert [f.split(str(root) + "/")[1] for f in skipped["non_image_files"]] == [
            "Impressionism/notes.txt"
        ]
    else:
        assert unlisted == ["train/99999.jpg"]
        assert skipped["unlabelled_rows"] == list(problems[problems == "unlabelled"].index)


def test_fixed_split_keeps_near_duplicates_together(download):
    layout, _, _, listed, data = download
    split_of = {f: s for s, files in data.members.items() for f in files}
    group_of = {r.filename: r.group for r in data.rows}
    pair = listed.loc[listed["key"].isin([2, 3]), "filename"].tolist()
    assert group_of[pair[0]] == group_of[pair[1]]
    assert split_of[pair[0]] == split_of[pair[1]]
    assert sorted(split_of) == sorted(r.filename for r in data.rows)  # each image in one split
    fixed_test = {r.filename for r in data.rows if r.source == "test"}
    assert data.members["test"] == fixed_test


def split_members(data, root, prepared, **overrides) -> tuple[dict, tuple]:
    """The splits of another setting over the prepared rows, as prepare_data assigns them."""
    config = data_config(root, prepared, **overrides)
    members, held, _ = ip.assign_splits(data.rows, config, 0, data.classes_of)
    return members, held


def test_release_split_is_the_published_one(download):
    layout, root, prepared, listed, data = download
    if layout == "huggingface":
        with pytest.raises(ValueError, match="no release split"):
            split_members(data, root, prepared, test_split="release")
        return
    members, _ = split_members(data, root, prepared, test_split="release")
    want = expected(listed, layout)
    assert members["test"] == set(want.loc[want["release"] == "test", "filename"])
    train_pool = members["train"] | members["val"]
    assert train_pool == set(want.loc[want["release"] == "train", "filename"])
    # an artist on both sides of the published split, as published
    test_artists = {r.artist for r in data.rows if r.filename in members["test"]}
    train_artists = {r.artist for r in data.rows if r.filename in train_pool}
    assert test_artists & train_artists
    # the near duplicate it cuts is reported, not moved
    pair = sorted(listed.loc[listed["key"].isin([2, 3]), "filename"])
    assert [sorted(g) for g in data.builder.info.metadata["release_groups_cut"]] == [pair]


def test_artist_disjoint_split_holds_no_artist_on_both_sides(download):
    _, root, prepared, _, data = download
    members, _ = split_members(data, root, prepared, test_split="artist")
    artists = {
        split: {r.artist for r in data.rows if r.filename in files}
        for split, files in members.items()
    }
    assert artists["test"]
    assert not artists["test"] & (artists["train"] | artists["val"])
    # every class keeps a training artist
    trained = {r.style for r in data.rows if r.filename in members["train"]}
    assert trained == set(data.classes)


def test_leave_artists_out_folds_hold_whole_artists(download):
    _, root, prepared, _, data = download
    cv = dict(by="artist", folds=2, fold=1)
    members, held = split_members(data, root, prepared, cv=cv)
    test_artists = {r.artist for r in data.rows if r.filename in members["test"]}
    assert held and set(held) == test_artists
    pool = members["train"] | members["val"]
    assert not test_artists & {r.artist for r in data.rows if r.filename in pool}


def test_min_class_images_and_wikiart_class_set(download):
    layout, _, _, listed, data = download
    counts = expected(listed, layout)["style"].value_counts()
    assert set(data.classes) == set(counts.index)  # "all"
    found = counts.to_dict()
    assert set(catalog.resolve_classes("all", found, 7)) == set(counts[counts >= 7].index)
    # WikiArt's 27, of which the fixture has four
    assert set(catalog.resolve_classes("wikiart", found)) == set(counts.index)


def test_era_targets_use_each_paintings_years(download):
    layout, _, _, listed, data = download
    files = sorted(r.filename for r in data.rows)
    targets = ip.era_targets(data, files, ip.artist_periods(data))
    want = expected(listed, layout).set_index("filename").loc[files, "years"]
    for target, years in zip(targets, want):
        if years:
            np.testing.assert_allclose(target, (np.array(years) - 1700) / 100, rtol=1e-6)
        else:  # undated: left out of the era loss
            assert np.isnan(target).all()


# --- The pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,years",
    [
        ("c.1650", (1645, 1655)),  # circa: CIRCA_YEARS each side
        ("1872-1873", (1872, 1873)),
        ("1910s", (1910, 1919)),
        ("", None),
        (None, None),
        (float("nan"), None),
        ("1872", (1872, 1872)),
        ("1872.0", (1872, 1872)),
        ("c.1665-1670", (1660, 1675)),
        ("1872 – 73", (1872, 1873)),
        ("May 1901", None),
        ("1873-1872", None),
        ("1915s", None),
        ("0012", None),
    ],
)
def test_date_parser(text, years):
    assert dates.parse_date(text) == years


def test_style_names_join_the_three_sources():
    spellings = {
        "Art Nouveau": ["Art_Nouveau", "Art_Nouveau_Modern", "Art Nouveau (Modern)"],
        "Naive Art (Primitivism)": ["Naive_Art_Primitivism", "Naïve Art (Primitivism)"],
        "Post-Impressionism": ["Post_Impressionism", "Post-Impressionism"],
        "Ukiyo-e": ["Ukiyo_e", "Ukiyo-e"],
        "Action Painting": ["Action_painting", "Action painting"],
        "Mannerism (Late Renaissance)": ["Mannerism_Late_Renaissance"],
    }
    for name, raw in spellings.items():
        assert {names.style_name(r) for r in raw} == {name}
    assert sorted({names.style_name(s) for s in HF_STYLES}) == sorted(names.STYLES)
    assert len(names.STYLES) == 27
    assert names.style_name("Surrealism") == "Surrealism"  # Painter by Numbers' others stay
    assert names.genre_name("Unknown Genre") == "" and names.genre_name("sketch_and_study") == (
        "sketch and study"
    )


def test_mojibake_slugs_join_their_clean_spelling():
    found = names.artist_aliases(["joaquãn-sorolla", "joaquin-sorolla", "claude-monet", "zã-x"])
    assert found == {
        "joaquãn-sorolla": "joaquin-sorolla",
        "joaquin-sorolla": "joaquin-sorolla",
        "claude-monet": "claude-monet",
        "zã-x": "zã-x",  # no clean spelling: kept
    }


def test_packed_duplicate_groups_equal_the_reference(tmp_path):
    paths = []
    for i, seed in enumerate([1, 2, 1, 3, 2, 4]):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg(seed, 40))
        paths.append(path)
    reference = [fingerprint_lib.fingerprint(p) for p in paths]
    found = decode.signatures([str(p) for p in paths], workers=1)
    assert [s.phash for s in found] == [decode.pack(f.phash) for f in reference]
    want = fingerprint_lib.duplicate_groups(reference, 10, 0.85)
    got = decode.duplicate_groups(
        [s.phash for s in found], np.stack([s.thumb for s in found]), 10, 0.85
    )
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [0, 1, 0, 3, 1, 5])


def test_unknown_folder_lists_what_each_layout_needs(tmp_path):
    (tmp_path / "readme.txt").write_text("?")
    with pytest.raises(ValueError) as e:
        layouts.detect(tmp_path)
    for name, layout in layouts.LAYOUTS.items():
        assert name in str(e.value) and layout.needs in str(e.value)
    with pytest.raises(ValueError, match="not a artgan download"):
        layouts.detect(tmp_path, "artgan")
    with pytest.raises(ValueError, match="is not one of"):
        layouts.detect(tmp_path, "wikiart")


def test_undated_paintings_add_no_era_loss():
    import jax.numpy as jnp

    from artjax import steps

    outputs = jnp.array([[0.5], [0.1]])
    target = jnp.array([[0.0, 1.0], [jnp.nan, jnp.nan]])
    losses = steps.era_losses("midpoint", outputs, target, None)
    np.testing.assert_allclose(losses, [0.0, 0.0])
    losses = steps.era_losses("midpoint", outputs, target.at[1].set([0.3, 0.3]), None)
    np.testing.assert_allclose(losses, [0.0, 0.2], atol=1e-6)


def test_prepared_copy_is_listed_and_current(download):
    _, root, prepared, _, _ = download
    copies = wikiart_builder.prepared_copies(prepared, [root])
    assert [c.stale for c in copies] == [""]
    assert copies[0].source_root == str(root.absolute())


def test_tfds_build_command_rebuilds_the_same_config(download):
    layout, root, prepared, _, data = download
    config = data.builder.builder_config
    command = wikiart_builder.tfds_build_command(config, root, prepared, "runner=DirectRunner")
    as_json = command.split("--config='")[1].split("'")[0]
    rebuilt = wikiart_builder.WikiArt.builder_config_cls(**json.loads(as_json))
    assert (rebuilt.name, rebuilt.layout, rebuilt.beam) == (config.name, layout, True)
    assert f"--manual_dir={root.absolute()}" in command


def test_era_report_leaves_out_painters_without_a_period():
    from artjax import era

    periods = {"dated": (1870, 1880)}
    found = era.report([1875.0, 1900.0, 1500.0], ["dated", "dated", "undated"], periods)
    assert found["paintings_without_period"] == 1
    assert found["overall"] == era.errors([1875.0, 1900.0], [(1870, 1880)] * 2)
    assert found["overall"]["mae_to_period"] == 10.0


def test_artgan_zips_as_downloaded_read_the_same(tmp_path):
    """The release's two zips unpacked side by side: wikiart/<Style>/ and wikiart_csv/."""
    flat, zipped = tmp_path / "flat", tmp_path / "zipped"
    flat.mkdir()
    write_artgan(flat)
    want = layouts.read_artgan(flat)
    (zipped / "wikiart").mkdir(parents=True)
    (zipped / "wikiart_csv").mkdir()
    for entry in flat.iterdir():
        if entry.name in ("Style", "Genre"):
            for task_file in entry.iterdir():
                task_file.rename(zipped / "wikiart_csv" / task_file.name)
        else:
            entry.rename(zipped / "wikiart" / entry.name)
    got = layouts.read_artgan(zipped)
    columns = ["filename", "artist", "style", "genre", "release"]
    pd.testing.assert_frame_equal(got.images[columns], want.images[columns])
    assert got.skipped["missing_files"] == want.skipped["missing_files"]
    assert layouts.detect(zipped) == "artgan"


def test_artist_test_split_blocks_and_keeps():
    """Blocks in hash order (d, b, a|c, Unknown Artist): a and c share a near duplicate and go
    together, so taking them would leave Y without a training artist: both stay; a pseudo-artist
    in `keep` stays in training."""
    classes = {"a": ("X",), "b": ("X",), "c": ("Y",), "d": ("Y",), "Unknown Artist": ("X",)}
    images = dict.fromkeys(classes, 5)
    links = [{"a", "c"}]
    kept = splits.artist_test_artists(classes, images, links, 1.0, keep=("Unknown Artist",))
    assert kept == {"b", "d"}
    assert splits.artist_test_artists(classes, images, links, 1.0) == {"b", "d", "Unknown Artist"}
    assert splits.artist_test_artists(classes, images, links, 0.2) == {"d"}  # 5 of 25 images
