"""Labelled text for classification proxies: local CSV / JSONL / Parquet files and a built-in task.

Every source becomes a ``LabelledData``: train and validation rows (a text, an optional second
text of a pair, a class index), the class names and a short fingerprint of what was read.

- ``stdlib-packages`` (the built-in task, no download): which of a dozen standard-library
  packages (``asyncio``, ``email``, ``json``, ``xml``, ...) a chunk of Python source comes from.
  Each ``*.py`` file of those packages (test folders skipped, as in the built-in corpus) gives up
  to ``_CHUNKS_PER_FILE`` chunks of ``_CHUNK_BYTES`` bytes taken at evenly spaced offsets. The
  classes are unbalanced (``encodings`` has a hundred files, ``logging`` three), so macro-F1
  says more than accuracy. The split is by file, so no validation chunk shares a file with a
  train chunk, and stratified, so every class is on both sides: in each package, the
  ``ceil(validation_fraction * files)`` files whose relative paths have the lowest sha256 (the
  digest the corpus's split uses) are held out (at least one, never all).
- a ``.csv``, ``.jsonl`` (one JSON object per line) or ``.parquet`` file (Parquet needs
  ``pyarrow``) read with pandas, with named text, optional text-pair and label columns. Labels are
  integers or strings; classes are their sorted distinct values. A row is held out when the first
  32 bits of the sha256 of its text (and pair), as a fraction of 2**32, fall below
  ``validation_fraction``: the split depends only on the row's content, never on a seed or the
  row order, and equal texts always fall on the same side.

Bad data is one ``ValueError`` before any training, naming the file, the column and a remedy.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frugal_search.proxy.data import is_validation_file

logger = logging.getLogger(__name__)

BUILTIN_TASK = "stdlib-packages"
# The classes of the built-in task: standard-library packages present in every CPython 3.10-3.13,
# of very different sizes (3 to ~120 files).
STDLIB_PACKAGES: tuple[str, ...] = (
    "asyncio", "ctypes", "email", "encodings", "http", "importlib",
    "json", "logging", "multiprocessing", "unittest", "urllib", "xml",
)
FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")
_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__"})
_CHUNK_BYTES = 384
_CHUNKS_PER_FILE = 8
# joins a text pair into one key for the split hash; never inside ordinary text
_PAIR_SEPARATOR = "\x1f"
_FINGERPRINT_HEX = 12


@dataclass(frozen=True)
class LabelledDataSpec:
    """Which labelled rows a classification proxy trains and evaluates on (see the module docstring)."""

    source: str = BUILTIN_TASK  # "stdlib-packages", or a .csv / .jsonl / .parquet file
    text_column: str = "text"  # files: the column of the (first) text
    text_pair_column: str | None = None  # files: the column of the second text of a pair, if any
    label_column: str = "label"  # files: integers or strings
    validation_fraction: float = 0.2  # share of files (built-in) or of rows (files) held out

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        for name in ("text_column", "label_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty column name, got {getattr(self, name)!r}")
        if self.text_pair_column is not None and self.text_pair_column in (self.text_column, self.label_column):
            raise ValueError(
                f"text_pair_column {self.text_pair_column!r} is also the text or label column; name another column"
            )


@dataclass(frozen=True, eq=False)
class LabelledRows:
    """One part (train or validation) of a labelled data set."""

    texts: tuple[str, ...]
    pairs: tuple[str, ...] | None  # second texts of the pairs, parallel to ``texts``; None for single texts
    labels: np.ndarray  # (N,) int64 class indices into ``LabelledData.label_names``

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Train and validation rows of one labelled source, with the class names."""

    train: LabelledRows
    validation: LabelledRows
    label_names: tuple[str, ...]  # class index -> the label as written in the data (str of ints for integers)
    fingerprint: str  # short hex digest of what was read
    description: str  # words for logs

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    def class_counts(self) -> np.ndarray:
        """Rows per class in the train part, (num_labels,) int64."""
        return np.bincount(self.train.labels, minlength=self.num_labels)

    def is_unbalanced(self, *, ratio: float = 1.5) -> bool:
        """Whether the largest train class has more than ``ratio`` times the rows of the smallest."""
        counts = self.class_counts()
        return bool(counts.max() > ratio * max(counts.min(), 1))


LabelledDataLike = LabelledDataSpec | str | LabelledData


