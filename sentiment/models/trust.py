"""Model files the project trusts: skops files rebuilt only from allowlisted types, and
sha256 digests that tie a model directory to the files the gate decided on.

A skops file is a description of objects to rebuild; a crafted one can describe a
``FunctionTransformer`` whose ``func`` is ``builtins.eval``, so that scoring text runs it as
code. ``load_skops`` therefore lists *every* type and function the file names (before
anything is imported or built) and refuses the file unless all of them are on
``TRUSTED_TYPES``: the exact classes this project's own pipelines contain.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import deque
from pathlib import Path
from typing import Any
from zipfile import ZipFile

from sentiment.fileio import deterministic_zip, write_bytes

# Every type a skops file of this project may name: the classes that featurize, tune
# (each family, calibrated or not, binary or ternary) and drift put in their pipelines,
# and the containers and arrays skops stores their state in. Exact names, no prefixes, and
# no function: nothing here runs code of the file's choosing when called.
# To extend it (a new estimator in tune, say): add the class's full name as reported in
# the refusal message, and a case for it in tests/test_model_files.py.
TRUSTED_TYPES = frozenset(
    {
        # containers and arrays
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",  # also the key type skops records for dicts
        "numpy.ndarray",
        "numpy.float32",  # TfidfVectorizer(dtype=...)
        "numpy.float64",
        "numpy.int64",
        # featurize
        "sklearn.pipeline.FeatureUnion",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sentiment.data.text.Tokenizer",
        # tune
        "sklearn.pipeline.Pipeline",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.naive_bayes.ComplementNB",
        "sklearn.linear_model._stochastic_gradient.SGDClassifier",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sentiment.models.nbsvm.NBLogisticRegression",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.model_selection._split.StratifiedKFold",  # the calibration's folds
        # drift's reference projection
        "sklearn.decomposition._truncated_svd.TruncatedSVD",
        "sklearn.preprocessing._data.Normalizer",
    }
)


class UntrustedModelError(ValueError):
    """A model file names a type outside ``TRUSTED_TYPES``, or a file's digest differs."""


def skops_types(path: str | Path) -> set[str]:
    """Every type and function a skops file names, read from its schema; nothing is built."""
    from skops.io._audit import Node, get_tree
    from skops.io._general import MethodNode
    from skops.io._persist import read_schema
    from skops.io._utils import get_module

    with ZipFile(path) as archive:
        schema, load_context = read_schema(archive)
        tree = get_tree(schema, load_context, trusted=None)

    found: set[str] = set()
    seen: set[int] = set()
    pending: list[Any] = [tree]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        name = f"{node.module_name}.{node.class_name}"
        found.add(f"{name}.{node.func}" if isinstance(node, MethodNode) else name)
        for child in node.children.values():
            if isinstance(child, list):
                items = child
            elif isinstance(child, dict):
                items = list(child.values())
            else:
                items = [child]
            for item in items:
                if isinstance(item, Node):
                    pending.append(item)
                elif type(item) is type:
                    found.add(f"{get_module(item)}.{item.__name__}")
                elif item is not None and not isinstance(item, io.BytesIO | str):
                    raise UntrustedModelError(f"{path}: unknown skops content {type(item)}")
    return found


def canonical_skops(data: bytes) -> bytes:
    """A skops archive that depends only on the object: skops names objects and array files
    by ``id()``, which changes from run to run; renumber them in order of appearance, and
    drop the one scikit-learn attribute that holds an ``id()``.

    The schema is walked breadth-first with a deque, so the walk is linear in its nodes
    (millions for a large vocabulary). Only skops nodes (dicts with a ``__loader__`` string)
    are rewritten: a dict's content is keyed by the dict's own keys, so a vocabulary term
    such as ``file``, ``__id__`` or ``_stop_words_id`` is data, never schema."""
    with ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        names = set(archive.namelist())
    ids: dict[int, int] = {}
    files: dict[str, str] = {}
    pending: deque[Any] = deque([schema])
    while pending:
        node = pending.popleft()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            if isinstance(node.get("__loader__"), str):
                renumber_node(node, ids, files, names)
            pending.extend(node.values())
    replace = {"schema.json": json.dumps(schema, indent=2).encode()}
    return deterministic_zip(data, rename=files, replace=replace)


def renumber_node(
    node: dict[str, Any], ids: dict[int, int], files: dict[str, str], names: set[str]
) -> None:
    """Give one skops node the next object number and array-file name (in place)."""
    state = node.get("content")
    if node["__loader__"] == "ObjectNode" and isinstance(state, dict):
        # TfidfVectorizer caches id(stop_words) here only to skip a re-check on reuse.
        attributes = state.get("content")
        if isinstance(attributes, dict):
            attributes.pop("_stop_words_id", None)
    if isinstance(node.get("__id__"), int):
        node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
    file = node.get("file")
    if isinstance(file, str) and file in names:
        node["file"] = files.setdefault(file, f"{len(files) + 1}{Path(file).suffix}")


def save_skops(obj: Any, path: str | Path) -> None:
    """Persist a scikit-learn object with skops (no pickle), atomically and byte-identically
    for equal objects."""
    import skops.io as sio

    write_bytes(path, canonical_skops(sio.dumps(obj)))


def load_skops(path: str | Path) -> Any:
    """Load a skops file only if every type it names is in ``TRUSTED_TYPES``."""
    import skops.io as sio

    found = skops_types(path)
    refused = sorted(found - TRUSTED_TYPES)
    if refused:
        raise UntrustedModelError(f"{path}: refusing to load untrusted types {refused}")
    return sio.load(path, trusted=sorted(found))


def file_sha256(path: str | Path) -> str:
    """The sha256 of one file, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def file_digests(model_dir: str | Path) -> dict[str, str]:
    """sha256 of every file under a model directory, keyed by its relative POSIX path."""
    root = Path(model_dir)
    return {
        path.relative_to(root).as_posix(): file_sha256(path)
        for path in sorted(p for p in root.rglob("*") if p.is_file())
    }


def digest_mismatches(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What differs between two digest maps, one phrase per file (empty when they agree)."""
    problems = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            problems.append(f"{name} is missing")
        elif name not in expected:
            problems.append(f"{name} was not in the promoted model")
        elif expected[name] != actual[name]:
            problems.append(
                f"{name} has sha256 {actual[name][:12]}…, expected {expected[name][:12]}…"
            )
    return problems


def verify_digests(model_dir: str | Path, expected: dict[str, str] | None) -> None:
    """Refuse a model directory whose files are not exactly the ones recorded at promotion."""
    if not expected:
        raise UntrustedModelError(
            f"{model_dir}: no sha256 record of its files; re-export it from the registry"
        )
    problems = digest_mismatches(expected, file_digests(model_dir))
    if problems:
        raise UntrustedModelError(f"{model_dir}: model files differ: {'; '.join(problems)}")


# Inside a BentoML store model, the model directory sits in this subfolder, apart from
# BentoML's own model.yaml.
BENTO_SUBDIR = "model"
MODEL_CARD_KEY = "model_card"  # its metadata: the registry version's model card (Markdown)


def bento_model_dir(model: Any) -> Path:
    """The verified model directory of a BentoML store model (``bentoml.models.get`` or a
    service's ``BentoModel``): its files must match the sha256 record of its metadata."""
    model_dir = Path(model.path) / BENTO_SUBDIR
    verify_digests(model_dir, model.info.metadata.get("sha256"))
    return model_dir


def dir_size_mb(path: Path) -> float:
    """A model directory's size in MiB, all files counted (ONNX exports included)."""
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)
