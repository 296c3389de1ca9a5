"""SBI self-blended pseudo-fakes: the generator, the face geometry it starts from, the training-data option.

The generator is checked on a textured synthetic crop: its mask is non-empty and stays at the face hull, the
blend changes nothing where the mask is 0, and the same generator state gives the same image. The training
option is checked on the tiny split of ``test_training`` with landmarks, crop boxes and face boxes added:
labels, determinism per (seed, epoch), real/pseudo-fake pairs in one batch, and a real-only run end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_training import make_tiny_split, tiny_config

from crossfake.data import sbi
from crossfake.data.manifest import read_manifest, write_manifest
from crossfake.data.preprocess.crop import landmarks_in_crop
from crossfake.data.pseudo_fakes import (
    LANDMARK_COLUMNS,
    FaceRegion,
    face_region,
    fill_polygon,
    list_pseudo_fakes,
    pseudo_fake_maker,
)
from crossfake.runs.config import PseudoFakeConfig, TrainConfig
from crossfake.scoring.data import Collate
from crossfake.training import train
from crossfake.training.data import PseudoFakeDataset, shuffled_loader, training_rows
from crossfake.utils.errors import CrossfakeError

SIZE = 128
#: Five landmarks of an upright face in a SIZE crop: eyes 28 px apart, mouth 30 px below them.
LANDMARKS = np.array([[50.0, 52.0], [78.0, 52.0], [64.0, 67.0], [51.0, 82.0], [77.0, 82.0]])
BOX = (34.0, 30.0, 94.0, 110.0)


def textured_crop(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A smooth but non-flat RGB image, so that every source augmentation changes pixels."""
    noise = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 1.5)


def region_mask(polygon: np.ndarray, size: int = SIZE) -> np.ndarray:
    return fill_polygon(polygon, size, size) > 0


# -- the face hull --------------------------------------------------------------------------------------------


def test_the_hull_from_five_landmarks_covers_the_face_from_forehead_to_chin() -> None:
    face = FaceRegion(landmarks=LANDMARKS)
    full, no_forehead = sbi.face_hull(face, forehead=True), sbi.face_hull(face, forehead=False)
    inside = region_mask(full)
    for x, y in LANDMARKS.round().astype(int):
        assert inside[y, x]
    iod = 28.0
    # Chin about two interocular distances below the eyes, forehead more than one above, jaw wider than the eyes.
    assert full[:, 1].max() == pytest.approx(52 + 1.97 * iod, abs=1.5)
    assert full[:, 1].min() < 52 - 1.2 * iod < no_forehead[:, 1].min()
    assert full[:, 0].max() - full[:, 0].min() == pytest.approx(2.28 * iod, abs=1.5)
    # Symmetric about the face's midline, and the forehead only adds to the hull.
    assert (full[:, 0].max() + full[:, 0].min()) / 2 == pytest.approx(64, abs=0.5)
    assert not (region_mask(no_forehead) & ~inside).any()


def test_the_hull_follows_the_landmarks_rotation_and_scale() -> None:
    matrix = cv2.getRotationMatrix2D((64, 64), 25, 0.8)  # rotate by 25 degrees and shrink, about the centre
    moved = np.hstack([LANDMARKS, np.ones((5, 1))]) @ matrix.T
    hull = sbi.face_hull(FaceRegion(landmarks=LANDMARKS))
    expected = region_mask(np.hstack([hull, np.ones((len(hull), 1))]) @ matrix.T)
    got = region_mask(sbi.face_hull(FaceRegion(landmarks=moved)))
    assert (got & expected).sum() / (got | expected).sum() > 0.98


def test_the_box_fallback_is_the_ellipse_inscribed_in_the_box() -> None:
    hull = sbi.face_hull(sbi.as_face_region(BOX))
    assert hull.min(0) == pytest.approx(BOX[:2], abs=0.5) and hull.max(0) == pytest.approx(BOX[2:], abs=0.5)
    corner = region_mask(hull)
    assert not corner[int(BOX[1]) + 2, int(BOX[0]) + 2]  # an ellipse, not the box
    with pytest.raises(ValueError, match="expected a FaceRegion"):
        sbi.as_face_region([1.0, 2.0, 3.0])


