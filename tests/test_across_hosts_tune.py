"""One Optuna study across simulated hosts (tests/hosts.py): the tune stage on host a, workers
on b and c, PostgreSQL on host db. A worker host cut off mid-trial, and PostgreSQL restarted
mid-study. docs/across-machines.md has the layout and the fault table."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentiment import tracking
from tests.conftest import BIN, REPO, as_postgres_user, postgres_bin
from tests.hosts import Host, Hosts, require_hosts, wait_port
from tests.test_team_setup import set_trials, study_of_name
from tests.test_tune import tiny_project  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.system]
DONE = ("COMPLETE", "PRUNED")


@pytest.fixture(autouse=True)
def hosts_can_be_made() -> None:
    require_hosts()


class Postgres:
    """PostgreSQL on ``host``, started and stopped with ``pg_ctl`` as an operator would,
    accepting password logins from the hosts' subnet."""

    def __init__(self, host: Host, home: Path) -> None:
        programs = postgres_bin()
        if programs is None:
            pytest.fail("PostgreSQL is not installed (.ci/run installs the Debian package)")
        self.host, self.home, self.pg_ctl = host, home, programs / "pg_ctl"
        self.user = as_postgres_user()
        password = secrets.token_hex(8)
        self.url = f"postgresql://sentiment:{password}@{host.address}:5432/postgres"
        home.chmod(0o755)  # mkdtemp made it 0700: the postgres user must enter it
        (home / "pw").write_text(password)
        if self.user:
            shutil.chown(home, self.user["user"], self.user["group"])
            shutil.chown(home / "pw", self.user["user"], self.user["group"])
        initdb = [programs / "initdb", "-D", home / "data", "-U", "sentiment"]
        initdb += ["--auth=scram-sha-256", f"--pwfile={home / 'pw'}"]
        subprocess.run(initdb, check=True, capture_output=True, **self.user)
        with open(home / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {host.address.rsplit('.', 1)[0]}.0/24 scram-sha-256\n")

    def control(self, *args: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if self.user else []  # setns needs root
        cmd = [*as_user, str(self.pg_ctl), "-D", str(self.home / "data"), "-w", *args]
        done = self.host.exec(*cmd, env=dict(os.environ), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = f"-c listen_addresses={self.host.address} -k {self.home}"
        self.control("-l", str(self.home / "log"), "-o", options, "start")

    def stop(self) -> None:
        self.control("-m", "fast", "stop")  # open sessions are ended, as by a restart


TRIALS = """
import json, optuna
retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
study = optuna.load_study(study_name={name!r}, storage={url!r})
with study._storage._backend.engine.connect() as db:
    beating = {{row[0] for row in db.exec_driver_sql("SELECT trial_id FROM trial_heartbeats")}}
print(json.dumps([
    dict(number=t.number, state=t.state.name, worker=t.user_attrs.get("worker"),
         retried=retried(t), beating=t._trial_id in beating)
    for t in study.trials
]))
"""
CREATE = """
from stages import tune
from sentiment.models import search
from tests.test_tune import TUNE
search.search(TUNE, {url!r}, {name!r}, None, tune.INPUTS, n_trials=0)
"""


class Team:
    """The study's hosts: a, b and c run tune, db runs PostgreSQL; the project folder is
    shared, as a volume every machine mounts."""

    def __init__(self, hosts: Hosts, project: Path, db: Postgres) -> None:
        self.hosts, self.project, self.db = hosts, project, db
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OPTUNA_STORAGE": db.url,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        self.name = study_of_name()

    def python(self, code: str) -> str:
        """``code`` run by Python on host a (the test's own process is on no host)."""
        done = self.hosts["a"].exec("python", "-c", code, env=self.env, cwd=self.project)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def trials(self) -> list[dict]:
        return json.loads(self.python(TRIALS.format(name=self.name, url=self.db.url)))

    def tune(self, host: str, *args: str, log: str) -> subprocess.Popen:
        cmd = ("python", "-m", "stages.tune", *args)
        return self.hosts[host].run(*cmd, env=self.env, log=log, cwd=self.project)

    def log(self, name: str) -> str:
        return (self.hosts.logs / name).read_text()


@pytest.fixture
def team(tiny_project: Path, tmp_path: Path) -> Iterator[Team]:  # noqa: F811
    home = Path(tempfile.mkdtemp(prefix="snt-pg-"))  # short, and outside pytest's 0700 tree
    try:
        with Hosts(["a", "b", "c", "db"], tmp_path / "logs") as hosts:
            db = Postgres(hosts["db"], home)
            db.start()
            wait_port(hosts["a"], hosts["db"].address, 5432)
            tracking.configure()  # the tracking store exists before the processes open it
            made = Team(hosts, tiny_project, db)
            made.python(CREATE.format(url=db.url, name=made.name))
            yield made
    finally:
        shutil.rmtree(home, ignore_errors=True)


def ended(team: Team, processes: dict[str, subprocess.Popen]) -> dict[str, str]:
    """Each process's outcome once it has ended: ``ok``, or its last line."""
    outcomes = {}
    for log, proc in processes.items():
        proc.wait(timeout=600)
        lines = team.log(log).strip().splitlines()
        outcomes[log] = "ok" if proc.returncode == 0 else lines[-1]
    return outcomes


def assert_exact(trials: list[dict], total: int) -> None:
    assert len([t for t in trials if t["state"] in DONE]) == total, "exactly n_trials finished"
    assert len({t["number"] for t in trials}) == len(trials), "no trial number twice"


def test_a_worker_host_cut_off_mid_trial_leaves_the_study_exact(team: Team) -> None:
    """c is cut off while it runs a trial: that trial stops beating, the others fail it as
    stale and queue it again, and the study ends with exactly its total."""
    total = 200
    set_trials(team.project, total)
    c = team.hosts["c"]
    worker_c = team.tune("c", "--worker", "--n-trials", str(total), log="c")
    tag = f"{socket.gethostname()}:{worker_c.pid}"  # ip netns exec execs: one pid
    for tries in range(1, 6):  # until the cut lands inside one of c's trials
        while sum(t["worker"] == tag for t in team.trials()) < 3 * tries:
            assert worker_c.poll() is None, team.log("c")[-3000:]
        c.partition()
        cut = time.monotonic()
        mine = [t for t in team.trials() if t["worker"] == tag and t["state"] == "RUNNING"]
        # Optuna fails a trial as stale only once it has beaten: a worker lost in the few
        # milliseconds between creating its trial and its first beat is left alone
        if mine and mine[0]["beating"]:
            break
        c.heal()
    else:
        pytest.fail("no cut landed inside one of c's trials in five tries")
    processes = {
        "a": team.tune("a", log="a"),
        "b": team.tune("b", "--worker", "--n-trials", str(total), log="b"),
    }
    assert ended(team, processes) == {"a": "ok", "b": "ok"}, team.log("a")[-3000:]
    seconds = time.monotonic() - cut
    trials = team.trials()
    assert_exact(trials, total)
    orphans = [t for t in trials if t["worker"] == tag and t["state"] == "FAIL"]
    assert len(orphans) == 1, orphans  # c's trial, failed as stale once its beat stopped ...
    retried = [t for t in trials if t["retried"] == orphans[0]["number"]]
    # ... and queued again: run by a or b, unless the waiting trials of a and b took its
    # place first (the study had reached its total but for c's trial)
    assert retried and retried[0]["state"] in (*DONE, "WAITING")
    print(
        f"tune worker host cut off in trial {orphans[0]['number']}: failed as stale, queued "
        f"again as trial {retried[0]['number']} ({retried[0]['state']}); the study ended "
        f"exact {seconds:.1f} s after the cut"
    )


def test_postgresql_restarted_mid_study_then_a_rerun_completes_it_exactly(team: Team) -> None:
    """PostgreSQL stopped (fast: open sessions ended) and started again while the stage and
    two workers run: each either carries on (reconnected) or, caught mid-write, stops in one
    line, and a re-run of the stage completes the study with exactly its total."""
    total = 400  # long enough that the restart comes mid-study on a fast machine too
    set_trials(team.project, total)
    processes = {
        "a": team.tune("a", log="a"),
        "b": team.tune("b", "--worker", "--n-trials", str(total), log="b"),
        "c": team.tune("c", "--worker", "--n-trials", str(total), log="c"),
    }
    while sum(t["state"] in DONE for t in team.trials()) < 60:
        assert all(p.poll() is None for p in processes.values()), team.log("a")[-3000:]
    team.db.stop()
    stopped = time.monotonic()
    time.sleep(2)
    team.db.start()
    down = time.monotonic() - stopped
    outcomes = ended(team, processes)
    for log, outcome in outcomes.items():
        lost = "tune: lost the study's database mid-search ("
        assert outcome == "ok" or outcome.startswith(lost), team.log(log)[-3000:]
        assert "Exception in thread" not in team.log(log)  # no heartbeat thread died
    started = time.monotonic()
    rerun = {} if outcomes["a"] == "ok" else {"rerun": team.tune("a", log="rerun")}
    assert ended(team, rerun) == dict.fromkeys(rerun, "ok"), team.log("rerun")[-3000:]
    trials = team.trials()
    assert_exact(trials, total)
    print(
        f"PostgreSQL down {down:.1f} s mid-study: {sum(o == 'ok' for o in outcomes.values())} "
        f"of 3 carried on; the re-run ended the study exact in {time.monotonic() - started:.1f} s "
        f"({sum(t['state'] == 'FAIL' for t in trials)} trials failed)"
    )
