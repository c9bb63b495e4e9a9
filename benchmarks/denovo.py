"""De novo (zero-shot) aberration detection with the identity model's index (`train/build_denovo_index.py`): score
every aberration, check real structural abnormalities, and draw the UMAP of normal vs aberrant chromosomes (Figs 3A
and 4D).

    python train/make_aberration_data.py --all     # once: the aberration datasets scored below
    python benchmarks/denovo.py

1. Fig. 4D: every catalogue derivative's held-out dataset (real normal vs synthesized aberrant copies of the target
   chromosome), scored by the distance to the N-th nearest normal of the predicted class: PR-AUC and ROC-AUC, with
   no aberrant example ever used.
2. Real check: chromosomes of the pair named by each `structural` metaphase against the same chromosomes in normal
   held-out metaphases (the box's annotated class picks the chromosomes; the model's prediction picks the index class).
3. UMAP (umap-learn) of normal and aberrant chromosomes 5, 9 and 22.
Writes benchmarks/results/denovo.json, denovo_pr.png and umap_aberrations.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from karyohf.aberrations import DeNovoIndex, label_names
from karyohf.synthesis import load_aberration_dataset
from karyohf.crops import metaphase_crops
from karyohf.cytogenetics import CATALOGUE, CHROMOSOMES
from karyohf.data import load_metaphases, split_metaphases
from karyohf.identification import ChromosomeIdentifier
from karyohf.metrics import aberration_aucs, plot_aberration_curves


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identity", default="checkpoints/topvit-chromid")
    parser.add_argument("--data-dir", type=Path, default=Path("runs/aberrations"))
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--normal-metaphases", type=int, default=100, help="normal held-out metaphases for the real check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def model_inputs(identifier, crops: list[dict]) -> list:
    """Crop dicts as the identity model reads them (rescaled per cell if it was trained so)."""
    return identifier.model_inputs([c["image"] for c in crops], [c["cell_scale"] for c in crops])


def score_aberrations(identifier, index: DeNovoIndex, data_dir: Path):
    """Fig. 4D: de novo scores of every derivative's held-out dataset; also returns embeddings for the UMAP."""
    results, curves, embedded = {}, {}, {}
    for key, aberration in CATALOGUE.items():
        for target in aberration.chromosomes:
            name = label_names(key, target)[1]
            dataset = load_aberration_dataset(target, key, "validation", data_dir)
            found = identifier(identifier.model_inputs(dataset["image"], dataset["cell_scale"]))
            scores = index.score(found.embeddings, found.predictions)
            is_aberrant = np.asarray(dataset["label"]) == 1
            results[name] = {"chromosome": target, "normal": int((~is_aberrant).sum()),
                             "aberrant": int(is_aberrant.sum()), **aberration_aucs(is_aberrant, scores)}
            curves[f"{name} on {target}"] = (is_aberrant, scores)
            embedded[name] = (target, found.embeddings, is_aberrant)
            print(f"{name} on {target}: PR-AUC {results[name]['pr_auc']:.3f}, ROC-AUC {results[name]['roc_auc']:.3f}")
    return results, curves, embedded


def real_structural_check(identifier, index: DeNovoIndex, args) -> dict:
    """Chromosomes of the named pairs in structural metaphases vs the same classes in normal held-out metaphases."""
    splits = split_metaphases(load_metaphases())
    structural = [m.filter(lambda s: s == "structural", input_columns="karyotype_status") for m in splits.values()]
    normal = splits["validation"].filter(lambda s: s == "normal", input_columns="karyotype_status")
    normal = normal.shuffle(seed=args.seed).select(range(min(args.normal_metaphases, len(normal))))
    pairs_of = {}
    for part in structural:
        for image_id, pairs in zip(part["image_id"], part["abnormal_pairs"]):
            pairs_of[image_id] = {CHROMOSOMES.index(p.strip()) for p in str(pairs).split(",") if p.strip()}
    involved = set().union(*pairs_of.values())

    def scored(metaphases, keep):
        crops = [c for m in metaphases for c in metaphase_crops(m) if keep(c)]
        found = identifier(model_inputs(identifier, crops))
        return np.array([c["chromosome"] for c in crops]), index.score(found.embeddings, found.predictions)

    abnormal_classes, abnormal_scores = scored(structural, lambda c: c["chromosome"] in pairs_of[c["cell_id"]])
    normal_classes, normal_scores = scored([normal], lambda c: c["chromosome"] in involved)
    per_class = {}
    for label in sorted(involved):
        a, n = abnormal_scores[abnormal_classes == label], normal_scores[normal_classes == label]
        if len(a) and len(n):
            per_class[CHROMOSOMES[label]] = {
                "structural_chromosomes": len(a), "normal_chromosomes": len(n),
                "median_score_structural": float(np.median(a)), "median_score_normal": float(np.median(n)),
                **aberration_aucs(np.r_[np.ones(len(a)), np.zeros(len(n))], np.r_[a, n])}
    overall = aberration_aucs(np.r_[np.ones(len(abnormal_scores)), np.zeros(len(normal_scores))],
                             np.r_[abnormal_scores, normal_scores])
    return {"structural_metaphases": len(pairs_of), "normal_metaphases": len(normal),
            "structural_chromosomes": len(abnormal_scores), "normal_chromosomes": len(normal_scores),
            "overall": overall, "per_class": per_class,
            "note": "image-level labels: only one copy of a named pair is usually aberrant, so the expected AUC is "
                    "well below 1 even for a perfect chromosome-level detector"}


def plot_umap(embedded: dict, path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap

    chosen = [name for name in ("del(5q)", "der(9)t(9;22)", "der(22)t(9;22)") if name in embedded]
    vectors = np.concatenate([embedded[name][1] for name in chosen])
    points = umap.UMAP(n_neighbors=30, min_dist=0.2, random_state=seed).fit_transform(vectors)
    figure, axis = plt.subplots(figsize=(7, 6))
    start = 0
    for name, colour in zip(chosen, ("tab:blue", "tab:orange", "tab:green")):
        target, vectors_of, is_aberrant = embedded[name]
        part = points[start : start + len(vectors_of)]
        start += len(vectors_of)
        axis.scatter(*part[~is_aberrant].T, s=8, color=colour, alpha=0.35, label=f"chr {target} normal")
        axis.scatter(*part[is_aberrant].T, s=14, color=colour, marker="x", label=f"{name}")
    axis.legend(fontsize=8)
    axis.set(title="UMAP of topvit-chromid embeddings: held-out normal vs aberrant chromosomes 5, 9, 22",
             xticks=[], yticks=[])
    axis.title.set_fontsize(9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    identifier = ChromosomeIdentifier.from_pretrained(args.identity)
    index = DeNovoIndex.from_pretrained(args.identity)
    results, curves, embedded = score_aberrations(identifier, index, args.data_dir)
    plot_aberration_curves(curves, args.output_dir / "denovo_pr.png",
                          title=f"De novo detection, no aberrant training example (distance to the {index.neighbours}th "
                                "nearest normal of the predicted class)")
    real = real_structural_check(identifier, index, args)
    print(json.dumps(real["overall"]), json.dumps(real["per_class"], indent=1))
    plot_umap(embedded, args.output_dir / "umap_aberrations.png", args.seed)
    output = {"identity": args.identity, "neighbours": index.neighbours, "index_size": len(index.classes),
              "synthesized_validation": results, "real_structural": real}
    (args.output_dir / "denovo.json").write_text(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
