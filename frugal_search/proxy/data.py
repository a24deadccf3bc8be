"""Token data for proxy runs: the built-in corpus, text files and pre-tokenised token files.

Every source becomes a ``TokenData``: a train and a validation array of token ids (NumPy; token
files stay memory-mapped), the vocabulary size and a short fingerprint of what was read.

- ``stdlib`` (the default): the ``*.py`` files of this Python's standard library
  (``sysconfig.get_paths()["stdlib"]``), read as bytes (vocabulary 256). Folders named
  ``site-packages``, ``dist-packages``, ``test``, ``tests``, ``idle_test`` and ``__pycache__`` are
  skipped (installed packages differ between machines; test suites are mostly fixtures). About
  ``max_bytes`` of them are read (8 MiB of the ~11 MiB of Python 3.11's), chosen in a fixed
  pseudo-random order of their relative paths so the sample covers every package.
- a folder (every regular, non-hidden file below it) or a glob of text files, read as bytes or
  tokenised with a local tokenizer directory, capped at ``max_bytes`` in the same way.
- a token file: ``.npy`` (its own dtype) or ``.bin`` (raw ids; ``dtype`` must be given), uint16 or
  uint32, memory-mapped; the last ``validation_fraction`` of it is the validation part.

Text sources are split into train and validation by file with a fixed rule: a file is validation
when the first 32 bits of the sha256 of its relative path, as a fraction of 2**32, fall below
``validation_fraction``. The split therefore depends only on the file names, never on a seed.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import math
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

STDLIB = "stdlib"
_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
_TOKEN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
_BYTE_VOCAB = 256
# Documents are joined with this byte; Python source and ordinary text never contain NUL.
_BYTE_SEPARATOR = b"\x00"
# Fixed seed of the generator that places the evaluation windows: the same for every run seed,
# so runs with different seeds are scored on the same held-out tokens.
_EVAL_WINDOW_SEED = 20241112
_FINGERPRINT_HEX = 12
_MAX_SCAN_CHUNK = 1 << 26
_MIN_TOKEN_FILE_LENGTH = 2  # one train and one validation token at least; check_seq_len asks for more


@dataclass(frozen=True)
class DataSpec:
    """Which tokens a proxy run trains and evaluates on (see the module docstring for the sources)."""

    source: str = STDLIB  # "stdlib", a folder, a glob of text files, or a .npy/.bin token file
    tokenizer: str | None = None  # local tokenizer directory for text; None reads bytes (vocabulary 256)
    dtype: str | None = None  # "uint16" or "uint32"; required for .bin token files
    validation_fraction: float = 0.05  # share of files (text) or of the tail (token files) held out
    max_bytes: int = 8 * 2**20  # text sources: stop reading files after this many bytes
    vocab_size: int | None = None  # token files: skip the scan for the largest id when given

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes!r}")
        if self.dtype is not None and self.dtype not in _TOKEN_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_TOKEN_DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True, eq=False)
class TokenData:
    """Train and validation token ids of one data source, ready to cut into batches."""

    train: np.ndarray  # 1-D token ids (may be a read-only memory map)
    validation: np.ndarray  # 1-D token ids, held out
    vocab_size: int  # ids are in [0, vocab_size)
    fingerprint: str  # short hex digest of what was read (files and sizes, or the token file)
    description: str  # words for logs
    train_files: tuple[str, ...] = ()  # text sources: relative paths of the files in the train part
    validation_files: tuple[str, ...] = ()  # text sources: relative paths of the held-out files

    def sample_train_batch(self, generator: torch.Generator, *, batch_size: int, seq_len: int) -> torch.Tensor:
        """Return (batch_size, seq_len + 1) int64 windows of the train part at starts drawn from ``generator``."""
        starts = torch.randint(0, len(self.train) - seq_len, (batch_size,), generator=generator)
        return _gather_windows(self.train, starts.numpy(), seq_len + 1)

    def eval_batches(self, *, num_batches: int, batch_size: int, seq_len: int) -> list[torch.Tensor]:
        """Return the fixed held-out batches: ``num_batches`` of (batch_size, seq_len + 1) windows.

        The windows are drawn by a generator with a fixed seed, independent of the run's seed.
        """
        generator = torch.Generator().manual_seed(_EVAL_WINDOW_SEED)
        starts = torch.randint(0, len(self.validation) - seq_len, (num_batches, batch_size), generator=generator)
        return [_gather_windows(self.validation, row.numpy(), seq_len + 1) for row in starts]

    def check_seq_len(self, seq_len: int) -> None:
        """Raise ``ValueError`` when either part is too short for windows of ``seq_len + 1`` tokens."""
        for part_name, part in (("train", self.train), ("validation", self.validation)):
            if len(part) <= seq_len + 1:
                raise ValueError(
                    f"the {part_name} part of {self.description} has {len(part)} tokens, too few for "
                    f"seq_len {seq_len}; use a shorter seq_len or more data"
                )


DataLike = DataSpec | str | TokenData


def build_data(data: DataLike) -> TokenData:
    """Return the ``TokenData`` of ``data`` (a ``DataSpec``, a source string, or a ``TokenData``).

    Results are cached in-process per spec, so many proxy runs in one search read the data once;
    files changed later in the same process are not read again.
    """
    if isinstance(data, TokenData):
        return data
    if isinstance(data, str):
        data = DataSpec(data)
    if not isinstance(data, DataSpec):
        raise TypeError(f"data must be a DataSpec, a source string or a TokenData; got {type(data).__name__}")
    return _build_cached(data)


@functools.lru_cache(maxsize=8)
def _build_cached(spec: DataSpec) -> TokenData:
    if spec.source == STDLIB:
        root = Path(sysconfig.get_paths()["stdlib"])
        return _read_text_files(root, _stdlib_files(root), spec, name="Python standard library")
    path = Path(spec.source).expanduser()
    if path.suffix in (".npy", ".bin") and path.is_file():
        return _read_token_file(path, spec)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        return _read_text_files(path, files, spec, name=f"text folder {spec.source}")
    if glob.has_magic(spec.source):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec.source), recursive=True) if os.path.isfile(p))
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")
        return _read_text_files(root, files, spec, name=f"text files {spec.source}")
    if path.suffix in (".npy", ".bin"):
        raise ValueError(f"token file {spec.source!r} does not exist (or is not a file)")
    raise ValueError(
        f"unknown data source {spec.source!r}: use 'stdlib', a folder or glob of text files, or a .npy/.bin token file"
    )


def _stdlib_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d not in _SKIPPED_DIRS]
        files.extend(Path(directory) / name for name in names if name.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def is_validation_file(relative_path: str, validation_fraction: float) -> bool:
    """Return whether the file at ``relative_path`` (POSIX form) belongs to the validation part."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < validation_fraction * 2**32


