"""Model metrics: identification (top-1, confusion matrix, the paper's entropy filter, Fig. 2D) and aberration
screening (PR-AUC and ROC-AUC of aberrant against normal chromosomes, their curves)."""

from __future__ import annotations

import numpy as np

from .cytogenetics.classes import CHROMOSOMES


def prediction_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = len(CHROMOSOMES)) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def entropy_curve(probabilities: np.ndarray, labels: np.ndarray, num_cutoffs: int = 200) -> dict[str, list[float]]:
    """Accuracy and fraction of crops kept when predictions above an entropy cutoff are set aside."""
    entropy = prediction_entropy(probabilities)
    correct = probabilities.argmax(-1) == labels
    order = np.argsort(entropy)
    kept = np.arange(1, len(order) + 1)
    cumulative_accuracy = np.cumsum(correct[order]) / kept
    # Cutoffs at evenly spaced quantiles of the observed entropies.
    positions = np.unique(np.linspace(0, len(order) - 1, num_cutoffs).round().astype(int))
    return {
        "cutoff": entropy[order][positions].tolist(),
        "accuracy": cumulative_accuracy[positions].tolist(),
        "retained": (kept[positions] / len(order)).tolist(),
    }


def accuracy_at_retention(curve: dict[str, list[float]], retained: float = 0.9) -> float:
    """Accuracy of the most confident `retained` fraction of predictions."""
    fractions = np.asarray(curve["retained"])
    index = int(np.searchsorted(fractions, retained))
    return float(np.asarray(curve["accuracy"])[min(index, len(fractions) - 1)])


def plot_confusion(matrix: np.ndarray, path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(8, 7))
    shown = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(CHROMOSOMES)), CHROMOSOMES, fontsize=7)
    axis.set_yticks(range(len(CHROMOSOMES)), CHROMOSOMES, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(shown, ax=axis, label="fraction of true class")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_entropy_curve(curves: dict[str, dict[str, list[float]]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy_axis, retained_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        cutoffs = np.maximum(curve["cutoff"], 1e-12)
        accuracy_axis.semilogx(cutoffs, curve["accuracy"], label=name)
        retained_axis.semilogx(cutoffs, curve["retained"], label=name)
    accuracy_axis.set(xlabel="entropy cutoff (nats)", ylabel="top-1 accuracy of kept crops")
    retained_axis.set(xlabel="entropy cutoff (nats)", ylabel="fraction of crops kept")
    accuracy_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def aberration_aucs(is_aberrant: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """PR-AUC (average precision) and ROC-AUC of `scores` ranking aberrant (1) above normal (0) chromosomes;
    NaN where one class is absent (a fold too small to hold both)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    is_aberrant = np.asarray(is_aberrant).astype(int)
    if is_aberrant.min() == is_aberrant.max():
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision_score(is_aberrant, scores)),
            "roc_auc": float(roc_auc_score(is_aberrant, scores))}


def plot_aberration_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path, title: str = "") -> None:
    """Precision-recall and ROC curves side by side, one line per {name: (is_aberrant, scores)}, AUCs in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    figure, (pr_axis, roc_axis) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (is_aberrant, scores) in curves.items():
        aucs = aberration_aucs(is_aberrant, scores)
        precision, recall, _ = precision_recall_curve(is_aberrant, scores)
        false_positive, true_positive, _ = roc_curve(is_aberrant, scores)
        pr_axis.plot(recall, precision, label=f"{name} (PR-AUC {aucs['pr_auc']:.3f})")
        roc_axis.plot(false_positive, true_positive, label=f"{name} (ROC-AUC {aucs['roc_auc']:.3f})")
    pr_axis.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    roc_axis.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    for axis in (pr_axis, roc_axis):
        axis.legend(fontsize=7, loc="lower left" if axis is pr_axis else "lower right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

