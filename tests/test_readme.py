"""The figures of the README and of docs/ are the committed metrics: a re-run that moves one
fails here, naming the pages it looked on.

Counts and scores must match exactly (as rounded on the page); timings, which move from run
to run, must be within a factor of 1.5 of the committed ones.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sentiment.monitoring.reference import raw_traffic
from sentiment.tracking import flatten
from tests.conftest import BIN, REPO, flipkart

PAGES = {  # line breaks as spaces
    path.relative_to(REPO).as_posix(): " ".join(path.read_text().split())
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
}
TIMING_FACTOR = 1.5
FRONT_PAGE_LINES = 150


class Pages:
    """``text in README`` asks every page; ``where(text)`` names the page that has it."""

    def __contains__(self, text: str) -> bool:
        return self.where(text) is not None

    @staticmethod
    def where(text: str) -> str | None:
        return next((page for page, body in PAGES.items() if text in body), None)

    def __str__(self) -> str:
        return ", ".join(PAGES)


README = Pages()


def committed(path: str) -> dict:
    """A metrics file as committed at HEAD (not as the last local run left it)."""
    text = subprocess.run(
        ["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return yaml.safe_load(text) if path.endswith((".yaml", ".lock")) else json.loads(text)


def figure(pattern: str) -> re.Match:
    """The first page's match of ``pattern``; the pages are named when none has it."""
    for body in PAGES.values():
        if match := re.search(pattern, body):
            return match
    raise AssertionError(f"no page ({README}) has a figure matching {pattern!r}")


def test_the_front_page_is_short_and_links_every_page() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= FRONT_PAGE_LINES, f"README.md has {len(lines)} lines"
    front = PAGES["README.md"]
    for page in PAGES:
        if page != "README.md":
            assert f"]({page})" in front, f"README.md does not link {page}"
            assert "](../README.md)" in PAGES[page], f"{page} does not link back"


def assert_timing(stated: float, measured: float, what: str) -> None:
    assert measured / TIMING_FACTOR <= stated <= measured * TIMING_FACTOR, (
        f"README says {what} takes {stated} s; the committed metrics say {measured} s"
    )


def test_prepare_figures() -> None:
    stats = committed("data/prepared/stats.json")
    rows, params = stats["rows"], committed("params.yaml")
    reference_rows = params["datasets"][params["dataset"]]["reference_rows"]
    for text in (
        f"{rows['train']:,} / {rows['val']:,} / {rows['test']:,} rows, "
        f"{stats['quarantined']['total']} quarantined",
        f"which gives {rows['test']:,} test rows",
        f"({stats['leakage']['test_texts_in_train']}, kept for comparability",
        f"first `reference_rows` ({reference_rows:,}) rows",
    ):
        assert text in README, f"no page ({README}) says {text!r}"


def test_featurize_and_tune_figures() -> None:
    features = committed("reports/featurize/summary.json")["n_features"]
    assert f"{round(features / 1000)}k word + char n-gram features" in README
    best = committed("reports/tune/best.json")
    trials, seconds = figure(r"(\d+) trials in (\d+) s for a new study").groups()
    assert int(trials) == best["trials"]["target"]
    assert_timing(float(seconds), best["search_seconds"], "the tune search")
    classical = committed("reports/evaluate/metrics.json")["classical"]["test"]["macro_f1"]
    assert f"test macro-F1 {classical:.3f} |" in README


def test_transformer_figures() -> None:
    metrics = committed("reports/train_transformer/metrics.json")
    seconds, epochs = figure(r"~\d+ min \((\d+) s, (\d+) epochs\)").groups()
    assert int(epochs) == metrics["epochs_run"]
    assert_timing(float(seconds), metrics["train_seconds"], "fine-tuning")
    test = committed("reports/evaluate/metrics.json")["transformer"]["test"]["macro_f1"]
    assert f"{epochs} epochs); test macro-F1 {test:.3f}" in README
    if metrics["quantized"]:
        fp32, int8 = metrics["val_macro_f1_fp32"], metrics["val_macro_f1_int8"]
        stated = (
            f"{fp32:.4f} in fp32 and in int8" if fp32 == int8 else f"{fp32:.4f}, int8 {int8:.4f}"
        )
        assert f"it was kept: validation macro-F1 {stated}" in README


