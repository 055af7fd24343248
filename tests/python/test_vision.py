"""ColorHistogramEncoder against embetter's numpy definition; ImageLoader and the path-to-histogram pipeline."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.pipeline import make_pipeline

from libembetter.grab import ColumnGrabber
from libembetter.vision import ColorHistogramEncoder, ImageLoader


def numpy_histogram(image, n_buckets):
    """embetter's definition: np.histogram per channel over np.linspace(0, 255, n_buckets + 1)."""
    array = np.asarray(image)
    edges = np.linspace(0, 255, n_buckets + 1)
    return np.concatenate([np.histogram(array[:, :, c].flatten(), bins=edges)[0] for c in range(3)])


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    shapes = [(1, 1), (7, 5), (32, 48), (3, 200)]
    result = [rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8) for h, w in shapes]
    # Every value, so every bucket edge is exercised.
    result.append(np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 85)], axis=1)
                  .astype(np.uint8).reshape(16, 16, 3))
    return result


@pytest.mark.parametrize("n_buckets", [1, 2, 3, 5, 7, 10, 16, 17, 64, 100, 128, 200, 255, 256])
def test_equals_numpy_histograms(images, n_buckets):
    got = ColorHistogramEncoder(n_buckets=n_buckets).transform(images)
    expected = np.array([numpy_histogram(image, n_buckets) for image in images])
    assert got.shape == (len(images), 3 * n_buckets) and got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_default_is_256_buckets_and_pil_images_equal_arrays(images):
    pil = [Image.fromarray(image) for image in images]
    got = ColorHistogramEncoder().transform(pil)
    assert got.shape[1] == 768
    assert np.array_equal(got, ColorHistogramEncoder().transform(images))


def test_strided_views_and_stacks(images):
    big = images[2]
    view = big[::2, 1::3]  # rows and columns skipped: not contiguous
    assert np.array_equal(ColorHistogramEncoder(8).transform([view])[0], numpy_histogram(view, 8))
    stack = np.stack([images[1], images[1][::-1]])
    got = ColorHistogramEncoder(8).transform(stack)
    assert np.array_equal(got[0], got[1])


def test_rgba_and_greyscale_are_converted(images):
    rgb = images[2]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 17, np.uint8)], axis=2)
    encoder = ColorHistogramEncoder(16)
    expected = encoder.transform([rgb])
    assert np.array_equal(encoder.transform([rgba]), expected)
    assert np.array_equal(encoder.transform([Image.fromarray(rgba, "RGBA")]), expected)
    grey = rgb[:, :, 0]
    from_array = encoder.transform([grey])[0]
    from_pil = encoder.transform([Image.fromarray(grey, "L")])[0]
    assert np.array_equal(from_array, from_pil)
    assert np.array_equal(from_array[:16], from_array[16:32]) and np.array_equal(from_array[:16], from_array[32:])
    assert np.array_equal(from_array[:16], np.histogram(grey, bins=np.linspace(0, 255, 17))[0])


@pytest.mark.parametrize(
    "batch, error, needle",
    [
        ([np.zeros((4, 4, 3), np.float64)], TypeError, "image 0 has dtype float64"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.int32)], TypeError, "image 1 has dtype int32"),
        ([np.zeros((4, 4, 2), np.uint8)], ValueError, "image 0 has shape (4, 4, 2)"),
        ([np.zeros((4, 4, 3, 1), np.uint8)], ValueError, "image 0 has shape"),
        ([np.zeros((0, 4, 3), np.uint8)], ValueError, "image 0 is 4 x 0 pixels"),
        ([np.zeros((4, 0, 3), np.uint8)], ValueError, "image 0 is 0 x 4 pixels"),
        ([None], TypeError, "image 0 is None"),
        (["not an image"], TypeError, "image 0 is a str"),
        (np.zeros((4, 4, 3), np.uint8), TypeError, "single image"),
        ([], ValueError, "0 images"),
    ],
)
def test_bad_images_raise_clear_errors(batch, error, needle):
    with pytest.raises(error) as raised:
        ColorHistogramEncoder().transform(batch)
    assert needle in str(raised.value)


@pytest.mark.parametrize("n_buckets, error", [(0, ValueError), (257, ValueError), (-1, ValueError),
                                              (2.5, TypeError), (True, TypeError)])
def test_bad_bucket_counts(n_buckets, error):
    with pytest.raises(error, match="n_buckets"):
        ColorHistogramEncoder(n_buckets=n_buckets).transform([np.zeros((2, 2, 3), np.uint8)])