def _read_text_files(root: Path, files: list[Path], spec: DataSpec, *, name: str) -> TokenData:
    if not files:
        raise ValueError(
            f"no files found for data source {spec.source!r}: the folder is empty or the glob matches nothing; "
            "check the path"
        )
    tokenizer = _load_tokenizer(spec.tokenizer) if spec.tokenizer else None
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    names: dict[bool, list[str]] = {False: [], True: []}
    fingerprint = hashlib.sha256(f"text|{spec.tokenizer}|{spec.validation_fraction}".encode())
    for relative, content in _read_capped(root, files, spec.max_bytes):
        fingerprint.update(f"{relative}|{len(content)}\n".encode())
        held_out = is_validation_file(relative, spec.validation_fraction)
        parts[held_out].append(_encode(content, tokenizer))
        names[held_out].append(relative)
    vocab_size = len(tokenizer) if tokenizer is not None else _BYTE_VOCAB
    dtype = np.uint8 if vocab_size <= 2**8 else np.uint16 if vocab_size <= 2**16 else np.uint32
    train, validation = (_concatenate(parts[flag], dtype) for flag in (False, True))
    if len(validation) == 0 or len(train) == 0:
        raise ValueError(
            f"{name} gave {len(train)} train and {len(validation)} validation tokens; add files or change "
            f"validation_fraction ({spec.validation_fraction})"
        )
    logger.debug("read %s: %d train and %d validation tokens", name, len(train), len(validation))
    return TokenData(
        train=train,
        validation=validation,
        vocab_size=vocab_size,
        fingerprint=fingerprint.hexdigest()[:_FINGERPRINT_HEX],
        description=name,
        train_files=tuple(names[False]),
        validation_files=tuple(names[True]),
    )


def _read_capped(root: Path, files: list[Path], max_bytes: int) -> list[tuple[str, bytes]]:
    """Return (relative path, content) of a fixed sample of ``files`` of about ``max_bytes``, in path order.

    Files are taken in the order of sha256("order|" + relative path), a fixed shuffle, so a capped
    corpus samples every package rather than the alphabetically first ones.
    """
    relative_paths = {path.relative_to(root).as_posix(): path for path in files}
    shuffled = sorted(relative_paths, key=lambda relative: hashlib.sha256(f"order|{relative}".encode()).digest())
    chosen: list[tuple[str, bytes]] = []
    total_bytes = 0
    for relative in shuffled:
        if total_bytes >= max_bytes:
            break
        content = relative_paths[relative].read_bytes()
        total_bytes += len(content)
        chosen.append((relative, content))
    return sorted(chosen)


def _load_tokenizer(directory: str):  # -> transformers.PreTrainedTokenizerBase
    from transformers import AutoTokenizer

    if not Path(directory).expanduser().is_dir():
        raise ValueError(f"tokenizer {directory!r} is not a local directory; save one with tokenizer.save_pretrained(dir)")
    return AutoTokenizer.from_pretrained(str(Path(directory).expanduser()), local_files_only=True)