# -- the self-blend ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("face", [LANDMARKS, BOX], ids=["landmarks", "face_box"])
def test_masks_lie_inside_the_face_hull_and_are_not_empty(face: np.ndarray) -> None:
    image = textured_crop()
    region = sbi.as_face_region(face)
    hull = region_mask(sbi.face_hull(region, forehead=True))
    # Distance of every pixel to the hull: the deformations may move the mask's edge at most max_reach.
    outside = cv2.distanceTransform((~hull).astype(np.uint8), cv2.DIST_L2, 5)
    reach = sbi.max_reach(SIZE, SIZE)
    assert reach < 0.25 * SIZE
    for seed in range(30):
        _, mask = sbi.self_blend(image, region, np.random.default_rng(seed))
        assert mask.dtype == np.float32 and mask.shape == (SIZE, SIZE)
        assert 0 <= mask.min() and 0.25 - 1e-6 <= mask.max() <= 1 + 1e-6
        assert outside[mask > 0].max() <= reach
        # Nearly all of the blend weight lies on the face (measured: at least 91% over 300 draws).
        assert mask[hull].sum() >= 0.8 * mask.sum()
    far = outside > reach
    assert far.any()  # the bound leaves part of the crop untouched, so the check above has teeth


@pytest.mark.parametrize("face", [LANDMARKS, BOX], ids=["landmarks", "face_box"])
def test_blends_differ_from_the_source_only_inside_the_mask(face: np.ndarray) -> None:
    image = textured_crop()
    for seed in range(20):
        fake, mask = sbi.self_blend(image, face, np.random.default_rng(seed))
        assert fake.dtype == np.uint8 and fake.shape == image.shape
        np.testing.assert_array_equal(fake[mask == 0], image[mask == 0])
        strong = mask >= 0.2
        assert (fake[strong] != image[strong]).any(axis=-1).mean() > 0.3  # and a real change inside


def test_the_same_generator_state_gives_the_same_blend() -> None:
    image = textured_crop()
    a = sbi.self_blend(image, LANDMARKS, np.random.default_rng(7))
    b = sbi.self_blend(image, LANDMARKS, np.random.default_rng(7))
    c = sbi.self_blend(image, LANDMARKS, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_sbi_is_a_registered_maker() -> None:
    assert "sbi" in list_pseudo_fakes() and pseudo_fake_maker("sbi") is sbi.self_blend
    with pytest.raises(CrossfakeError, match="unknown pseudo-fake kind 'nope'; available: .*sbi"):
        pseudo_fake_maker("nope")
    with pytest.raises(ValueError, match="uint8"):
        sbi.self_blend(textured_crop().astype(np.float32), LANDMARKS, np.random.default_rng(0))


# -- face geometry from manifest rows ---------------------------------------------------------------------


def test_face_region_maps_manifest_geometry_into_the_crop() -> None:
    frame_points = np.array([[310.0, 205.0], [350.0, 210.0], [330.0, 232.0], [312.0, 255.0], [348.0, 258.0]])
    row = {c: v for c, v in zip(LANDMARK_COLUMNS, frame_points.ravel(), strict=True)}
    row |= {"crop_x0": 260.0, "crop_y0": 160.0, "crop_x1": 400.0, "crop_y1": 300.0, "crop_angle": 7.0}
    row |= {"face_x0": 290.0, "face_y0": 180.0, "face_x1": 370.0, "face_y1": 280.0}
    region = face_region(row, 256, 256)
    assert region.origin == "landmarks"
    expected = landmarks_in_crop(frame_points, (260, 160, 400, 300), 7.0, 256)
    np.testing.assert_allclose(region.landmarks, expected)
    # Haar: no landmarks -> the face box's ellipse, mapped the same way.
    no_landmarks = row | {c: float("nan") for c in LANDMARK_COLUMNS}
    region = face_region(no_landmarks, 256, 256)
    assert region.origin == "face_box" and region.landmarks is None
    box_corners = np.array([[290.0, 180.0], [370.0, 180.0], [370.0, 280.0], [290.0, 280.0]])
    box_in_crop = landmarks_in_crop(box_corners, (260, 160, 400, 300), 7.0, 256)
    polygon = box_in_crop.astype(np.float32)
    distances = [cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x, y in region.outline]
    assert min(distances) > -1e-3 and max(distances) > 10  # inside the box, touching its sides
    assert region.outline.mean(0) == pytest.approx(box_in_crop.mean(0), abs=1e-6)
    # Neither (a centre crop, an old manifest without crop columns): the default face in the middle.
    region = face_region({"face_x0": 0.0, "face_y0": 0.0, "face_x1": 64.0, "face_y1": 64.0}, 64, 64)
    assert region.origin == "crop_centre"
    assert region.outline.mean(0) == pytest.approx([32, 32], abs=0.1)


# -- the training-data option -----------------------------------------------------------------------------


def add_geometry(manifest: Path) -> Path:
    """The tiny split with crop boxes (the whole 64 px frame) and, per video, landmarks, a face box only
    (like Haar) or neither, so every geometry origin occurs. Returns the manifest's path."""
    df = read_manifest(manifest)
    df[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]] = [0.0, 0.0, 64.0, 64.0]
    df["crop_angle"] = 0.0
    df[["face_x0", "face_y0", "face_x1", "face_y1"]] = [12.8, 6.4, 51.2, 57.6]  # the tiny faces' ellipse
    video = df["video_id"].str[-2:].astype(int)
    points = np.array([[26.0, 26.0], [38.0, 26.0], [32.0, 33.0], [27.0, 41.0], [37.0, 41.0]]).ravel()
    df.loc[video % 3 == 0, LANDMARK_COLUMNS] = points
    df.loc[video % 3 == 2, ["crop_x0", "crop_y0", "crop_x1", "crop_y1"]] = np.nan
    write_manifest(df, manifest)
    return manifest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_geometry(make_tiny_split(tmp_path_factory.mktemp("tiny_sbi")))


