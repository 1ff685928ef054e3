"""Acting on the checkout, ``origin`` and the DVC remote: each command's failure is one line
naming it, and each change has its undo."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run(*cmd: str, cwd: Path, show: bool = False) -> str:
    """Run ``cmd``; its stdout. ``show`` lets its output through (a long pipeline); a failure
    raises with the command and the last line it wrote."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        text=True,
        stdout=None if show else subprocess.PIPE,
        stderr=None if show else subprocess.PIPE,
    )
    if proc.returncode:
        said = [line for line in f"{proc.stdout or ''}\n{proc.stderr or ''}".splitlines() if line]
        last = said[-1].strip() if said else "its output is above"
        raise RuntimeError(f"`{' '.join(cmd[:3])}` exited {proc.returncode}: {last}")
    return (proc.stdout or "").strip()


def git(root: Path, *args: str) -> str:
    return run("git", *args, cwd=root)


def current_branch(root: Path) -> str:
    branch = git(root, "branch", "--show-current")
    if not branch:
        raise RuntimeError("HEAD is detached: check out the branch to retrain from")
    return branch


def check_clean(root: Path) -> None:
    """Refuse a checkout with uncommitted changes to tracked files: they would be committed
    with the drop, or lost when a failure puts the checkout back."""
    changed = git(root, "status", "--porcelain", "--untracked-files=no")
    if changed:
        first = changed.splitlines()[0][3:]
        raise RuntimeError(f"uncommitted changes ({first}, ...): commit or stash them first")


def branch_exists(root: Path, remote: str, branch: str) -> bool:
    """Whether ``branch`` exists here or on ``remote``."""
    local = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=root,
        capture_output=True,
    )
    return local.returncode == 0 or bool(
        git(root, "ls-remote", "--heads", remote, f"refs/heads/{branch}")
    )


def put_back(root: Path, start: str, branch: str) -> None:
    """The checkout as it was: ``start`` checked out with its data, ``branch`` deleted."""
    git(root, "checkout", "--force", "--quiet", start)
    subprocess.run(["git", "branch", "-D", branch], cwd=root, capture_output=True)
    run("dvc", "checkout", "--force", "--quiet", cwd=root)


class RemoteObjects:
    """The default DVC remote's files before a push, so that a failure afterwards can delete
    exactly the objects that push added (objects are content-addressed: nothing there is
    ever overwritten)."""

    def __init__(self, root: Path) -> None:
        from dvc.repo import Repo

        self.odb = Repo(str(root)).cloud.get_remote_odb(None)
        self.before = self.listing()

    def listing(self) -> set[str]:
        if not self.odb.fs.exists(self.odb.path):
            return set()
        return set(self.odb.fs.find(self.odb.path))

    def remove_added(self) -> int:
        added = sorted(self.listing() - self.before)
        if added:
            self.odb.fs.rm(added)
        return len(added)