def _encode(content: bytes, tokenizer) -> np.ndarray:
    if tokenizer is None:
        return np.frombuffer(content + _BYTE_SEPARATOR, dtype=np.uint8)
    ids = tokenizer.encode(content.decode("utf-8", errors="replace"), add_special_tokens=False)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return np.asarray(ids, dtype=np.int64)


def _concatenate(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
    if not chunks:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(chunks).astype(dtype, copy=False)


def _read_token_file(path: Path, spec: DataSpec) -> TokenData:
    tokens = _open_npy(path) if path.suffix == ".npy" else _open_bin(path, spec.dtype)
    if len(tokens) < _MIN_TOKEN_FILE_LENGTH:
        raise ValueError(
            f"token file {str(path)!r} holds {len(tokens)} tokens; a proxy run needs a train and a validation "
            "part of at least one window each"
        )
    split_at = len(tokens) - max(1, math.ceil(spec.validation_fraction * len(tokens)))
    vocab_size = spec.vocab_size if spec.vocab_size is not None else _scan_vocab_size(tokens)
    fingerprint = hashlib.sha256(
        f"tokens|{path.name}|{tokens.dtype}|{len(tokens)}|{spec.validation_fraction}".encode()
    )
    # the first 1 MiB identifies the content without reading a multi-GiB file
    fingerprint.update(np.ascontiguousarray(tokens[: (1 << 20) // tokens.itemsize]).tobytes())
    return TokenData(
        train=tokens[:split_at],
        validation=tokens[split_at:],
        vocab_size=vocab_size,
        fingerprint=fingerprint.hexdigest()[:_FINGERPRINT_HEX],
        description=f"token file {path.name}",
    )


def _open_npy(path: Path) -> np.ndarray:
    try:
        tokens = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:  # not a .npy file, truncated, or a pickle
        raise ValueError(f"token file {str(path)!r} is not a readable NumPy .npy array ({error})") from None
    if tokens.dtype not in (np.uint16, np.uint32) or tokens.ndim != 1:
        raise ValueError(
            f"token file {str(path)!r} holds {tokens.dtype} of shape {tokens.shape}; save a 1-D uint16 or "
            "uint32 array"
        )
    return tokens


def _open_bin(path: Path, dtype: str | None) -> np.ndarray:
    if dtype is None:
        raise ValueError(f".bin token file {str(path)!r} needs dtype: 'uint16' or 'uint32'")
    itemsize = np.dtype(_TOKEN_DTYPES[dtype]).itemsize
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"token file {str(path)!r} is empty")
    if size % itemsize:
        raise ValueError(
            f"token file {str(path)!r} has {size} bytes, not a whole number of {dtype} ids ({itemsize} bytes "
            "each); is dtype right, or is the file truncated?"
        )
    return np.memmap(path, dtype=_TOKEN_DTYPES[dtype], mode="r")


def check_vocab_fits(tokens: TokenData, vocab_size: int | None) -> None:
    """Raise ``ValueError`` when ``tokens`` holds ids that an embedding of ``vocab_size`` rows cannot take.

    ``vocab_size`` None (a model whose embedding cannot be found) checks nothing. A ``.bin`` file
    read with the wrong dtype (uint16 ids read as uint32) shows up here as ids far above the vocabulary.
    """
    if vocab_size is not None and tokens.vocab_size > vocab_size:
        raise ValueError(
            f"{tokens.description} has token ids up to {tokens.vocab_size - 1} but the model's embedding has "
            f"{vocab_size} rows; use a model with a vocabulary of at least {tokens.vocab_size}, matching data, "
            "or (for a .bin file) the dtype it was written with"
        )


def check_data(data: DataLike, *, seq_len: int, vocab_size: int | None = None) -> TokenData:
    """Open ``data`` and check that proxy runs can use it; return its ``TokenData``.

    Meant to run once before a search starts any trial: a missing or empty source, a token file of
    the wrong dtype, shape or size, too few tokens for ``seq_len``, or ids outside a vocabulary of
    ``vocab_size`` raise one ``ValueError`` that names the source and what to change. The data is
    cached in-process (``build_data``), so the trials that follow do not read it again.
    """
    tokens = build_data(data)
    tokens.check_seq_len(seq_len)
    check_vocab_fits(tokens, vocab_size)
    return tokens


def _scan_vocab_size(tokens: np.ndarray) -> int:
    # in chunks, so a memory-mapped file is never loaded whole
    largest = 0
    for start in range(0, len(tokens), _MAX_SCAN_CHUNK):
        largest = max(largest, int(tokens[start : start + _MAX_SCAN_CHUNK].max()))
    return largest + 1


def _gather_windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> torch.Tensor:
    # (B,) starts -> (B, length) indices -> int64 ids; fancy indexing reads only these windows
    indices = starts[:, None].astype(np.int64) + np.arange(length, dtype=np.int64)
    return torch.from_numpy(tokens[indices].astype(np.int64))
