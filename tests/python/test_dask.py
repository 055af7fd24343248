"""A fitted pipeline transforms on a dask.distributed cluster of two worker processes exactly as it does locally.

The pipeline reaches the workers by pickle, i.e. as the C model format inside
the pickle (FinetunerBase.__getstate__); the cluster listens on loopback only
and has no dashboard. See docs/scale-out.md.
"""
import os
import pickle

import dask.bag
import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.pipeline import make_pipeline

from libembetter.finetune import ContrastiveFinetuner, FeedForwardFinetuner
from libembetter.text import HashingEncoder

# distributed 2022.12 calls a tornado API that newer tornado deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:make_current is deprecated:DeprecationWarning")

FORTUNES = "/usr/share/games/fortunes"
CATEGORIES = ("computers", "science", "food")


def fortunes(category):
    with open(os.path.join(FORTUNES, category), encoding="utf-8") as file:
        return [text.strip() for text in file.read().split("\n%\n") if text.strip()]


@pytest.fixture(scope="module")
def labelled_texts():
    texts, labels = [], []
    for category in CATEGORIES:
        found = fortunes(category)[:300]
        texts += found
        labels += [category] * len(found)
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1",
        scheduler_port=0, silence_logs=40,
    )
    with cluster, Client(cluster) as connected:
        yield connected


def transform_partition(texts, pipeline):
    """One partition's embedding, each row tagged with the worker process that computed it."""
    rows = pipeline.transform(list(texts))
    return [(os.getpid(), row) for row in rows]


@pytest.mark.parametrize(
    "finetuner",
    [FeedForwardFinetuner(hidden_dim=16, n_epochs=40, random_state=0),
     ContrastiveFinetuner(hidden_dim=16, n_epochs=5, random_state=0)],
    ids=["feedforward", "contrastive"],
)
def test_transform_on_two_worker_processes_equals_the_local_transform(finetuner, labelled_texts, client):
    texts, labels = labelled_texts
    pipeline = make_pipeline(HashingEncoder(n_features=512), finetuner).fit(texts, labels)
    assert b"EMBETTER" in pickle.dumps(pipeline)  # the C model travels in its own format

    bag = dask.bag.from_sequence(texts, npartitions=8)
    tagged = bag.map_partitions(transform_partition, pipeline).compute()

    worker_pids = {pid for pid, _ in tagged}
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    distributed_rows = np.stack([row for _, row in tagged])
    assert distributed_rows.dtype == np.float32 and distributed_rows.shape == (len(texts), 16)
    # The same batches transformed here give the very same bits: nothing is lost on the way to the workers.
    partitions = [list(texts[start:start + size]) for start, size in partition_bounds(bag, texts)]
    local_rows = np.concatenate([pipeline.transform(partition) for partition in partitions])
    np.testing.assert_array_equal(distributed_rows, local_rows)
    # One call over all texts may differ in the last bits: BLAS sums a row's products in an order that can
    # depend on how many rows the call has (its edge kernels), so batch boundaries move rounding.
    np.testing.assert_allclose(distributed_rows, pipeline.transform(texts), rtol=0, atol=1e-6)


def partition_bounds(bag, texts):
    """(start, length) of each partition of bag, in order."""
    lengths = bag.map_partitions(lambda part: [len(list(part))]).compute()
    assert sum(lengths) == len(texts)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return list(zip(starts.tolist(), lengths))