def test_pipeline_from_a_dataframe_of_paths(tmp_path, images):
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"image_{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    # A palette image and a greyscale one, which ImageLoader converts to RGB.
    Image.fromarray(images[2]).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(images[2][:, :, 1]).save(tmp_path / "grey.png")
    paths += [str(tmp_path / "palette.png"), str(tmp_path / "grey.png")]
    frame = pd.DataFrame({"path": paths, "label": range(len(paths))})
    pipeline = make_pipeline(ColumnGrabber("path"), ImageLoader(), ColorHistogramEncoder(n_buckets=32))
    got = pipeline.fit_transform(frame)
    expected = np.array([numpy_histogram(Image.open(p).convert("RGB"), 32) for p in paths])
    assert np.array_equal(got, expected)
    assert np.array_equal(got[: len(images)], np.array([numpy_histogram(im, 32) for im in images]))


def test_image_loader_outputs_and_errors(tmp_path, images):
    path = tmp_path / "a.png"
    Image.fromarray(images[2]).save(path)
    arrays = ImageLoader(out="numpy").transform([str(path)])
    assert arrays.shape == (1, 32, 48, 3) and arrays.dtype == np.uint8 and np.array_equal(arrays[0], images[2])
    grey = ImageLoader(convert="L", out="pil").transform([path])[0]
    assert grey.mode == "L" and grey.size == (48, 32)
    assert ImageLoader(convert=None).transform([path])[0].mode == "RGB"
    with pytest.raises(FileNotFoundError, match="image 1: no file"):
        ImageLoader().transform([path, tmp_path / "missing.png"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="image 0 .* cannot be read"):
        ImageLoader().transform([broken])
    with pytest.raises(ValueError, match="out"):
        ImageLoader(out="tensor").transform([path])
    with pytest.raises(TypeError, match="single path"):
        ImageLoader().transform(str(path))


def write_pngs(tmp_path, arrays_and_modes):
    paths = []
    for i, (array, mode) in enumerate(arrays_and_modes):
        path = tmp_path / f"picture_{i}.png"
        image = Image.fromarray(array)
        (image.convert(mode) if mode else image).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("convert", ["RGB", "L", "RGBA", None])
def test_numpy_output_is_one_stacked_array_as_embetter_09_gives(tmp_path, convert):
    """The same array as PyPI embetter 0.9.1's ImageLoader(out="numpy") for the same files (installed package)."""
    from embetter.vision import ImageLoader as EmbetterImageLoader

    rng = np.random.RandomState(3)
    pictures = [rng.randint(0, 256, size=(6, 9, 3)).astype(np.uint8) for _ in range(4)]
    # RGB, palette (P), RGBA and greyscale files: convert=None keeps a mode, except that P becomes RGB.
    modes = [None, "P", "RGBA", "L"] if convert is not None else [None, "P", None, "P"]
    paths = write_pngs(tmp_path, zip(pictures, modes))
    frame = pd.DataFrame({"path": paths})
    ours = ImageLoader(convert=convert, out="numpy").fit(frame["path"]).transform(frame["path"])
    theirs = EmbetterImageLoader(convert=convert, out="numpy").fit(paths).transform(paths)
    assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.shape[:3] == (4, 6, 9) and ours.ndim == (3 if convert == "L" else 4)
    assert np.array_equal(ours, theirs)
    pil = ImageLoader(convert=convert).transform(paths)
    assert np.array_equal(np.stack([np.asarray(image) for image in pil]), ours)
    theirs_pil = EmbetterImageLoader(convert=convert).transform(paths)
    assert [image.mode for image in pil] == [image.mode for image in theirs_pil]
    if convert == "RGB":  # the stack feeds ColorHistogramEncoder as the list of images does
        encoder = ColorHistogramEncoder(n_buckets=4)
        assert np.array_equal(encoder.transform(ours), encoder.transform(pil))


def test_numpy_output_needs_images_of_one_size(tmp_path):
    rng = np.random.RandomState(4)
    paths = write_pngs(tmp_path, [(rng.randint(0, 256, size=(6, 9, 3)).astype(np.uint8), None),
                                  (rng.randint(0, 256, size=(6, 9, 3)).astype(np.uint8), None),
                                  (rng.randint(0, 256, size=(5, 9, 3)).astype(np.uint8), None)])
    with pytest.raises(ValueError, match=r"image 2 is 9 x 5 pixels in mode RGB, image 0 is 9 x 6 .*out='pil'"):
        ImageLoader(out="numpy").transform(paths)
    assert len(ImageLoader(out="pil").transform(paths)) == 3
    # convert=None keeps each file's mode, so a grey file among RGB ones cannot be stacked either.
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match="image 1 is 9 x 6 pixels in mode L, image 0 is 9 x 6 in mode RGB"):
        ImageLoader(convert=None, out="numpy").transform([paths[0], str(tmp_path / "grey.png")])
    assert ImageLoader(out="numpy").transform([paths[0], str(tmp_path / "grey.png")]).shape == (2, 6, 9, 3)


def test_out_is_checked_in_fit_as_in_embetter_09():
    with pytest.raises(ValueError, match="out is 'tensor'; it must be 'pil' or 'numpy'"):
        ImageLoader(out="tensor").fit(["a.png"])
