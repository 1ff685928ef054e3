"""The results table of the README, from the experiments DVC keeps (``dvc exp run``).

    python -m bench.experiments [NAME ...] [--workspace default] [--write bench/experiments.json]

For each named experiment (default: every one under ``refs/exps``), reads the files DVC
committed to its ref (params.yaml, reports/evaluate/metrics.json, reports/tune/best.json,
reports/train_transformer/metrics.json), and with ``--workspace`` the workspace's own run first. It
prints one row per candidate: validation macro-F1 (as fitted, and cross-fitted, which picks
the champion), test macro-F1 with its 95 % bootstrap CI, training minutes and scoring speed
(texts/s, evaluate's batched timing on the test split). ``--write`` saves the rows, which
``tests/test_readme.py`` checks the README's table against.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sentiment.fileio import write_json

CANDIDATES = ("classical", "transformer", "ensemble")


def exp_refs() -> dict[str, str]:
    """Experiment name -> commit, for every experiment ref DVC holds."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    refs = {}
    for line in out.splitlines():
        commit, ref = line.split()
        if ref.count("/") == 4:  # refs/exps/ab/<baseline rest>/<name>; not the queue's stash
            refs[ref.rsplit("/", 1)[1]] = commit
    return refs


def read(commit: str | None, path: str) -> Any:
    """A file as an experiment committed it, or (``commit`` None) as the workspace has it."""
    if commit is None:
        return yaml.safe_load(Path(path).read_text())  # JSON is YAML
    text = subprocess.run(
        ["git", "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    return yaml.safe_load(text)


def variant(name: str, params: dict[str, Any]) -> str:
    """A candidate's model in words, from the params that define it."""
    if name == "classical":
        return f"classical, target {params['tune'].get('target', 'label')}"
    t = params["train_transformer"]
    encoder = t["base_model"] or "all-MiniLM-L6-v2"
    model = f"{encoder}, target {t['target']}, {t['epochs']} epochs, lr {t['lr']:g}"
    return model if name == "transformer" else f"ensemble: classical + {model}"


def rows(name: str, commit: str | None) -> list[dict[str, Any]]:
    params = read(commit, "params.yaml")
    metrics = read(commit, "reports/evaluate/metrics.json")
    minutes = {
        "classical": read(commit, "reports/tune/best.json")["search_seconds"] / 60,
        "transformer": read(commit, "reports/train_transformer/metrics.json")["train_seconds"] / 60,
    }
    minutes["ensemble"] = minutes["classical"] + minutes["transformer"]
    out = []
    for candidate in CANDIDATES:
        m = metrics[candidate]
        low, high = m["test"]["macro_f1_ci"]
        out.append(
            {
                "experiment": name,
                "candidate": candidate,
                "variant": variant(candidate, params),
                "val_macro_f1": m["val"]["macro_f1"],
                "val_crossfit_macro_f1": m.get("val_crossfit_macro_f1"),
                "test_macro_f1": m["test"]["macro_f1"],
                "test_ci": [low, high],
                "train_minutes": round(minutes[candidate], 1),
                "texts_per_s": round(1e6 / m["latency_ms_per_1k"]),
                "champion": metrics["champion"]["name"] == candidate,
            }
        )
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| experiment | model | val macro-F1 (cross-fitted) | test macro-F1 [95 % CI] "
        "| training min | texts/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        star = " **champion**" if r["champion"] else ""
        lines.append(
            f"| `{r['experiment']}` | {r['variant']}{star} | {r['val_macro_f1']:.4f} "
            f"({r['val_crossfit_macro_f1']:.4f}) | {r['test_macro_f1']:.4f} "
            f"[{r['test_ci'][0]:.3f}, {r['test_ci'][1]:.3f}] | {r['train_minutes']:.1f} "
            f"| {r['texts_per_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiments, in table order (default: all)")
    parser.add_argument("--write", help="also save the rows as JSON here")
    parser.add_argument(
        "--workspace", metavar="NAME", help="first, the workspace's own run, under this name"
    )
    args = parser.parse_args()
    refs = exp_refs()
    missing = [n for n in args.names if n not in refs]
    if missing:
        raise SystemExit(f"experiments: no experiment named {', '.join(missing)}")
    table = rows(args.workspace, None) if args.workspace else []
    table += [row for name in args.names or sorted(refs) for row in rows(name, refs[name])]
    if args.write:
        write_json(args.write, table)
    print(markdown(table))


if __name__ == "__main__":
    main()
