"""Data readers: the built-in corpus split, text folders and globs, token files, batch windows."""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from frugal_search.proxy import DataSpec, build_data, check_data, is_validation_file


def _held_out(relative: str, fraction: float) -> bool:
    # the documented rule, written out: first 32 bits of sha256(path) as a fraction of 2**32
    return int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def test_stdlib_split_is_by_file_deterministic_and_disjoint() -> None:
    spec = DataSpec(max_bytes=2 * 2**20)
    data = build_data(spec)
    assert data.vocab_size == 256
    assert set(data.train_files).isdisjoint(data.validation_files)
    assert data.validation_files, "the validation part must not be empty"
    for relative in data.train_files + data.validation_files:
        assert is_validation_file(relative, 0.05) == _held_out(relative, 0.05)
        assert "site-packages" not in relative and "/test/" not in f"/{relative}"
    # the validation tokens are exactly those files' bytes, each followed by a NUL separator
    root = Path(sysconfig.get_paths()["stdlib"])
    expected = b"".join((root / relative).read_bytes() + b"\x00" for relative in data.validation_files)
    assert data.validation.tobytes() == expected
    # a second read (not the in-process cache: a different but equal-content spec) agrees
    again = build_data(DataSpec(max_bytes=2 * 2**20, validation_fraction=0.05 + 0.0))
    assert again.fingerprint == data.fingerprint
    np.testing.assert_array_equal(again.train, data.train)


def test_text_folder_bytes_split_by_the_rule(tmp_path: Path) -> None:
    texts = {f"doc{i:02d}.txt": (f"document number {i} " * (20 + i)).encode() for i in range(40)}
    for name, content in texts.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / ".hidden").write_bytes(b"never read")
    data = build_data(DataSpec(str(tmp_path), validation_fraction=0.2))
    expected_validation = sorted(name for name in texts if _held_out(name, 0.2))
    assert list(data.validation_files) == expected_validation
    assert sorted(data.train_files + data.validation_files) == sorted(texts)
    assert data.train.tobytes() == b"".join(texts[name] + b"\x00" for name in data.train_files)
    # a glob selects the same files
    globbed = build_data(DataSpec(str(tmp_path / "*.txt"), validation_fraction=0.2))
    assert globbed.fingerprint == data.fingerprint


