"""featurize: fit the TF-IDF representation on train only and transform every split."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.features.vectorizer import make_vectorizer
from sentiment.fileio import atomic_path, deterministic_zip, read_split, write_json
from sentiment.headlines import stage_line
from sentiment.models.trust import save_skops
from sentiment.params import load_params
from sentiment.tracking import log_key_metrics, stage_run


def featurize(splits: dict[str, Path], out_dir: Path, params: dict[str, Any]) -> dict[str, int]:
    """Fit on ``splits["train"]``, save the vectorizer and each split's matrix and labels."""
    vectorizer = make_vectorizer(params)
    texts, labels = read_split(splits["train"])
    matrices = {"train": vectorizer.fit_transform(texts)}
    label_sets = {"train": labels}
    for split in [s for s in splits if s != "train"]:
        texts, label_sets[split] = read_split(splits[split])
        matrices[split] = vectorizer.transform(texts)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_skops(vectorizer, tmp / "vectorizer.skops")
        for split, matrix in matrices.items():
            npz = io.BytesIO()
            sp.save_npz(npz, sp.csr_matrix(matrix))
            (tmp / f"{split}.npz").write_bytes(deterministic_zip(npz.getvalue()))
            np.save(tmp / f"{split}_labels.npy", np.asarray(label_sets[split], dtype=np.int64))
    return {
        "n_features": int(matrices["train"].shape[1]),
        **{f"rows.{s}": int(m.shape[0]) for s, m in matrices.items()},
    }


def main() -> None:
    no_options(__doc__)
    params = load_params("featurize")
    with stage_run("featurize"):
        summary = featurize(paths.SPLITS, paths.FEATURES, params)
        write_json(paths.FEATURIZE_SUMMARY, summary)
        log_key_metrics(summary)
    print(stage_line("featurize"))


if __name__ == "__main__":
    entry_point(main)
