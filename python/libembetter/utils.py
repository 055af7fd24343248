"""Small helpers around embedding pipelines: distances to anchors, batching, a disk cache."""
from itertools import islice

import numpy as np
from sklearn.metrics import pairwise_distances


def calc_distances(inputs, anchors, pipeline, anchor_pipeline=None, metric="cosine", aggregate=np.max, n_jobs=None):
    """Distance of every input to a set of anchors, aggregated over the anchors.

    inputs and anchors are embedded with pipeline.transform (anchors with
    anchor_pipeline instead when given), distances come from
    sklearn.metrics.pairwise_distances with the given metric ("cosine",
    "euclidean", "manhattan", ...), and aggregate (any numpy reduction taking
    axis=1, e.g. np.max or np.mean) reduces the n_inputs x n_anchors matrix
    to one number per input.
    """
    embedded_inputs = pipeline.transform(inputs)
    embedded_anchors = (anchor_pipeline or pipeline).transform(anchors)
    distances = pairwise_distances(embedded_inputs, embedded_anchors, metric=metric, n_jobs=n_jobs)
    return aggregate(distances, axis=1)


def batched(iterable, n=64):
    """Yield lists of n consecutive items of iterable (the last one may be shorter)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    iterator = iter(iterable)
    while True:
        batch = list(islice(iterator, n))
        if not batch:
            return
        yield batch


def cached(name, pipeline):
    """Make pipeline.transform look results up in a diskcache directory `name` first.

    Each input item is a cache key (so items must be hashable, e.g. strings),
    only the items not cached yet are passed to the original transform (in one
    call, each distinct item once), their results are stored, and the output
    keeps the order of the input. Returns the same pipeline object, patched.
    """
    from diskcache import Cache

    cache = Cache(name)
    original_transform = pipeline.transform

    def transform_with_cache(X, y=None):
        items = list(X)
        found = {}
        for item in items:
            if item not in found:
                value = cache.get(item, default=None)
                if value is not None:
                    found[item] = value
        missing = list(dict.fromkeys(item for item in items if item not in found))
        if missing:
            computed = original_transform(missing)
            if len(computed) != len(missing):
                raise ValueError(
                    f"the wrapped transform returned {len(computed)} rows for {len(missing)} inputs"
                )
            for item, value in zip(missing, computed):
                cache.set(item, value)
                found[item] = value
        return np.array([found[item] for item in items])

    transform_with_cache.cache = cache
    pipeline.transform = transform_with_cache
    return pipeline
