"""Image steps: ImageLoader reads image files with Pillow; ColorHistogramEncoder embeds images in C.

make_pipeline(ColumnGrabber("path"), ImageLoader(), ColorHistogramEncoder())
turns a DataFrame of image paths into colour histograms.
"""
import os
from typing import Any

import numpy as np

from libembetter._native import ffi, lib
from libembetter.base import EmbetterBase
from libembetter.text import NativeEncoder, _one_dimensional, _thread_setting, create_encoder

__all__ = ["ColorHistogramEncoder", "ImageLoader"]

# eb_image is {const uint8_t *pixels; size_t width, height, channels, stride;}.
_IMAGE_DTYPE = np.dtype(
    [("pixels", np.uintp), ("width", np.uintp), ("height", np.uintp), ("channels", np.uintp), ("stride", np.uintp)]
)


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of the vision steps
        raise ImportError("libembetter.vision needs Pillow; install it (Debian: apt-get install python3-pil)") from None
    return Image


def _is_pil_image(item):
    Image = _pillow()
    return isinstance(item, Image.Image)


def _rgb_array(position, item):
    """item as an H x W x 3 uint8 array whose pixels C can read (channels adjacent, rows strided)."""
    if _is_pil_image(item):
        if item.mode != "RGB":
            item = item.convert("RGB")  # RGBA drops alpha; L, P, CMYK, ... map to RGB
        array = np.asarray(item)
    elif isinstance(item, np.ndarray):
        array = item
        if array.dtype != np.uint8:
            raise TypeError(
                f"image {position} has dtype {array.dtype}; ColorHistogramEncoder takes uint8 pixels (0..255). "
                "Scale and convert first, e.g. (a * 255).round().astype(np.uint8) for floats in [0, 1]"
            )
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
            grey = array.reshape(array.shape[0], array.shape[1])
            array = np.repeat(grey[:, :, None], 3, axis=2)  # grey counts in all three channels, like Pillow's RGB
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        elif not (array.ndim == 3 and array.shape[2] == 3):
            raise ValueError(
                f"image {position} has shape {array.shape}; expected H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA)"
            )
    elif item is None:
        raise TypeError(f"image {position} is None")
    else:
        raise TypeError(f"image {position} is a {type(item).__name__}; pass PIL images or H x W x 3 uint8 arrays")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image {position} is {array.shape[1]} x {array.shape[0]} pixels; it must have at least one")
    if array.strides[2] != 1 or array.strides[1] != 3 or array.strides[0] < 3 * array.shape[1]:
        array = np.ascontiguousarray(array)
    return array


def _image_batch(X):
    if isinstance(X, np.ndarray) and X.dtype != object and X.ndim == 4:
        items = list(X)  # a stack of equally sized images
    elif isinstance(X, np.ndarray) and X.dtype != object and X.ndim in (2, 3):
        raise TypeError("X is a single image; pass a list of images")
    elif _is_pil_image(X):
        raise TypeError("X is a single image; pass a list of images")
    else:
        items = list(X.to_numpy() if hasattr(X, "to_numpy") else X)
    arrays = [_rgb_array(position, item) for position, item in enumerate(items)]
    descriptors = np.zeros(len(arrays), dtype=_IMAGE_DTYPE)
    for i, array in enumerate(arrays):
        descriptors[i] = (array.ctypes.data, array.shape[1], array.shape[0], 3, array.strides[0])
    return arrays, descriptors