def test_champion_figures() -> None:
    metrics = committed("reports/evaluate/metrics.json")
    champion = metrics["champion"]
    name, runner_up = champion["name"], champion["runner_up"]
    ours, theirs = metrics[name], metrics[runner_up]
    low, high = ours["test"]["macro_f1_ci"]
    min_gain = committed("params.yaml")["evaluate"]["min_gain"]
    ours_val, theirs_val = ours["val_crossfit_macro_f1"], theirs["val_crossfit_macro_f1"]
    if ours_val >= theirs_val:  # the best outright
        why = f"the best; the {runner_up}'s {theirs_val:.4f}"
    else:  # cheaper, and close enough
        size = round(100 * ours["size_mb"] / theirs["size_mb"])
        why = f"within {min_gain} of the {runner_up}'s {theirs_val:.4f} at {size} % of its size"
    text = (
        f"champion: {name} (cross-fitted val {ours_val:.4f}, {why}), "
        f"test {ours['test']['macro_f1']:.4f} [{low:.3f}, {high:.3f}]; "
        f"{runner_up} test {theirs['test']['macro_f1']:.4f}"
    )
    assert text in README, f"no page ({README}) says {text!r}"


def test_drift_figures() -> None:
    status = {
        name: result["status"] for name, result in committed("reports/drift/report.json").items()
    }
    assert status == dict.fromkeys(["ood_amazon", "ood_imdb", "ood_yelp"], "drift") | {
        "held_out": "no drift"
    }
    assert "held_out: no drift; amazon/imdb/yelp: drift |" in README
    score_ks = committed("reports/drift/report.json")["held_out"]["tests"]["score_ks"]["p_value"]
    assert f"score KS p-value of 0.068; it is now {score_ks:.2f}." in README


def test_traffic_figures(raw_data: Path) -> None:
    traffic = raw_traffic(flipkart(raw_data))
    stated = f"the raw file's {len(traffic):,} valid reviews hold {traffic['text'].nunique():,}"
    assert stated in README


@pytest.mark.slow
def test_make_exp_shows_the_20_headline_metrics_and_the_params() -> None:
    """`make exp`'s filter on the real `dvc exp show` table: of the metrics only the headline
    remains, every param stays (--only-changed then keeps those a sweep varied), no dep."""
    drop = re.search(r"^EXP_COLUMNS := (.+)$", (REPO / "Makefile").read_text(), re.M)[1]
    drop = drop.replace("$$", "$")
    header = {
        name: subprocess.run(
            [str(BIN / "dvc"), "--wait-for-lock", "exp", "show", "--csv", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[0]
        for name, args in (("make exp", ["--drop", drop]), ("plain", []))
    }
    columns = header["make exp"].split(",")
    assert len(header["plain"].split(",")) > 500  # "over 500 columns"
    params = set(flatten(yaml.safe_load((REPO / "params.yaml").read_text())))
    metrics = [c for c in columns if c not in params and c not in ("Experiment", "Created")]
    headline = [
        f"headline.{k}" for k in flatten(committed("reports/evaluate/headline.json")["headline"])
    ] + [
        f"{f}.{k}"
        for f, path in [
            ("gate", "reports/gate/verdict.json"),
            ("drift", "reports/drift/verdicts.json"),
        ]
        for k in committed(path)[f]
    ]
    assert sorted(metrics) == sorted(headline) and len(headline) == 20
    assert params <= set(columns)
    assert "20 values in all" in README


def test_the_results_table_is_the_committed_experiments() -> None:
    """Every row of the README's results table, as `python -m bench.experiments` renders the
    rows it saved to bench/experiments.json from the experiments' own committed files."""
    from bench.experiments import markdown

    table = markdown(committed("bench/experiments.json"))
    assert " ".join(table.split()) in README
    rows = committed("bench/experiments.json")
    head = committed("reports/evaluate/headline.json")["headline"]
    default = [r for r in rows if r["experiment"] == "default" and r["champion"]]
    assert len(default) == 1 and default[0]["candidate"] == head["champion"]["name"]
    assert default[0]["test_macro_f1"] == head["champion"]["test_macro_f1"]


def test_the_serving_tables_are_the_committed_bench_run() -> None:
    """The README's serving table (the transformer) and the classical one in the benchmarks
    page, as `python -m bench.serve_load --save bench/serve_load.json` rendered them, with
    the command that produced them."""
    from bench.serve_load import markdown

    run = committed("bench/serve_load.json")
    flavors = {result["flavor"]: result for result in run["models"]}
    assert set(flavors) == {"transformer", "classical"}
    readme = " ".join((REPO / "README.md").read_text().split())
    assert " ".join(markdown(flavors["transformer"]).split()) in readme
    assert f"`{run['command']}`" in readme
    assert " ".join(markdown(flavors["classical"]).split()) in PAGES["docs/benchmarks.md"]
    for result in flavors.values():
        assert all(r["errors"] == 0 for r in result["service"].values())
        log = result["service_log"]
        assert log["lines"] == log["requests"], "the inference log has every request"
