"""Labelled data: the built-in task, CSV / JSONL / Parquet files, the row split, and every bad-data error."""

from __future__ import annotations

import hashlib
import json
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frugal_search.proxy import LabelledDataSpec, build_labelled_data

ROWS = [
    {"text": f"a short text number {i} about {'cats' if i % 3 else 'dogs'}", "other": f"reply {i}", "label": label}
    for i, label in enumerate(["neg", "pos", "pos", "neutral"] * 10)
]


def _held_out(key: str, fraction: float) -> bool:
    # the documented rule written out: the first 32 bits of sha256("row|" + content) against the fraction
    return int(hashlib.sha256(f"row|{key}".encode()).hexdigest()[:8], 16) / 2**32 < fraction


def _write(path: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        frame.to_parquet(path)
    return path


def test_builtin_task_is_split_by_file_with_every_class_on_both_sides() -> None:
    data = build_labelled_data("stdlib-packages")
    assert data.num_labels == 12 and "asyncio" in data.label_names and "encodings" in data.label_names
    for part in (data.train, data.validation):
        assert set(part.labels.tolist()) == set(range(12)) and part.pairs is None
    assert data.is_unbalanced()  # encodings has ~40 times the files of logging
    # no validation chunk is a piece of a train file: each chunk occurs in exactly one file of its package
    root = Path(sysconfig.get_paths()["stdlib"])
    package = data.label_names.index("json")
    train_json = {t for t, label in zip(data.train.texts, data.train.labels) if label == package}
    validation_json = {t for t, label in zip(data.validation.texts, data.validation.labels) if label == package}
    files = {p.relative_to(root).as_posix(): p.read_bytes().decode("utf-8", "replace") for p in (root / "json").glob("*.py")}
    owners = lambda chunks: {name for name, content in files.items() for chunk in chunks if chunk in content}  # noqa: E731
    assert owners(train_json).isdisjoint(owners(validation_json))
    # the lowest-digest file of the package is held out (ceil(0.2 * 5) = 1 file)
    first = min(files, key=lambda name: hashlib.sha256(name.encode()).digest())
    assert owners(validation_json) == {first}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_files_with_string_labels_and_text_pairs(tmp_path: Path, suffix: str) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (pip install pyarrow)")
    path = _write(tmp_path / f"rows{suffix}", ROWS)
    data = build_labelled_data(LabelledDataSpec(str(path), text_pair_column="other", validation_fraction=0.25))
    assert data.label_names == ("neg", "neutral", "pos")  # sorted distinct strings
    expected_validation = [r for r in ROWS if _held_out(f"{r['text']}\x1f{r['other']}", 0.25)]
    assert list(data.validation.texts) == [r["text"] for r in expected_validation]
    assert list(data.validation.pairs) == [r["other"] for r in expected_validation]
    assert [data.label_names[i] for i in data.validation.labels] == [r["label"] for r in expected_validation]
    assert len(data.train) + len(data.validation) == len(ROWS)


def test_integer_labels_and_the_split_do_not_depend_on_row_order(tmp_path: Path) -> None:
    rows = [{"text": row["text"], "label": [7, 3][i % 2]} for i, row in enumerate(ROWS)]
    first = build_labelled_data(str(_write(tmp_path / "a.csv", rows)))
    second = build_labelled_data(str(_write(tmp_path / "b.csv", rows[::-1])))
    assert first.label_names == ("3", "7")
    assert sorted(first.validation.texts) == sorted(second.validation.texts)
    assert first.class_counts().tolist() == np.bincount(first.train.labels).tolist()


@pytest.mark.parametrize(
    ("rows", "spec", "message"),
    [
        ([{"body": "x", "label": 1}, {"body": "y", "label": 0}], {}, r"no column 'text'; its columns are \['body', 'label'\]"),
        ([{"text": "x", "y": 1}, {"text": "z", "y": 0}], {}, r"no column 'label'"),
        ([{"text": f"t{i}", "label": "same"} for i in range(20)], {}, r"single class \('same'\)"),
        ([{"text": f"t{i}", "label": i + 0.5} for i in range(20)], {}, r"holds float values such as 0\.5.*integers or all strings"),
        ([{"text": f"t{i}", "label": [1, "a"][i % 2]} for i in range(20)], {}, r"both integers and strings"),
        ([{"text": i * 1.5, "label": i % 2} for i in range(20)], {}, r"text column 'text' holds numbers"),
        ([{"text": f"t{i}", "label": i % 2} for i in range(20)], {"text_pair_column": "label"}, r"also the text or label"),
    ],
    ids=["no-text-column", "no-label-column", "single-class", "float-labels", "mixed-labels", "numeric-text", "pair-is-label"],
)
def test_bad_files_give_one_value_error(tmp_path: Path, rows: list[dict], spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_labelled_data(LabelledDataSpec(str(_write(tmp_path / "bad.jsonl", rows)), **spec))


def test_empty_missing_and_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    (tmp_path / "empty.jsonl").write_text("")
    for name in ("empty.csv", "empty.jsonl"):
        with pytest.raises(ValueError, match="empty|no rows"):
            build_labelled_data(str(tmp_path / name))
    with pytest.raises(ValueError, match="has no rows"):
        build_labelled_data(str(tmp_path / "header.csv"))
    with pytest.raises(ValueError, match="does not exist"):
        build_labelled_data(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unknown labelled data source"):
        build_labelled_data(str(tmp_path / "rows.xlsx"))
    with pytest.raises(ValueError, match="empty in row 1"):
        _write(tmp_path / "gap.csv", [{"text": "a", "label": 0}, {"text": None, "label": 1}])
        build_labelled_data(str(tmp_path / "gap.csv"))
