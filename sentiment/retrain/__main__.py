"""retrain: new rated reviews from a drop to a pushed branch with the retrained pipeline.

    python -m sentiment.retrain --drop s3://bucket/new-reviews/2026-12-05
    make retrain DROP=new-reviews/2026-12-05

The steps, in order:

1. ``read drop``: every CSV, Parquet and JSON Lines file in the folder or under the prefix,
   validated as ``sentiment.ingest`` validates one (``--skip-invalid`` as there);
2. ``ledger``: only rows whose content key ``data/raw/ingested.csv`` does not hold; with none
   left it says so and stops (exit 0);
3. ``branch``: ``retrain/<drop>-<id>``, the id naming the new rows; a branch ``origin``
   already has means they were proposed before: it says so and stops (exit 0);
4. ``ingest``: the rows appended to ``data/raw/reviews.csv``, their keys to the ledger, both
   recorded with DVC;
5. ``pipeline``: ``dvc repro``;
6. ``commit``: the ``.dvc`` files, ``dvc.lock`` and the metrics, on the branch;
7. ``body``: the pull request's body (``--body``): the gate's verdict, the drop's counts and
   the report against the base branch;
8. ``dvc push``: the data and every output to the DVC remote;
9. ``git push``: the branch to ``--remote``.

A failure names its step in one line; afterwards the checkout is back on the branch it
started from, the DVC remote has lost what the push added and ``origin`` has no new branch.
The drop is only read. ``.github/workflows/retrain.yaml`` then opens the pull request.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sentiment import paths
from sentiment.cli import describe, entry_point, fail
from sentiment.data.dataset import Dataset, load_dataset
from sentiment.data.splits import read_csv
from sentiment.fileio import atomic_path
from sentiment.headlines import read_metrics
from sentiment.ingest import append_rows, single_csv
from sentiment.retrain import body, ledger
from sentiment.retrain.checkout import (
    RemoteObjects,
    branch_exists,
    check_clean,
    current_branch,
    git,
    put_back,
    run,
)
from sentiment.retrain.drop import read_drop

COMMITTER = ("-c", "user.name=sentiment retrain", "-c", "user.email=retrain@localhost")


def committer(root: Path) -> tuple[str, ...]:
    """The configured git identity, or the loop's own where none is (a bare CI runner)."""
    try:
        git(root, "config", "user.email")
        return ()
    except RuntimeError:
        return COMMITTER


def ingest_rows(root: Path, rows: pd.DataFrame, drop_name: str, dataset: Dataset) -> None:
    """Append ``rows`` to the raw file and their keys to the ledger; record both with DVC."""
    raw = single_csv(dataset)
    append_rows(root / raw, rows, drop_name, dataset)
    grown = ledger.grown_ledger(ledger.read_ledger(root / ledger.LEDGER), rows, drop_name)
    with atomic_path(root / ledger.LEDGER) as tmp:
        grown.to_csv(tmp, index=False, lineterminator="\n")
    run("dvc", "add", "--quiet", str(ledger.LEDGER), cwd=root)
    run("dvc", "commit", "--force", "--quiet", f"{raw}.dvc", cwd=root)


@dataclass
class Retrain:
    """One run of the steps; ``step`` names the one under way, for the failure's line."""

    root: Path
    uri: str
    remote: str = "origin"
    body_file: Path = Path("retrain-pr.md")
    skip_invalid: bool = False
    step: str = "check"
    start: str = ""
    branch: str = ""
    pushed: RemoteObjects | None = None

    def propose(self) -> str:
        """Run the steps; the line to print."""
        root = self.root
        check_clean(root)
        self.start = current_branch(root)
        self.step = "read drop"
        dataset = load_dataset(root / paths.PARAMS_FILE)
        columns = list(read_csv(root / single_csv(dataset), nrows=0).columns)
        drop = read_drop(self.uri, columns, dataset, self.skip_invalid)
        self.step = "ledger"
        rows, counts = ledger.new_rows(drop.rows, ledger.read_ledger(root / ledger.LEDGER))
        counts["appended"] = len(rows)
        if rows.empty:
            return (
                f"retrain: nothing new in {self.uri} ({drop.rows_read} rows, "
                f"{counts['ingested_before']} ingested before); no branch made"
            )
        self.step = "branch"
        branch = f"retrain/{drop.name}-{ledger.proposal_id(rows)}"
        if branch_exists(root, self.remote, branch):
            return f"retrain: {branch} exists: these {len(rows)} new rows were proposed before"
        git(root, "switch", "--quiet", "--create", branch)
        self.branch = branch
        self.step = "ingest"
        ingest_rows(root, rows, drop.name, dataset)
        self.step = "pipeline"
        run("dvc", "repro", cwd=root, show=True)
        self.step = "commit"
        git(root, "add", "--all", "--", "data", "reports", "models", "dvc.lock")
        git(root, "add", "--update")
        gate = " ".join(body.verdict(root)).replace("**", "")
        git(root, *committer(root), "commit", "-qm", body.title(drop, len(rows)), "-m", gate)
        self.step = "body"
        with atomic_path(self.body_file) as tmp:
            tmp.write_text(body.body(drop, counts, root, self.start))
        self.step = "dvc push"
        self.pushed = RemoteObjects(root)
        run("dvc", "push", "--quiet", cwd=root)
        self.step = "git push"
        git(root, "push", "--quiet", self.remote, f"refs/heads/{branch}")
        promote = read_metrics(paths.GATE_DECISION, root).get("promote")
        return (
            f"retrain: {len(rows)} new rows from {self.uri} ({counts['ingested_before']} "
            f"ingested before, {sum(drop.skipped.values())} skipped) on {branch}, pushed to "
            f"{self.remote} with its outputs; the gate would {'promote' if promote else 'keep'}"
            f"; pull request body in {self.body_file}"
        )

    def undo(self) -> str:
        """Put back what the steps changed; what was done, as a phrase."""
        if not self.branch:
            return "nothing was changed"
        done = []
        if self.pushed is not None:
            try:
                done.append(f"the {self.pushed.remove_added()} objects the push added deleted")
            except Exception as err:  # the remote itself may be what failed
                done.append(f"the objects the push added NOT deleted ({describe(err)})")
        try:
            put_back(self.root, self.start, self.branch)
            done.append(f"back on {self.start}")
        except RuntimeError as err:
            done.append(f"the checkout NOT put back ({err})")
        return f"{', '.join(done)}; {self.remote} has no {self.branch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drop", required=True, help="a folder or s3:// prefix of files")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="take the usable rows and count the others, instead of refusing the drop",
    )
    parser.add_argument("--remote", default="origin", help="the git remote to push to")
    parser.add_argument(
        "--body", type=Path, default=Path("retrain-pr.md"), help="the pull request's body"
    )
    args = parser.parse_args()
    run_ = Retrain(Path.cwd(), args.drop, args.remote, args.body, args.skip_invalid)
    try:
        print(run_.propose())
    except Exception as err:  # each failure is one line naming its step, after the undo
        fail(f"retrain: step '{run_.step}' failed: {describe(err)}; {run_.undo()}")


if __name__ == "__main__":
    entry_point(main)
