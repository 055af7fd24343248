"""The published embetter finetuner designs written plainly in PyTorch: the yardsticks of the benchmark suite.

FeedForward: Linear -> sigmoid (the embedding) -> Linear -> cross-entropy,
Adam, a fixed number of epochs, optionally minibatches reshuffled every epoch.
Contrastive: one shared Linear; every epoch each row is paired with one row of
its own label (target cosine 1) and n_neg rows of other labels (target 0), the
pairs' cosine similarity is fitted by mean squared error with Adam. These are
the same designs libembetter implements, so any speed difference is the
implementation's, not the algorithm's.
"""
import numpy as np
import torch
from torch import nn


class _FeedForwardNet(nn.Module):
    def __init__(self, n_features, hidden_dim, n_classes):
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden_dim)
        self.output = nn.Linear(hidden_dim, n_classes)

    def embed(self, x):
        return torch.sigmoid(self.hidden(x))

    def forward(self, x):
        return self.output(self.embed(x))


class TorchFeedForward:
    def __init__(self, hidden_dim=50, n_epochs=500, learning_rate=0.01, batch_size=None, seed=0):
        self.hidden_dim = hidden_dim
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X, y):
        torch.manual_seed(self.seed)
        self.classes_, labels = np.unique(y, return_inverse=True)
        X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        labels = torch.from_numpy(labels.astype(np.int64))
        self.net = _FeedForwardNet(X.shape[1], self.hidden_dim, len(self.classes_))
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.learning_rate)
        loss_fn = nn.CrossEntropyLoss()
        n = X.shape[0]
        batch = n if self.batch_size is None else self.batch_size
        for _ in range(self.n_epochs):
            order = torch.randperm(n) if batch < n else None
            for start in range(0, n, batch):
                if order is None:
                    xb, yb = X, labels
                else:
                    rows = order[start:start + batch]
                    xb, yb = X[rows], labels[rows]
                optimiser.zero_grad()
                loss = loss_fn(self.net(xb), yb)
                loss.backward()
                optimiser.step()
        return self

    def transform(self, X):
        with torch.no_grad():
            return self.net.embed(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()


class TorchContrastive:
    def __init__(self, hidden_dim=None, n_neg=3, n_epochs=20, learning_rate=0.001, seed=0):
        self.hidden_dim = hidden_dim
        self.n_neg = n_neg
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.seed = seed

    def _draw_pairs(self, labels, rng):
        """Per row: one positive (another row of its label, itself when alone) and n_neg negatives."""
        n = len(labels)
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.searchsorted(sorted_labels, labels, side="left")
        lengths = np.searchsorted(sorted_labels, labels, side="right") - starts
        rows = np.arange(n)
        # Uniform over the label's other rows: draw among length-1 slots, the row's own slot maps to the last.
        slot = (rng.random(n) * np.maximum(lengths - 1, 1)).astype(np.int64)
        positive = order[starts + slot]
        positive = np.where(positive == rows, order[starts + lengths - 1], positive)
        positive = np.where(lengths >= 2, positive, rows)
        others = n - lengths
        draws = (rng.random((n, self.n_neg)) * others[:, None]).astype(np.int64)
        negative = order[np.where(draws < starts[:, None], draws, draws + lengths[:, None])]
        left = np.concatenate([rows, np.repeat(rows, self.n_neg)])
        right = np.concatenate([positive, negative.ravel()])
        target = np.concatenate([np.ones(n), np.zeros(n * self.n_neg)]).astype(np.float32)
        return torch.from_numpy(left), torch.from_numpy(right), torch.from_numpy(target)

    def fit(self, X, y):
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        _, labels = np.unique(y, return_inverse=True)
        X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        width = X.shape[1] if self.hidden_dim is None else self.hidden_dim
        self.layer = nn.Linear(X.shape[1], width)
        optimiser = torch.optim.Adam(self.layer.parameters(), lr=self.learning_rate)
        loss_fn = nn.MSELoss()
        for _ in range(self.n_epochs):
            left, right, target = self._draw_pairs(labels, rng)
            optimiser.zero_grad()
            similarity = nn.functional.cosine_similarity(self.layer(X[left]), self.layer(X[right]))
            loss = loss_fn(similarity, target)
            loss.backward()
            optimiser.step()
        return self

    def transform(self, X):
        with torch.no_grad():
            return self.layer(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
