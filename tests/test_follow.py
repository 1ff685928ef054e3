"""The service follows production without a restart: under concurrent load, a promotion and
a rollback are swapped in with no failed request, each answer naming the version that was
production when it was scored; a model that fails its checks is refused, the old one kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from sentiment.serving.follow import Follower, Serving, should_load
from tests.conftest import REPO, stop_group, wait_ready
from tests.test_gate import make_model
from tests.test_service import BENTO_MODEL, TLS, crafted, export_model, get, serve


def serving(tag: str) -> Serving:
    return Serving(tag, tag.split(":")[1], None, 0.5, ["negative", "positive"])


def test_only_a_new_tag_not_refused_is_loaded() -> None:
    assert should_load("sentiment:a", "sentiment:b", set())
    assert not should_load("sentiment:a", "sentiment:a", set())
    assert not should_load("sentiment:a", None, set())
    assert not should_load("sentiment:a", "sentiment:b", {"sentiment:b"})


def test_a_refused_model_is_logged_once_and_the_old_one_kept(caplog) -> None:
    latest, loads, swapped = ["sentiment:a"], [], []

    def load(tag: str) -> Serving:
        loads.append(tag)
        if tag == "sentiment:bad":
            raise ValueError("model files differ: model.skops has sha256 …")
        return serving(tag)

    follower = Follower(serving("sentiment:a"), lambda: latest[0], load, swapped.append)
    assert follower.poll() is None and loads == []
    latest[0] = "sentiment:bad"
    assert follower.poll() is None and follower.poll() is None
    assert loads == ["sentiment:bad"] and swapped == []  # refused once, not retried
    assert [r.getMessage() for r in caplog.records] == [
        "refused sentiment:bad, still serving sentiment:a: model files differ: model.skops "
        "has sha256 …"
    ]
    latest[0] = "sentiment:b"
    assert follower.poll() == serving("sentiment:b") and swapped == [serving("sentiment:b")]
    latest[0] = "sentiment:a"  # a rollback: the earlier tag again
    assert follower.poll() == serving("sentiment:a") and follower.serving == "sentiment:a"


def test_an_unreadable_store_keeps_the_model() -> None:
    def resolve() -> str:
        raise OSError("latest: being written")

    follower = Follower(serving("sentiment:a"), resolve, serving, lambda s: None)
    assert follower.poll() is None and follower.serving == "sentiment:a"


def test_make_serve_follows_and_the_image_does_not() -> None:
    serve_recipe = (REPO / "Makefile").read_text().split("\nserve:", 1)[1].split("\n\n", 1)[0]
    assert "SENTIMENT_FOLLOW_PRODUCTION=$${SENTIMENT_FOLLOW_PRODUCTION:-1}" in serve_recipe
    image_env = yaml.safe_load((REPO / "bentofile.yaml").read_text())["docker"]["env"]
    assert image_env["SENTIMENT_FOLLOW_PRODUCTION"] == "0"


def answering(url: str) -> str | None:
    response = get(f"{url}/readyz", timeout=10)
    return response.headers.get("x-model-version") if response.status_code == 200 else None


INTERVAL_S = 0.3
SETTLED_S = 1.5  # a second worker's check interval, its load, and a request in flight


def wait_for_version(url: str, version: str, seconds: float = 60) -> float:
    """Poll /readyz until it names ``version``; the time it first did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if answering(url) == version:
            return time.monotonic()
        time.sleep(0.1)
    pytest.fail(f"/readyz never named version {version} (last: {answering(url)})")


@pytest.mark.slow
def test_promote_and_roll_back_under_load_without_a_restart(tmp_path: Path) -> None:
    """Two workers, each following the store on its own: a worker swaps within one check
    interval of the other (``SETTLED_S`` covers it and the load), never mid-request."""
    home = tmp_path / "bentoml"
    export_model(home, make_model(tmp_path / "v7", 6), "7")
    proc, url = serve(
        home,
        tmp_path,
        SENTIMENT_FOLLOW_PRODUCTION="1",
        SENTIMENT_FOLLOW_INTERVAL_S=str(INTERVAL_S),
        SENTIMENT_WORKERS="2",
    )
    answers: list[tuple[float, float, int, str | None]] = []  # sent, answered, status, version
    mixed: list[set[str]] = []  # a batch answered by more than one version
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(verify=TLS, timeout=60) as client:
            i = 0
            while not stop.is_set():
                sent = time.monotonic()
                if i % 4:
                    r = client.post(f"{url}/predict", json={"text": f"great shuttle {worker}"})
                    versions = {r.json()["model_version"]} if r.is_success else {None}
                else:
                    r = client.post(f"{url}/predict_batch", json={"texts": ["good", "bad"] * 4})
                    versions = {p["model_version"] for p in r.json()} if r.is_success else {None}
                if len(versions) > 1:
                    mixed.append(versions)
                answers.append((sent, time.monotonic(), r.status_code, versions.pop()))
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    try:
        wait_ready(proc, f"{url}/readyz", tmp_path / "server.log")
        assert answering(url) == "7"
        for thread in threads:
            thread.start()
        time.sleep(2)
        promoted = time.monotonic()
        export_model(home, make_model(tmp_path / "v8", 4), "8")  # what promotion exports
        swapped_in = wait_for_version(url, "8") + SETTLED_S
        time.sleep(3)
        rolled_back = time.monotonic()
        export_model(home, make_model(tmp_path / "v7", 6), "7")  # rollback re-exports 7
        swapped_back = wait_for_version(url, "7") + SETTLED_S
        time.sleep(1)
        tampered = make_model(tmp_path / "v9", 6)
        crafted(tampered)  # digests recorded as it is: the type allowlist refuses it
        export_model(home, tampered, "9")
        time.sleep(3)
        assert answering(url) == "7"
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=60)
        stop_group(proc, tmp_path / "server.log")

    assert [a for a in answers if a[2] != 200] == []
    assert mixed == [], "a request's texts are scored by one model"
    before = [v for sent, done, _, v in answers if done < promoted]
    on_8 = [v for sent, done, _, v in answers if sent > swapped_in and done < rolled_back]
    after = [v for sent, done, _, v in answers if sent > swapped_back]
    assert before and set(before) == {"7"}
    assert on_8 and set(on_8) == {"8"}
    assert after and set(after) == {"7"}, "the refused version 9 never answered"
    eights = [(sent, done) for sent, done, _, v in answers if v == "8"]
    assert min(done for _, done in eights) > promoted
    assert max(sent for sent, _ in eights) < swapped_back
    log = (tmp_path / "server.log").read_text()
    refused = [line for line in log.splitlines() if f"refused {BENTO_MODEL}:" in line]
    assert len(refused) == 2, log[-3000:]  # once by each worker
    assert all("untrusted types" in line for line in refused)
    assert {line.split("] [", 1)[1].split("]")[0] for line in refused} == {
        "entry_service:Sentiment:1",
        "entry_service:Sentiment:2",
    }
