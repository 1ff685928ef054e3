"""Reference method (as published) vs our classical model, on the same test split.

The reference project cleans text (lower-case, emoji/URLs/HTML/non-letters removed, stop
words minus not/no/nor dropped, Porter-stemmed), then tunes TF-IDF + LogisticRegression /
MultinomialNB / LinearSVC with Optuna, 20 trials each, 5-fold stratified CV, macro-F1.
Deviations forced by this offline machine: NLTK's stop-word corpus cannot be downloaded,
so scikit-learn's English list stands in for it; the sampler is seeded (``--seed``) where
the reference left it unseeded. Run after ``dvc repro tune``:

    python -m bench.seed_baseline [--seed 0] [--trials 20]

Last line: one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import emoji
import optuna
from nltk.stem import PorterStemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sentiment.evaluation.metrics import bootstrap_ci, macro_f1
from sentiment.fileio import read_split
from sentiment.models.predictor import load_predictor, predict

STOP = ENGLISH_STOP_WORDS - {"not", "no", "nor"}
STEMMER = PorterStemmer()


def reference_clean(text: str) -> str:
    text = emoji.replace_emoji(str(text).lower(), replace="")
    text = re.sub(r"http\S+|www\S+|https\S+|<.*?>", "", text)
    text = re.sub(r"[^a-z\s]", "", text)
    return " ".join(STEMMER.stem(w) for w in text.split() if w not in STOP)


def reference_model(name: str, trial: optuna.Trial | optuna.trial.FixedTrial) -> Pipeline:
    """The reference's search spaces, one per model."""
    if name == "LogisticRegression":
        model = LogisticRegression(
            C=trial.suggest_float("C", 0.01, 2.0, log=True),
            solver="liblinear",
            class_weight="balanced",
            max_iter=1000,
            random_state=42,
        )
        max_features = trial.suggest_int("max_features", 2000, 5000, step=500)
    elif name == "MultinomialNB":
        model = MultinomialNB(alpha=trial.suggest_float("alpha", 0.01, 1.0, log=True))
        max_features = trial.suggest_int("max_features", 3000, 10000, step=1000)
    else:
        model = LinearSVC(
            C=trial.suggest_float("C", 0.01, 2.0, log=True), class_weight="balanced", max_iter=5000
        )
        max_features = trial.suggest_int("max_features", 3000, 10000, step=1000)
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        stop_words="english",
        max_features=max_features,
        min_df=trial.suggest_int("min_df", 3, 7),
        max_df=trial.suggest_float("max_df", 0.7, 0.9),
    )
    return Pipeline([("tfidf", vectorizer), ("model", model)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_texts, y_train = read_split("data/prepared/train.parquet")
    val_texts, y_val = read_split("data/prepared/val.parquet")
    test_texts, y_test = read_split("data/prepared/test.parquet")
    # The reference trained on its whole 70 % part: our train + val.
    x_train = [reference_clean(t) for t in train_texts + val_texts]
    y_train = y_train + y_val
    x_test = [reference_clean(t) for t in test_texts]
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=42)

    results: dict[str, dict] = {}
    print(f"{'model':22s} {'cv':>7s} {'test F1':>8s} {'95% CI':>17s} {'seconds':>8s}")
    for name in ("LogisticRegression", "MultinomialNB", "LinearSVC"):
        start = time.perf_counter()
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed)
        )
        study.optimize(
            lambda t, n=name: cross_val_score(
                reference_model(n, t), x_train, y_train, scoring="f1_macro", cv=cv, n_jobs=-1
            ).mean(),
            n_trials=args.trials,
        )
        model = reference_model(name, optuna.trial.FixedTrial(study.best_params))
        pred = model.fit(x_train, y_train).predict(x_test)
        results[name] = {
            "cv_macro_f1": round(study.best_value, 4),
            "test_macro_f1": round(macro_f1(y_test, pred), 4),
            "test_macro_f1_ci": bootstrap_ci(y_test, pred, seed=args.seed),
            "seconds": round(time.perf_counter() - start, 1),
        }
        r = results[name]
        print(
            f"{'reference ' + name:22s} {r['cv_macro_f1']:7.4f} {r['test_macro_f1']:8.4f} "
            f"{r['test_macro_f1_ci']!s:>17s} {r['seconds']:8.1f}"
        )

    ours = load_predictor("models/classical")
    pred = predict(ours, test_texts)
    best = json.loads(Path("reports/tune/best.json").read_text())
    results["ours_classical"] = {
        "model": best["best_params"]["classifier"],
        "cv_macro_f1": best["cv_macro_f1"],
        "test_macro_f1": round(macro_f1(y_test, pred), 4),
        "test_macro_f1_ci": bootstrap_ci(y_test, pred, seed=args.seed),
    }
    r = results["ours_classical"]
    print(
        f"{'ours (' + r['model'] + ')':22s} {r['cv_macro_f1']:7.4f} {r['test_macro_f1']:8.4f} "
        f"{r['test_macro_f1_ci']!s:>17s}"
    )
    print(
        json.dumps(
            {"bench": "seed_baseline", "seed": args.seed, "test_rows": len(y_test), **results}
        )
    )


if __name__ == "__main__":
    main()
