"""Shared fixtures: a throw-away copy of the project that runs DVC for real."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sentiment.settings import setting

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent
# Every raw file a .dvc file tracks, the declared datasets' (data/raw/<dataset>/).
RAW_DATA = sorted(dvc.relative_to(REPO).as_posix()[:-4] for dvc in REPO.glob("data/raw/*/*.dvc"))


def project_env(root: Path) -> dict[str, str]:
    """Environment for commands in a copy: its own MLflow/Optuna stores, offline HF."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "OPTUNA_", "DVC_", "BENTOML_", "PIPELINE_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(root)
    return env


def sh(root: Path, *cmd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in the copy; fail the test with its output when it fails."""
    proc = subprocess.run(
        cmd, cwd=root, env=project_env(root), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_ready(proc: subprocess.Popen, url: str, log: Path, seconds: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or hangs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"{url} not ready within {seconds} s: {log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen, log: Path, grace: float = 15) -> None:
    """Stop a server as an orchestrator does: SIGTERM to its main process (which stops its
    workers), then SIGKILL to the whole process group, whatever is left of it after
    ``grace`` seconds (reported with the server's log); never fails teardown."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"{proc.args[0]} still running {grace} s after SIGTERM; killed. Log tail:")
        print(log.read_text()[-2000:])
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers the main process left behind
    proc.wait(timeout=10)


def copy_project(dest: Path) -> Path:
    """Copy the tracked and not-ignored files into ``dest/repo`` and commit; link ``shared/``
    beside it when this checkout has one (the default DVC remote is a path in it)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    root = dest / "repo"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    if SHARED.is_dir():
        (dest / "shared").symlink_to(SHARED)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return root


@pytest.fixture(scope="session")
def pulled_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with the data pulled from the configured DVC remote.

    Where the remote cannot be read (a clone without ``../shared`` or bucket credentials),
    the tests that need the real data are skipped with the reason; with
    ``SENTIMENT_REQUIRE_DATA=1`` (as ``.ci/run`` sets) they fail instead.
    """
    root = copy_project(tmp_path_factory.mktemp("pipeline"))
    pull = subprocess.run(
        ["dvc", "pull", *RAW_DATA],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    missing = [path for path in RAW_DATA if not (root / path).is_file()]
    if pull.returncode or missing:
        errors = [line for line in pull.stderr.splitlines() if line.startswith("ERROR")]
        why = errors[0].removeprefix("ERROR: ").split(" - ")[0] if errors else "no error given"
        reason = (
            f"needs the real data: `dvc pull` could not fetch {', '.join(missing or RAW_DATA)} "
            f"from the configured DVC remote ({why})"
        )
        if setting("SENTIMENT_REQUIRE_DATA"):
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def raw_data(pulled_copy: Path) -> Path:
    """The pulled ``data/raw/flipkart`` directory, the default dataset's files (read only:
    the pipeline copy shares it)."""
    return pulled_copy / "data" / "raw" / "flipkart"


@pytest.fixture(scope="session")
def pipeline_copy(pulled_copy: Path) -> Path:
    """A project copy with data pulled and ``prepare featurize`` run (forced: whether the
    remote holds their outputs must not decide whether they run here and leave MLflow runs
    and run-cache entries behind)."""
    sh(pulled_copy, "dvc", "pull", "--allow-missing", "-q")  # cached outputs, where pushed
    sh(pulled_copy, "dvc", "repro", "-f", "prepare", "featurize")
    return pulled_copy


def flipkart(raw_data: Path):
    """The default dataset's declaration, reading its files from ``raw_data``."""
    from dataclasses import replace

    from sentiment.data.dataset import load_dataset

    dataset = load_dataset(REPO / "params.yaml")
    ood = tuple(replace(table, folder=raw_data) for table in dataset.ood)
    return replace(dataset, folder=raw_data, ood=ood)


def ood_set(raw_data: Path, name: str):
    """One of the default dataset's out-of-domain sets, read as prepare reads it."""
    from stages.prepare import read_ood

    dataset = flipkart(raw_data)
    return read_ood(dataset.ood[dataset.ood_names.index(name)], dataset.classes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TrackingServer:
    url: str
    log: Path
    user: str | None = None
    password: str | None = None

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point MLflow at this server, with its credentials if it has any."""
        monkeypatch.setenv("MLFLOW_TRACKING_URI", self.url)
        if self.user and self.password:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", self.user)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", self.password)


def cheapen_password_check(db: Path, user: str, password: str) -> None:
    """The same password, stored with a one-round PBKDF2 hash instead of scrypt: the server
    checks it on every request (about 0.16 s of CPU each with scrypt, hundreds of requests
    per test). It still refuses any other password; only the test's cost changes."""
    from werkzeug.security import generate_password_hash

    with sqlite3.connect(db) as conn:
        changed = conn.execute(
            "UPDATE users SET password_hash = ? WHERE username = ?",
            (generate_password_hash(password, "pbkdf2:sha256:1"), user),
        ).rowcount
    assert changed == 1, f"{db}: no user {user!r} to update"


@contextmanager
def running_tracking_server(
    root: Path,
    auth: bool,
    backend: str | None = None,
    artifacts: str | None = None,
    server_env: dict[str, str] | None = None,
) -> Iterator[TrackingServer]:
    """``mlflow server`` on a free loopback port, serving the artifacts it stores: SQLite and
    a local folder unless ``backend`` (e.g. a PostgreSQL URL) and ``artifacts`` (e.g. an S3
    URI, with ``server_env`` holding its endpoint and credentials) say otherwise. Optionally
    with MLflow's basic-auth app (it checks the password on every request, so only the
    credential tests use it; ``cheapen_password_check`` keeps that check fast).

    Stopped as a process group: MLflow's server runs uvicorn (and, unless switched off as
    here, job consumers) in child processes.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(server_env or {})}
    user = password = None
    app: list[str] = []
    if auth:
        user, password = "admin", f"pw-{secrets.token_hex(8)}"
        config = root / "basic_auth.ini"
        config.write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            f"admin_username = {user}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        app = ["--app-name", "basic-auth"]
    port = free_port()
    log = root / "server.log"
    address = ["--host", "127.0.0.1", "--port", str(port)]
    stores = ["--backend-store-uri", backend or f"sqlite:///{root / 'mlflow.db'}"]
    stores += ["--artifacts-destination", artifacts or str(root / "artifacts")]
    stores += ["--workers", "1"]
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", *app, *address, *stores],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}/health", log)
        if auth:
            cheapen_password_check(root / "basic_auth.db", user, password)
        yield TrackingServer(url, log, user, password)
    finally:
        stop_group(proc, log)


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A tracking server with MLflow's basic-auth app and an admin user."""
    with running_tracking_server(tmp_path_factory.mktemp("mlflow-auth-server"), auth=True) as s:
        yield s


@pytest.fixture(scope="session")
def plain_tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A tracking server without auth, shared by the registry scenario tests."""
    with running_tracking_server(tmp_path_factory.mktemp("mlflow-server"), auth=False) as s:
        yield s


def split_files(prepared: Path) -> dict[str, Path]:
    """The train, val and test files of a prepared folder, as featurize takes them."""
    return {split: prepared / f"{split}.parquet" for split in ("train", "val", "test")}


LOOPBACK_ONLY = ("-c", "listen_addresses=127.0.0.1")


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def as_postgres_user() -> dict:
    """Run a server program as the ``postgres`` user when the tests run as root (PostgreSQL
    refuses root); as the caller otherwise."""
    if os.geteuid() != 0:
        return {}
    import pwd

    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL on a free loopback port, in a temporary data directory: its URL
    (``postgresql://`` with a password; SQLAlchemy maps it to psycopg 3). Stopped, as a
    process group, when the session ends."""
    programs = postgres_bin()
    if programs is None:
        reason = "PostgreSQL is not installed (.ci/run installs the Debian package)"
        if setting("SENTIMENT_REQUIRE_SERVERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="sentiment-pg-"))  # readable by the postgres user
    home.chmod(0o755)
    data, password = home / "data", secrets.token_hex(8)
    (home / "pw").write_text(password)
    user = as_postgres_user()
    if user:
        shutil.chown(home, user["user"], user["group"])
        (home / "pw").chmod(0o600)
        shutil.chown(home / "pw", user["user"], user["group"])
    run = {"check": True, "capture_output": True, "text": True, **user}
    initdb = ["-D", data, "-U", "sentiment", "--auth=scram-sha-256", f"--pwfile={home / 'pw'}"]
    subprocess.run([programs / "initdb", *initdb, "-E", "UTF8"], **run)
    port = free_port()
    server = subprocess.Popen(
        [programs / "postgres", "-D", data, "-p", str(port), "-k", home, *LOOPBACK_ONLY],
        stdout=open(home / "log", "w"),  # noqa: SIM115 (the server's lifetime)
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **user,
    )
    url = f"postgresql://sentiment:{password}@127.0.0.1:{port}/postgres"
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(url).close()
            break
        except psycopg.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                log = (home / "log").read_text()
                raise RuntimeError(f"PostgreSQL did not start: {log}") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def postgres_database(url: str, name: str) -> str:
    """A fresh database on the test server; its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """An S3-compatible server (moto's server mode) on loopback, and one bucket in it."""

    endpoint: str
    bucket: str

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with credentials: moto accepts any, DVC and boto3 need some."""
        return {**base, **S3_CREDENTIALS}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``moto_server`` on a free loopback port with a bucket, stopped as a process group."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "log"
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "w"),  # noqa: SIM115 (the server's lifetime)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_ready(server, endpoint, log, seconds=60)
    import boto3

    s3 = S3Server(endpoint, "sentiment")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=s3.bucket)
    try:
        yield s3
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def slow_post(url: str, path: str, size: int, chunk: int = 64 * 2**10, pause: float = 0.002):
    """POST a ``size``-byte JSON body to ``url`` + ``path`` as a slow client does: the
    headers first, then the body a ``chunk`` at a time with a ``pause`` between, then read
    the answer. Returns (status, body); a reset or a close mid-upload raises OSError."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = b'{"text": "' + b"x" * (size - 12) + b'"}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        for start in range(0, len(body), chunk):
            sock.sendall(body[start : start + chunk])
            time.sleep(pause)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