def pixels(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image))


def dataset(tiny: Path, seed: int = 0, **options) -> PseudoFakeDataset:
    config = PseudoFakeConfig(kind="sbi", **options)
    data = TrainConfig.parse(
        {"method": {"name": "linear_probe", "backbone": "tiny"},
         "data": {"manifest": str(tiny), "pseudo_fakes": config.model_dump()}}
    ).data
    rows, _ = training_rows(read_manifest(tiny), data, seed)
    return PseudoFakeDataset(rows, pixels, config, seed)


def epoch_batches(ds: PseudoFakeDataset, epoch: int, seed: int = 0, workers: int = 0) -> list:
    loader = shuffled_loader(ds, 8, Collate(torch.stack), seed=seed, num_workers=workers)
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_real_only_rows_yield_one_pseudo_fake_each_with_label_1(tiny: Path) -> None:
    ds = dataset(tiny)
    assert ds.n_rows == 18 and (ds.labels == 0).all()  # 6 real training videos x 3 frames; fakes dropped
    assert len(ds) == 36
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels == [0.0] * 18 + [1.0] * 18
    assert sorted(ds.real_rows_for(0).tolist()) == list(range(18))
    assert ds.geometry_counts() == {"landmarks": 6, "face_box": 6, "crop_centre": 6}
    # A pseudo-fake item is its real row's self-blend of this epoch: equal to the crop outside the mask.
    for j in (0, 7, 17):
        row = int(ds.real_rows_for(0)[j])
        made = ds.make(row, 0)
        item = ds[18 + j][0].numpy()
        np.testing.assert_array_equal(item, made.fake)
        np.testing.assert_array_equal(item[made.mask == 0], ds[row][0].numpy()[made.mask == 0])
        assert made.mask.max() > 0


