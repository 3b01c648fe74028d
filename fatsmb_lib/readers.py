"""Raw multi-behavior interactions: read them from disk into one array-based record.

Every dataset the notebooks use ends up as an :class:`Interactions` (one row per
interaction: user, item, behavior, timestamp) before `preprocess.prepare` turns it into
dense ids and time-ordered sequences. Readers:

- :func:`read_mbstr` -- the MB-STR text format of the paper's Yelp / Retail / IJCAI
  (Section 4.1.1, Table 2): one interaction per line, ``uid<TAB>sid<TAB>behavior<TAB>timestamp``,
  no header, behavior given by name.
- :func:`read_ml100k` -- MovieLens-100K as shipped inside the PyPI package ``recbole``
  (read from the installed package, never copied: its licence forbids redistribution),
  turned multi-behavior by the project's fixed recipe (rating 1-2 -> neg, 3 -> neutral,
  4-5 -> pos).
- :func:`read_table` -- a user's own CSV/TSV with a column mapping.

Which dataset NAME means which file and reader is decided in :mod:`fatsmb_lib.datasets`.

Fast path: pandas' C parser with fixed dtypes. Only when that fails (or a value is out of
range) is the file scanned line by line, to report the first bad line exactly: every
:class:`DataError` names the file, the 1-based line number and the offending text, and says
what to do.
"""
from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

ML100K_BEHAVIORS: tuple[str, ...] = ("neg", "neutral", "pos")
PAPER_DATA_HINT = (
    "The paper's data come from the MB-STR / authors' repositories: "
    "https://github.com/yuanenming/mb-str (download link in its README) and "
    "https://github.com/OrchidViolet/FatsMB. See data/README.md."
)
RECBOLE_HINT = (
    "Install it with `pip install --no-deps recbole==1.2.1` (our Makefile's install step does "
    "that); only its bundled data file is read, the package is never imported."
)
ML100K_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")


class DataError(ValueError):
    """A data file is missing or malformed; the message says where and what to do."""


@dataclass
class Interactions:
    """One row per interaction, in no particular order.

    Attributes:
        users: (n,) raw user keys (int64 or str).
        items: (n,) raw item keys (int64 or str).
        behaviors: (n,) int64 behavior ids in 1..n_behaviors.
        timestamps: (n,) int64 or float64.
        behavior_names: behavior id ``i`` is named ``behavior_names[i - 1]``.
        item_titles: raw item key -> title, or None.
        source: the file read, or a description of how the data were made.
    """

    users: np.ndarray
    items: np.ndarray
    behaviors: np.ndarray
    timestamps: np.ndarray
    behavior_names: tuple[str, ...]
    item_titles: dict | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.users)
        lengths = {len(self.items), len(self.behaviors), len(self.timestamps)}
        assert lengths == {n}, "users, items, behaviors and timestamps must have one length"
        assert self.behaviors.dtype == np.int64, "behaviors must be int64 ids 1..n_behaviors"
        if n:
            lo, hi = int(self.behaviors.min()), int(self.behaviors.max())
            assert 1 <= lo and hi <= len(self.behavior_names), (
                f"behavior ids must lie in 1..{len(self.behavior_names)}, got {lo}..{hi}")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_behaviors(self) -> int:
        return len(self.behavior_names)


# --------------------------------------------------------------------------- diagnostics

def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _line_error(path: Path, line_no: int, raw: str, problem: str, fix: str) -> DataError:
    return DataError(f"{path}, line {line_no}: {problem} in {_clip(raw)!r}. {fix}")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# A column check: (column index, what it must be, test).
Check = tuple[int, str, Callable[[str], bool]]


def _scan(path: Path, records: Iterator[tuple[int, list[str], str]], n_fields: int,
          checks: list[Check], layout: str) -> DataError | None:
    """Return a DataError for the first record that breaks a check, or None."""
    for line_no, fields, raw in records:
        if not fields or fields == [""]:
            continue  # blank lines are skipped, as pandas does
        if len(fields) != n_fields:
            return _line_error(path, line_no, raw,
                               f"expected {n_fields} fields, found {len(fields)}",
                               f"Each line must be {layout}.")
        for col, what, ok in checks:
            if not ok(fields[col]):
                return _line_error(path, line_no, raw,
                                   f"field {col + 1} is {fields[col]!r}, not {what}",
                                   f"Each line must be {layout}.")
    return None