def test_text_folder_with_a_local_tokenizer(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    words = ["alpha", "beta", "gamma", "delta"]
    vocab = {"[UNK]": 0, "</s>": 1, **{word: i + 2 for i, word in enumerate(words)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>")
    tokenizer.save_pretrained(tmp_path / "tok")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"f{i}.txt").write_text(" ".join(words[(i + j) % 4] for j in range(50)))
    data = build_data(DataSpec(str(corpus), tokenizer=str(tmp_path / "tok"), validation_fraction=0.2))
    assert data.vocab_size == len(vocab)
    first = data.train_files[0]
    first_ids = [vocab[w] for w in (corpus / first).read_text().split()] + [vocab["</s>"]]
    assert data.train[: len(first_ids)].tolist() == first_ids


def test_npy_token_file_tail_is_validation_and_windows_are_contiguous(tmp_path: Path) -> None:
    tokens = (np.arange(10_000) % 5000).astype(np.uint16)
    path = tmp_path / "tokens.npy"
    np.save(path, tokens)
    data = build_data(DataSpec(str(path), validation_fraction=0.1))
    assert isinstance(data.train, np.memmap) or isinstance(data.train.base, np.memmap)
    assert len(data.train) == 9000 and len(data.validation) == 1000
    np.testing.assert_array_equal(data.validation, tokens[9000:])
    assert data.vocab_size == 5000  # largest id + 1
    batch = data.sample_train_batch(torch.Generator().manual_seed(0), batch_size=8, seq_len=16)
    assert batch.shape == (8, 17) and batch.dtype == torch.int64
    for window in batch.tolist():  # each window is one slice of the train part
        start = window[0]
        assert window == tokens[start : start + 17].tolist() and start + 17 <= 9000


def test_bin_token_file_needs_and_uses_its_dtype(tmp_path: Path) -> None:
    tokens = np.random.default_rng(0).integers(0, 70_000, size=4096, dtype=np.uint32)
    path = tmp_path / "tokens.bin"
    tokens.tofile(path)
    with pytest.raises(ValueError, match="dtype"):
        build_data(DataSpec(str(path)))
    data = build_data(DataSpec(str(path), dtype="uint32", validation_fraction=0.25))
    np.testing.assert_array_equal(np.concatenate([data.train, data.validation]), tokens)
    assert len(data.validation) == 1024
    assert data.vocab_size == int(tokens.max()) + 1


def test_eval_batches_are_fixed_and_seed_free() -> None:
    data = build_data(DataSpec(max_bytes=2**20))
    first = data.eval_batches(num_batches=3, batch_size=4, seq_len=32)
    torch.manual_seed(123)  # the global RNG must not matter
    second = data.eval_batches(num_batches=3, batch_size=4, seq_len=32)
    assert len(first) == 3
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # a different train seed draws different train windows
    one = data.sample_train_batch(torch.Generator().manual_seed(0), batch_size=4, seq_len=32)
    two = data.sample_train_batch(torch.Generator().manual_seed(1), batch_size=4, seq_len=32)
    assert not torch.equal(one, two)


def test_unknown_source_and_short_data_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data source"):
        build_data(DataSpec(str(tmp_path / "missing.txt")))
    with pytest.raises(ValueError, match=r"token file '.*missing\.bin' does not exist"):
        build_data(DataSpec(str(tmp_path / "missing.bin")))
    path = tmp_path / "few.npy"
    np.save(path, np.arange(100, dtype=np.uint16))
    with pytest.raises(ValueError, match="seq_len"):
        build_data(DataSpec(str(path), validation_fraction=0.1)).check_seq_len(64)


def _bad_sources(tmp_path: Path) -> dict[str, tuple[DataSpec, str]]:
    """Each broken data set-up a user can make, with the words its error must contain."""
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    np.save(tmp_path / "float.npy", np.arange(1000, dtype=np.float32))
    np.save(tmp_path / "int64.npy", np.arange(1000, dtype=np.int64))
    np.save(tmp_path / "empty.npy", np.zeros(0, dtype=np.uint16))
    (tmp_path / "not_numpy.npy").write_bytes(b"these are not the bytes of a .npy file")
    (tmp_path / "odd.bin").write_bytes(np.arange(1001, dtype=np.uint16).tobytes()[:-1])
    (tmp_path / "empty.bin").write_bytes(b"")
    ids = (np.arange(4000) % 200 + 1).astype(np.uint16)  # byte-vocabulary ids written as uint16
    (tmp_path / "ids16.bin").write_bytes(ids.tobytes())
    return {
        "empty folder": (DataSpec(str(empty)), "folder is empty"),
        "float32 .npy": (DataSpec(str(tmp_path / "float.npy")), "holds float32"),
        "int64 .npy": (DataSpec(str(tmp_path / "int64.npy")), "holds int64"),
        "empty .npy": (DataSpec(str(tmp_path / "empty.npy")), "holds 0 tokens"),
        "not a .npy": (DataSpec(str(tmp_path / "not_numpy.npy")), "not a readable NumPy"),
        ".bin of odd size": (DataSpec(str(tmp_path / "odd.bin"), dtype="uint16"), "not a whole number of uint16"),
        "empty .bin": (DataSpec(str(tmp_path / "empty.bin"), dtype="uint16"), "is empty"),
        ".bin without dtype": (DataSpec(str(tmp_path / "ids16.bin")), "needs dtype"),
        "uint16 read as uint32": (DataSpec(str(tmp_path / "ids16.bin"), dtype="uint32"), "embedding has 256 rows"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty folder",
        "float32 .npy",
        "int64 .npy",
        "empty .npy",
        "not a .npy",
        ".bin of odd size",
        "empty .bin",
        ".bin without dtype",
        "uint16 read as uint32",
    ],
)
def test_check_data_names_each_broken_source_in_one_line(tmp_path: Path, case: str) -> None:
    spec, words = _bad_sources(tmp_path)[case]
    with pytest.raises(ValueError, match=words) as raised:
        check_data(spec, seq_len=16, vocab_size=256)
    assert "\n" not in str(raised.value)


def test_check_data_passes_good_data_and_catches_short_windows(tmp_path: Path) -> None:
    ids = (np.arange(4000) % 200 + 1).astype(np.uint16)
    path = tmp_path / "ids16.bin"
    path.write_bytes(ids.tobytes())
    tokens = check_data(DataSpec(str(path), dtype="uint16"), seq_len=16, vocab_size=256)
    assert tokens.vocab_size == 201 and len(tokens.train) + len(tokens.validation) == 4000
    with pytest.raises(ValueError, match="too few for seq_len 1000"):
        check_data(DataSpec(str(path), dtype="uint16"), seq_len=1000, vocab_size=256)
    with pytest.raises(ValueError, match="at least 201"):
        check_data(DataSpec(str(path), dtype="uint16"), seq_len=16, vocab_size=100)