def build_labelled_data(data: LabelledDataLike) -> LabelledData:
    """Return the ``LabelledData`` of ``data`` (a ``LabelledDataSpec``, a source string or a ``LabelledData``).

    Results are cached in-process per spec, as :func:`~frugal_search.proxy.data.build_data` does.

    Raises:
        ValueError: the file is missing, empty or of an unknown kind; a named column is missing; the
            labels are neither integers nor strings or have one class; a text column holds numbers;
            a part of the split is empty.
    """
    if isinstance(data, LabelledData):
        return data
    if isinstance(data, str):
        data = LabelledDataSpec(data)
    if not isinstance(data, LabelledDataSpec):
        raise TypeError(
            f"labelled data must be a LabelledDataSpec, a source string or a LabelledData; got {type(data).__name__}"
        )
    return _build_cached(data)


def is_labelled_source(source: str) -> bool:
    """Return whether a data source string names labelled data (the built-in task or a labelled file)."""
    return source == BUILTIN_TASK or Path(source).suffix in FILE_SUFFIXES


@functools.lru_cache(maxsize=8)
def _build_cached(spec: LabelledDataSpec) -> LabelledData:
    if spec.source == BUILTIN_TASK:
        return _build_stdlib_packages(spec)
    path = Path(spec.source).expanduser()
    if path.suffix not in FILE_SUFFIXES:
        raise ValueError(
            f"unknown labelled data source {spec.source!r}: use {BUILTIN_TASK!r} or a file ending in "
            f"{', '.join(FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise ValueError(f"labelled data file {spec.source!r} does not exist (or is not a file)")
    return _build_from_file(path, spec)


# ---- the built-in task ---------------------------------------------------------------------


def _build_stdlib_packages(spec: LabelledDataSpec) -> LabelledData:
    root = Path(sysconfig.get_paths()["stdlib"])
    packages = [name for name in STDLIB_PACKAGES if (root / name).is_dir()]
    if len(packages) < 2:
        raise ValueError(f"the standard library at {root} lacks the packages of {BUILTIN_TASK!r}; use a labelled file")
    parts: dict[bool, tuple[list[str], list[int]]] = {False: ([], []), True: ([], [])}
    fingerprint = hashlib.sha256(f"{BUILTIN_TASK}|{_CHUNK_BYTES}|{_CHUNKS_PER_FILE}|{spec.validation_fraction}".encode())
    for label, package in enumerate(packages):
        relatives = [path.relative_to(root).as_posix() for path in _package_files(root / package)]
        by_digest = sorted(relatives, key=lambda relative: hashlib.sha256(relative.encode()).digest())
        held_out = set(by_digest[: min(len(relatives) - 1, max(1, math.ceil(spec.validation_fraction * len(relatives))))])
        for relative in relatives:
            content = (root / relative).read_bytes()
            fingerprint.update(f"{relative}|{len(content)}\n".encode())
            texts, labels = parts[relative in held_out]
            for chunk in _chunks(content):
                texts.append(chunk.decode("utf-8", errors="replace"))
                labels.append(label)
    return _assemble(
        {held_out: (texts, None, labels) for held_out, (texts, labels) in parts.items()},
        label_names=tuple(packages),
        fingerprint=fingerprint.hexdigest()[:_FINGERPRINT_HEX],
        description=f"built-in task {BUILTIN_TASK} ({len(packages)} classes)",
    )


def _package_files(package: Path) -> list[Path]:
    files: list[Path] = []
    for directory, subdirectories, names in os.walk(package):
        subdirectories[:] = sorted(d for d in subdirectories if d not in _SKIPPED_DIRS)
        files.extend(Path(directory) / name for name in sorted(names) if name.endswith(".py"))
    return files


def _chunks(content: bytes) -> list[bytes]:
    """Up to ``_CHUNKS_PER_FILE`` non-blank chunks of ``_CHUNK_BYTES`` at evenly spaced offsets."""
    count = min(_CHUNKS_PER_FILE, max(1, len(content) // _CHUNK_BYTES))
    stride = max(_CHUNK_BYTES, (len(content) - _CHUNK_BYTES) // max(1, count - 1)) if count > 1 else _CHUNK_BYTES
    chunks = [content[i * stride : i * stride + _CHUNK_BYTES] for i in range(count)]
    return [chunk for chunk in chunks if chunk.strip()]


# ---- files -------------------------------------------------------------------------------------


def _read_table(path: Path):  # -> pandas.DataFrame
    import pandas as pd

    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as error:
        raise ValueError(f"labelled data file {str(path)!r} is empty; give a file with a header and rows") from error
    except ImportError as error:
        raise ValueError(
            f"reading the Parquet file {str(path)!r} needs pyarrow: pip install pyarrow (or give a .csv / .jsonl file)"
        ) from error
    except ValueError as error:  # malformed JSON lines, a broken Parquet file
        raise ValueError(f"cannot read labelled data file {str(path)!r}: {error}") from error


def _build_from_file(path: Path, spec: LabelledDataSpec) -> LabelledData:
    frame = _read_table(path)
    where = f"labelled data file {str(path)!r}"
    if frame.shape[0] == 0:
        raise ValueError(f"{where} has no rows; give a file with labelled rows")
    columns = [spec.text_column, spec.label_column] + ([spec.text_pair_column] if spec.text_pair_column else [])
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{where} has no column {', '.join(map(repr, missing))}; its columns are {list(map(str, frame.columns))}; "
            "name the right ones (text_column, text_pair_column, label_column)"
        )
    texts = _text_column(frame[spec.text_column], spec.text_column, where)
    pairs = _text_column(frame[spec.text_pair_column], spec.text_pair_column, where) if spec.text_pair_column else None
    labels, label_names = _label_column(frame[spec.label_column], spec.label_column, where)
    parts: dict[bool, tuple[list[str], list[str] | None, list[int]]] = {
        flag: ([], [] if pairs is not None else None, []) for flag in (False, True)
    }
    for row, (text, label) in enumerate(zip(texts, labels)):
        key = text if pairs is None else f"{text}{_PAIR_SEPARATOR}{pairs[row]}"
        part_texts, part_pairs, part_labels = parts[is_validation_file(f"row|{key}", spec.validation_fraction)]
        part_texts.append(text)
        if part_pairs is not None:
            part_pairs.append(pairs[row])
        part_labels.append(label)
    fingerprint = hashlib.sha256(f"file|{path.name}|{columns}|{spec.validation_fraction}".encode())
    fingerprint.update(path.read_bytes())
    return _assemble(
        parts,
        label_names=label_names,
        fingerprint=fingerprint.hexdigest()[:_FINGERPRINT_HEX],
        description=f"labelled file {path.name}",
    )


def _text_column(column, name: str, where: str) -> list[str]:  # column: pandas.Series
    import pandas as pd

    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(f"{where}: text column {name!r} is empty in row {row}; fill or drop such rows")
    numbers = pd.api.types.is_numeric_dtype(column) or all(
        isinstance(value, (int, float, np.number)) for value in column
    )
    if numbers:
        raise ValueError(
            f"{where}: text column {name!r} holds numbers ({column.iloc[0]!r}, ...), not text; name the column of the "
            "texts (text_column / text_pair_column)"
        )
    not_text = [value for value in column if not isinstance(value, str)]
    if not_text:
        raise ValueError(
            f"{where}: text column {name!r} holds {type(not_text[0]).__name__} values such as {not_text[0]!r}; "
            "every cell must be a string"
        )
    return column.tolist()


def _label_column(column, name: str, where: str) -> tuple[list[int], tuple[str, ...]]:  # column: pandas.Series
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise ValueError(f"{where}: label column {name!r} is empty in row {row}; fill or drop such rows")
    values = column.tolist()
    if all(_is_integer(value) for value in values):
        classes: list = sorted({int(value) for value in values})
        values = [int(value) for value in values]
    elif all(isinstance(value, str) for value in values):
        classes = sorted(set(values))
    else:
        odd = [value for value in values if not (_is_integer(value) or isinstance(value, str))]
        found = f"{type(odd[0]).__name__} values such as {odd[0]!r}" if odd else "both integers and strings"
        raise ValueError(
            f"{where}: label column {name!r} holds {found}; labels must be all integers or all strings (class names)"
        )
    if len(classes) < 2:
        raise ValueError(
            f"{where}: label column {name!r} has a single class ({classes[0]!r}); a classifier needs at least two"
        )
    index = {value: i for i, value in enumerate(classes)}
    return [index[value] for value in values], tuple(str(value) for value in classes)


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# ---- both --------------------------------------------------------------------------------------


def _assemble(
    parts: dict[bool, tuple[Sequence[str], Sequence[str] | None, Sequence[int]]],
    *,
    label_names: tuple[str, ...],
    fingerprint: str,
    description: str,
) -> LabelledData:
    rows = {
        held_out: LabelledRows(
            texts=tuple(texts),
            pairs=tuple(pairs) if pairs is not None else None,
            labels=np.asarray(labels, dtype=np.int64),
        )
        for held_out, (texts, pairs, labels) in parts.items()
    }
    train, validation = rows[False], rows[True]
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            f"{description} gave {len(train)} train and {len(validation)} validation rows; add rows or change "
            "validation_fraction"
        )
    if len(np.unique(train.labels)) < 2:
        raise ValueError(f"the train part of {description} has a single class; add rows of other classes")
    logger.debug("read %s: %d train and %d validation rows", description, len(train), len(validation))
    return LabelledData(
        train=train, validation=validation, label_names=label_names, fingerprint=fingerprint, description=description
    )