class ColorHistogramEncoder(EmbetterBase):
    """Per-channel colour histograms: n_buckets counts for R, then G, then B.

    The same numbers as embetter's numpy definition, np.histogram of each
    channel with edges np.linspace(0, 255, n_buckets + 1), as float32 counts.

    Parameters:
        n_buckets: buckets per channel, 1..256.
        n_threads: None (automatic) or a fixed thread count for large batches.

    transform takes a list of PIL images (any mode; converted to RGB) or of
    uint8 arrays H x W x 3 (H x W grey and H x W x 4 RGBA are converted too);
    other dtypes raise TypeError.
    """

    def __init__(self, n_buckets=256, n_threads=None):
        self.n_buckets = n_buckets
        self.n_threads = n_threads

    def _encoder(self) -> NativeEncoder:
        n = self.n_buckets
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n_buckets must be a whole number, not {type(n).__name__}")
        if not 1 <= n <= lib.EB_COLOR_HISTOGRAM_MAX_BUCKETS:
            raise ValueError(f"n_buckets is {n}; it must be between 1 and {lib.EB_COLOR_HISTOGRAM_MAX_BUCKETS}")
        return create_encoder("eb_color_histogram_encoder_create", int(n), _thread_setting(self.n_threads), ffi.NULL)

    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """The n x (3 * n_buckets) float32 matrix of pixel counts."""
        encoder = self._encoder()
        arrays, descriptors = _image_batch(X)
        return encoder.encode_images(arrays, descriptors)


def _path_batch(X):
    """The paths of a batch as a list; the same shapes as a batch of texts are accepted."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError("X is a single path; pass a list of paths")
    X = _one_dimensional(X, "paths")
    try:
        paths = list(X)
    except TypeError:
        raise TypeError(f"X must be a list, array or Series of paths, not {type(X).__name__}") from None
    if not paths:
        raise ValueError("the batch holds 0 paths")
    return paths


class ImageLoader(EmbetterBase):
    """Open image files with Pillow.

    Parameters:
        convert: the Pillow mode every image is converted to ("RGB", "L", "RGBA", ...). None applies
            Pillow's own default, as embetter 0.9 does: palette images become RGB (RGBA when they have
            transparency), other images keep their mode.
        out: "pil" for a list of PIL images, "numpy" for one array stacking the images' pixels
            (n x H x W x channels, or n x H x W for one-channel modes such as "L"), as embetter 0.9 gives.
            Stacking needs every image to have the same size (and mode); a batch that does not raises
            ValueError naming the first image that differs: use out="pil" for such batches.
    """

    def __init__(self, convert="RGB", out="pil"):
        self.convert = convert
        self.out = out

    def _check_out(self):
        if self.out not in ("pil", "numpy"):
            raise ValueError(f"out is {self.out!r}; it must be 'pil' or 'numpy'")

    def fit(self, X: Any, y: Any = None) -> "ImageLoader":
        """Checks the parameters (nothing is learned); returns self."""
        self._check_out()
        return self

    def transform(self, X: Any, y: Any = None) -> "list | np.ndarray":
        """The images at the paths in X, in order: a list of PIL images, or one stacked array for out="numpy"."""
        self._check_out()
        Image = _pillow()
        images = []
        for position, path in enumerate(_path_batch(X)):
            if not isinstance(path, (str, bytes, os.PathLike)) and not hasattr(path, "read"):
                raise TypeError(f"image {position} is a {type(path).__name__}; pass paths (str or Path) or open files")
            try:
                with Image.open(path) as opened:
                    # convert also reads the pixels, so the file can be closed here.
                    image = opened.convert(self.convert)
            except FileNotFoundError:
                raise FileNotFoundError(f"image {position}: no file {path!r}") from None
            except (OSError, ValueError) as error:
                raise ValueError(f"image {position} ({path!r}) cannot be read: {error}") from None
            images.append(image)
        if self.out == "pil":
            return images
        return _stacked(images)


def _stacked(images):
    arrays = [np.asarray(image) for image in images]
    for position, (image, array) in enumerate(zip(images, arrays)):
        if array.shape != arrays[0].shape:
            raise ValueError(
                f"image {position} is {image.size[0]} x {image.size[1]} pixels in mode {image.mode}, image 0 is "
                f"{images[0].size[0]} x {images[0].size[1]} in mode {images[0].mode}; out='numpy' stacks the "
                "images into one array, so all must have the same size and mode (resize them, or use out='pil')"
            )
    return np.stack(arrays)