def test_same_seed_same_batches_other_epoch_or_seed_other_batches(tiny: Path) -> None:
    first = epoch_batches(dataset(tiny), 0)
    again = epoch_batches(dataset(tiny), 0)
    for (x, y, i), (x2, y2, i2) in zip(first, again, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(i, i2)
    assert torch.cat([y for _, y, _ in first]).sum() == 18
    # A new epoch makes new pseudo-fakes of the same crops (and shuffles anew); another seed too.
    ds = dataset(tiny)
    assert not np.array_equal(ds.make(0, 0).fake, ds.make(0, 1).fake)
    later = epoch_batches(ds, 1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, later, strict=True))
    other = epoch_batches(dataset(tiny, seed=1), 0, seed=1)
    assert not np.array_equal(dataset(tiny, seed=1).make(0, 0).fake, ds.make(0, 0).fake)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_loaders_serve_the_pseudo_fakes_of_their_epoch(tiny: Path) -> None:
    # The epoch reaches the dataset before the worker processes copy it: same batches with and without.
    ds = dataset(tiny)
    in_process = epoch_batches(ds, 2)
    with_worker = epoch_batches(dataset(tiny), 2, workers=1)
    for a, b in zip(in_process, with_worker, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    real_rows = ds.real_rows_for(2)
    served = {int(i): x for images, _, index in in_process for x, i in zip(images, index, strict=True)}
    for j in (0, 9, 17):
        np.testing.assert_array_equal(served[18 + j].numpy(), ds.make(int(real_rows[j]), 2).fake)


def test_each_real_crop_sits_next_to_its_pseudo_fake(tiny: Path) -> None:
    ds = dataset(tiny)
    loader = shuffled_loader(ds, 8, Collate(torch.stack), seed=0, num_workers=0)
    loader.sampler.set_epoch(3)
    order = list(loader.sampler)
    assert sorted(order) == list(range(len(ds)))
    position = {item: k for k, item in enumerate(order)}
    for j, row in enumerate(ds.real_rows_for(3)):
        assert position[18 + j] == position[int(row)] + 1


def test_a_ratio_below_one_draws_other_reals_each_epoch_and_mixing_keeps_the_manifest_fakes(tiny: Path) -> None:
    ds = dataset(tiny, ratio=0.5, manifest_fakes=True)
    assert ds.n_rows == 36 and int((ds.labels == 1).sum()) == 18  # the manifest's FaceSwap rows are kept
    assert ds.n_pseudo == 9 and len(ds) == 45
    epochs = [set(ds.real_rows_for(e).tolist()) for e in range(3)]
    assert all(len(s) == 9 and s <= set(ds.real_rows.tolist()) for s in epochs)
    assert epochs[0] != epochs[1]
    assert [ds[i][1] for i in range(36, 45)] == [1.0] * 9


def test_real_only_training_runs_end_to_end_without_the_feature_cache(tiny: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny, tmp_path / "run", tmp_path / "cache", epochs=2, seed=3).to_dict()
    config["data"]["pseudo_fakes"] = {"kind": "sbi"}
    config = TrainConfig.parse(config)
    info = train(config, progress=False)
    record = info.record.to_json()
    assert record["pseudo_fakes"] == {
        "kind": "sbi",
        "ratio": 1.0,
        "manifest_fakes": False,
        "real_rows": 18,
        "per_epoch": 18,
        "face_geometry": {"landmarks": 6, "face_box": 6, "crop_centre": 6},
        "examples": "sbi_examples.png",
    }
    assert record["data"]["train"]["rows_by_manipulation"] == {"real": 18}
    assert record["steps"] == 10  # (18 reals + 18 pseudo-fakes) / batch 8 -> 5 steps, 2 epochs
    # A cached feature stands for a fixed image: the linear probe trained on images instead.
    assert record["feature_cache"] is None and not (tmp_path / "cache").exists()
    with Image.open(info.run_dir / "sbi_examples.png") as figure:
        assert figure.format == "PNG" and figure.height > figure.width / 2
    log = (info.run_dir / "train.log").read_text()
    assert "pseudo-fakes (sbi): 18 per epoch" in log and "from the face box's ellipse for 6" in log
    assert json.loads((info.run_dir / "run.json").read_text())["pseudo_fakes"]["examples"] == "sbi_examples.png"


@pytest.mark.parametrize(
    ("pseudo_fakes", "message"),
    [
        ({"kind": "nope"}, r"data\.pseudo_fakes\.kind: unknown pseudo-fake kind 'nope'; available: sbi"),
        ({"kind": "sbi", "ratio": 0}, r"data\.pseudo_fakes\.ratio: Input should be greater than 0"),
        ({"kind": "sbi", "ratio": 1.5}, r"data\.pseudo_fakes\.ratio: Input should be less than or equal to 1"),
        ({"kind": "sbi", "ratios": 1}, r"data\.pseudo_fakes\.ratios: unknown key"),
        ({"ratio": 1}, r"data\.pseudo_fakes\.kind: Field required"),
    ],
)
def test_bad_pseudo_fake_configs_are_one_line_errors(tiny: Path, pseudo_fakes: dict, message: str) -> None:
    with pytest.raises(CrossfakeError, match=message) as e:
        TrainConfig.parse(
            {"method": {"name": "linear_probe", "backbone": "tiny"},
             "data": {"manifest": str(tiny), "pseudo_fakes": pseudo_fakes}},
            where="cfg.yaml",
        )
    assert "\n" not in str(e.value) and str(e.value).startswith("cfg.yaml is invalid")


def test_pseudo_fakes_need_real_training_rows(tiny: Path) -> None:
    df = read_manifest(tiny)
    df.loc[df["split"] == "train", "label"] = 1
    data = TrainConfig.parse(
        {"method": {"name": "linear_probe", "backbone": "tiny"},
         "data": {"manifest": str(tiny), "pseudo_fakes": {"kind": "sbi"}}}
    ).data
    with pytest.raises(CrossfakeError, match="split 'train' has no real rows to make pseudo-fakes from"):
        training_rows(df, data, seed=0)
    mixed = data.model_copy(update={"pseudo_fakes": PseudoFakeConfig(kind="sbi", manifest_fakes=True)})
    rows, _ = training_rows(df, mixed, seed=0)
    with pytest.raises(CrossfakeError, match="makes fakes from the real training crops, but the training rows"):
        PseudoFakeDataset(rows, pixels, mixed.pseudo_fakes, 0)



def test_a_face_region_outside_the_crop_falls_back_to_the_default_face() -> None:
    _, mask = sbi.self_blend(textured_crop(), LANDMARKS - 500, np.random.default_rng(0))
    assert mask.max() > 0 and mask[SIZE // 2, SIZE // 2] > 0