def _split_records(path: Path, sep: str, skip: int = 0) -> Iterator[tuple[int, list[str], str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line_no <= skip:
                continue
            raw = line.rstrip("\r\n")
            yield line_no, raw.split(sep), raw


def _csv_records(path: Path, sep: str) -> Iterator[tuple[int, list[str], str]]:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        next(reader, None)  # header
        for fields in reader:
            yield reader.line_num, fields, sep.join(fields)


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{path} not found. {what}")


def _read_or_explain(read: Callable[[], pd.DataFrame], explain: Callable[[], DataError | None],
                     path: Path) -> pd.DataFrame:
    """Run the fast parser; if it fails, scan the file for the exact bad line."""
    empty = DataError(f"{path} is empty. Put the interactions there, one per line.")
    try:
        df = read()
    except pd.errors.EmptyDataError:
        raise empty from None
    except (ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:
        error = explain()
        if error is not None:
            raise error from None
        raise DataError(f"{path}: could not be parsed ({exc}). Check the file's format.") from exc
    if len(df) == 0:
        raise empty
    return df


# --------------------------------------------------------------------------- MB-STR

def read_mbstr(path: str | Path, behavior_names: tuple[str, ...]) -> Interactions:
    """Read an MB-STR text file: ``uid<TAB>sid<TAB>behavior<TAB>timestamp``, no header.

    Args:
        path: e.g. ``data/yelp.txt``.
        behavior_names: behavior names in the dataset's order (id = position + 1), e.g.
            ``MBSTR_BEHAVIORS["yelp"] == ("tip", "neg", "neutral", "pos")``.
    """
    path = Path(path)
    names = tuple(behavior_names)
    assert len(set(names)) == len(names), f"behavior_names has duplicates: {names}"
    require_file(path, f"Put the MB-STR file there (e.g. data/yelp.txt). {PAPER_DATA_HINT}")
    layout = "uid<TAB>sid<TAB>behavior<TAB>timestamp with integer ids and timestamp"
    known = set(names)
    checks: list[Check] = [
        (0, "an integer user id", _is_int),
        (1, "an integer item id", _is_int),
        (2, f"a known behavior name (one of {', '.join(names)})", known.__contains__),
        (3, "an integer timestamp", _is_int),
    ]

    def explain() -> DataError | None:
        return _scan(path, _split_records(path, "\t"), 4, checks, layout)

    df = _read_or_explain(lambda: pd.read_csv(
        path, sep="\t", header=None, names=["uid", "sid", "behavior", "timestamp"],
        dtype={"uid": np.int64, "sid": np.int64, "behavior": "category", "timestamp": np.int64},
        engine="c", na_filter=False), explain, path)
    column = df["behavior"].cat
    # position of each row's name in `names`; -1 marks an unknown name
    codes = pd.Index(names).get_indexer(column.categories)[column.codes].astype(np.int64)
    if (codes < 0).any():
        raise explain() or DataError(f"{path}: unknown behavior names; known: {names}.")
    return Interactions(
        users=df["uid"].to_numpy(), items=df["sid"].to_numpy(), behaviors=codes + 1,
        timestamps=df["timestamp"].to_numpy(), behavior_names=names, source=str(path))


# --------------------------------------------------------------------------- MovieLens-100K

def ml100k_path() -> Path:
    """Locate ``ml-100k.inter`` inside the installed ``recbole`` package without importing it.

    ``importlib.util.find_spec`` on a top-level name only finds the package; it does not run
    its ``__init__``.
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The package `recbole` is not installed, so MovieLens-100K "
                        f"(dataset 'ml100k') cannot be found. {RECBOLE_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example/ml-100k/ml-100k.inter"
    require_file(path, f"The installed recbole lacks its example data. {RECBOLE_HINT}")
    return path


def _ml100k_titles(path: Path) -> dict | None:
    """Titles from ``ml-100k.item`` beside the interactions, or None when it is absent."""
    if not path.is_file():
        return None
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    if "item_id:token" not in df.columns or "movie_title:token_seq" not in df.columns:
        return None
    keys = pd.to_numeric(df["item_id:token"], errors="coerce")
    ok = keys.notna().to_numpy()
    return dict(zip(keys[ok].astype(np.int64).tolist(), df["movie_title:token_seq"][ok].tolist()))


def read_ml100k(path: str | Path | None = None) -> Interactions:
    """MovieLens-100K as multi-behavior data (943 users, 1,682 items, 100,000 interactions).

    Canonical recipe (never change it: our comparisons depend on it): rating 1-2 -> ``neg``,
    3 -> ``neutral``, 4-5 -> ``pos``, so ``behavior_names == ("neg", "neutral", "pos")``.

    Args:
        path: an ``ml-100k.inter`` file (tab-separated, typed header
            ``user_id:token item_id:token rating:float timestamp:float``); None locates the one
            inside the installed ``recbole`` package (see :func:`ml100k_path`).
    """
    path = ml100k_path() if path is None else Path(path)
    require_file(path, f"Give the path to an ml-100k.inter file, or pass None. {RECBOLE_HINT}")
    layout = "user_id<TAB>item_id<TAB>rating<TAB>timestamp under a typed header"
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\r\n")
    if tuple(header.split("\t")) != ML100K_HEADER:
        raise _line_error(path, 1, header, "unexpected header",
                          f"The header must be {'<TAB>'.join(ML100K_HEADER)}.")
    checks: list[Check] = [
        (0, "an integer user id", _is_int),
        (1, "an integer item id", _is_int),
        (2, "a rating in 1..5", lambda s: _is_number(s) and float(s) in (1, 2, 3, 4, 5)),
        (3, "an integer timestamp", lambda s: _is_number(s) and float(s).is_integer()),
    ]

    def explain() -> DataError | None:
        return _scan(path, _split_records(path, "\t", skip=1), 4, checks, layout)

    df = _read_or_explain(lambda: pd.read_csv(
        path, sep="\t", header=0, names=["user", "item", "rating", "timestamp"],
        dtype={"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.float64},
        engine="c"), explain, path)
    rating = df["rating"].to_numpy()
    timestamps = df["timestamp"].to_numpy()
    bad = ~np.isin(rating, [1, 2, 3, 4, 5]) | (timestamps != np.round(timestamps))
    if bad.any():
        raise explain() or DataError(f"{path}: ratings must be 1..5 and timestamps integers.")
    # rating 1-2 -> neg (1), 3 -> neutral (2), 4-5 -> pos (3)
    behaviors = np.select([rating <= 2, rating == 3], [1, 2], default=3).astype(np.int64)
    return Interactions(
        users=df["user"].to_numpy(), items=df["item"].to_numpy(), behaviors=behaviors,
        timestamps=timestamps.astype(np.int64), behavior_names=ML100K_BEHAVIORS,
        item_titles=_ml100k_titles(path.with_suffix(".item")), source=str(path))


# --------------------------------------------------------------------------- users' own tables

def _keys(column: pd.Series) -> np.ndarray:
    """Raw keys as int64 when every key is an integer (so they sort numerically), else str."""
    as_int = pd.to_numeric(column, errors="coerce")
    if as_int.notna().all() and (as_int == np.round(as_int)).all():
        return as_int.to_numpy().astype(np.int64)
    return column.to_numpy().astype(str)


def read_table(path: str | Path, columns: dict[str, str], sep: str | None = None,
               behavior_names: tuple[str, ...] | None = None) -> Interactions:
    """Read a CSV/TSV with a header row and a column mapping.

    Args:
        path: the file.
        columns: maps ``user``, ``item``, ``behavior``, ``timestamp`` to column names.
        sep: field separator; None picks it from the extension (.tsv/.txt -> tab, .csv -> comma).
        behavior_names: behavior names in order (id = position + 1); None -> the sorted
            unique names found in the file.
    """
    path = Path(path)
    needed = ("user", "item", "behavior", "timestamp")
    missing = [k for k in needed if k not in columns]
    if missing:
        raise DataError(f"columns must map {', '.join(needed)} to column names; missing: "
                        f"{', '.join(missing)}.")
    if sep is None:
        seps = {".tsv": "\t", ".txt": "\t", ".csv": ","}
        if path.suffix.lower() not in seps:
            raise DataError(f"{path}: cannot tell the separator from the extension "
                            f"{path.suffix!r}; pass sep=',' or sep='\\t'.")
        sep = seps[path.suffix.lower()]
    require_file(path, "Check the path (relative paths start from the working directory).")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    absent = [columns[k] for k in needed if columns[k] not in header]
    if absent:
        raise _line_error(path, 1, sep.join(header),
                          f"no column named {', '.join(map(repr, absent))}",
                          f"The header has: {', '.join(header)}; fix the mapping `columns`.")
    col_at = {k: header.index(columns[k]) for k in needed}
    known = None if behavior_names is None else set(behavior_names)
    layout = f"{len(header)} fields separated by {sep!r}, as in the header"
    checks: list[Check] = [(col_at["timestamp"], "a number (e.g. Unix seconds)", _is_number)]
    if known is not None:
        checks.append((col_at["behavior"], f"a known behavior name (one of "
                       f"{', '.join(behavior_names)})", known.__contains__))

    def explain() -> DataError | None:
        return _scan(path, _csv_records(path, sep), len(header), checks, layout)

    df = _read_or_explain(lambda: pd.read_csv(
        path, sep=sep, header=0, dtype=str, keep_default_na=False, engine="c"), explain, path)
    timestamps = pd.to_numeric(df[columns["timestamp"]], errors="coerce")
    raw_behaviors = df[columns["behavior"]].astype(str)
    names = tuple(sorted(raw_behaviors.unique()) if behavior_names is None else behavior_names)
    codes = pd.Index(names).get_indexer(raw_behaviors).astype(np.int64)  # -1: unknown
    if timestamps.isna().any() or (codes < 0).any():
        raise explain() or DataError(f"{path}: bad timestamps or behavior names.")
    ts = timestamps.to_numpy()
    ts = ts.astype(np.int64) if (ts == np.round(ts)).all() else ts.astype(np.float64)
    return Interactions(
        users=_keys(df[columns["user"]]), items=_keys(df[columns["item"]]), behaviors=codes + 1,
        timestamps=ts, behavior_names=names, source=str(path))
