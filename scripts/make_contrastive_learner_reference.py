"""Record embetter 0.9.1's ContrastiveLearner quality on the fortunes pairs, for test_contrastive_learner.py.

Run in a venv of its own with the reference libraries (never in the test environments: the test needs no
PyTorch):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 embetter==0.9.1 scikit-learn
    /tmp/ref/bin/python scripts/make_contrastive_learner_reference.py
It writes tests/fixtures/contrastive-learner/reference.json: for every seed, the held-out ROC AUC of the
predicted cosine and the 5-NN accuracy of the embedding, and their mean and standard deviation. The pairs,
features and hyper-parameters come from tests/python/pair_quality_data.py, which the test uses too.
0.9's predict() raises TypeError (it hands numpy arrays to torch's CosineSimilarity), so the cosine is
taken from its transform() here, as ours computes it.
"""
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "python"))
import pair_quality_data  # noqa: E402



def reference_learner():
    """embetter 0.9.1's ContrastiveLearner class, from its module file.

    `import embetter.finetune` also imports SbertLearner, which needs sentence-transformers (and with it a
    model download); the learner's own module needs only torch and numpy.
    """
    spec = importlib.util.find_spec("embetter")
    path = Path(list(spec.submodule_search_locations)[0]) / "finetune" / "_constrastive_learn.py"
    module_spec = importlib.util.spec_from_file_location("embetter_contrastive_learn", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ContrastiveLearner


OUTPUT = REPO_ROOT / "tests" / "fixtures" / "contrastive-learner" / "reference.json"


def main():
    ContrastiveLearner = reference_learner()
    data = pair_quality_data.load()
    runs = []
    for seed in pair_quality_data.SEEDS:
        torch.manual_seed(seed)  # the initial weights and the DataLoader's shuffling
        learner = ContrastiveLearner(**pair_quality_data.HYPERPARAMETERS)
        learner.fit(data["X1"], data["X2"], data["similarity"])
        predicted = pair_quality_data.cosine(learner.transform(data["X1_test"]), learner.transform(data["X2_test"]))
        auc, accuracy = pair_quality_data.quality(data, learner.transform, predicted)
        runs.append({"seed": seed, "roc_auc": auc, "knn_accuracy": accuracy})
        print(f"seed {seed}: ROC AUC {auc:.4f}, {pair_quality_data.K_NEIGHBOURS}-NN accuracy {accuracy:.4f}")
    summary = {
        name: {"mean": float(np.mean([run[name] for run in runs])), "std": float(np.std([run[name] for run in runs]))}
        for name in ("roc_auc", "knn_accuracy")
    }
    untrained = pair_quality_data.quality(data, lambda X: X, pair_quality_data.cosine(data["X1_test"], data["X2_test"]))
    record = {
        "what": "embetter 0.9.1 ContrastiveLearner on the fortunes pairs of tests/python/pair_quality_data.py",
        "versions": {name: importlib.metadata.version(name) for name in ("embetter", "torch", "scikit-learn", "numpy")},
        "hyperparameters": pair_quality_data.HYPERPARAMETERS,
        "pairs": {"train": int(len(data["similarity"])), "held_out": int(len(data["similarity_test"]))},
        "input_features": {"roc_auc": untrained[0], "knn_accuracy": untrained[1]},
        "runs": runs,
        "summary": summary,
    }
    OUTPUT.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}: {summary}")


if __name__ == "__main__":
    main()
