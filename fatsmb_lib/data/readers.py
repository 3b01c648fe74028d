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
- :func:`read_table` -- a user's own CSV/TSV, with or without a header row, with a column
  mapping by name or by position.

Which dataset NAME means which file and reader is decided in :mod:`fatsmb_lib.data.datasets`.

Fast path: pandas' C parser with fixed dtypes. Only when that fails (or a value is out of
range) is the file scanned line by line, to report the first bad line exactly: every
:class:`DataError` names the file, the 1-based line number and what is wrong, and says what to
do. Every line must have the file's number of fields: the files are read with
``header=None`` and ``index_col=False`` and the column count is checked, so pandas never
turns a surplus first column into the index (which would silently shift every column).

Files are UTF-8; a byte order mark (BOM) before the first line is dropped, and a byte that is
not UTF-8 is reported with its line and how to convert the file. An error quotes a line of
the file only once the file is recognised as the declared format (some line of it passes
every check): a registration may name any file, and an error must not print back the contents
of one that is not a dataset (``/etc/passwd``); it then gives line numbers, field counts and
the shape of the offending value instead.
"""
from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

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
INT64_LIMIT = 2**63  # ids and integer timestamps must lie in [-2^63, 2^63)
TABLE_FIELDS = ("user", "item", "behavior", "timestamp")  # read_table's required mapping keys
ENCODING = "utf-8-sig"  # UTF-8, dropping a byte order mark (BOM) before the first line
RECOGNISE_LINES = 10_000  # lines looked at past a bad one for a line that passes every check
SEPARATORS = {"\t": "TAB", ",": "comma", ";": "semicolon", "|": "vertical bar"}
# Unix time by magnitude: dates from 1973 to 5138 in each unit (read_table's mixed-units check)
TIME_UNITS = (("seconds", 1e8, 1e11), ("milliseconds", 1e11, 1e14),
              ("microseconds", 1e14, 1e17), ("nanoseconds", 1e17, 1e20))


class DataError(ValueError):
    """A data file is missing or malformed; the message says where and what to do."""


class DataWarning(UserWarning):
    """Data were read, but something in them changes what the model sees (rows dropped by a
    rule, suspicious ids): the message says how many and which rule."""


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
        notes: what the reader removed or noticed (duplicate lines dropped, a declared
            behavior absent), one sentence each; ``preprocess.prepare`` keeps and warns them.
    """

    users: np.ndarray
    items: np.ndarray
    behaviors: np.ndarray
    timestamps: np.ndarray
    behavior_names: tuple[str, ...]
    item_titles: dict | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

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


def _line_error(path: Path, line_no: int, raw: str | None, problem: str, fix: str) -> DataError:
    """``raw`` is the line's text, or None when the file is not recognised as the declared
    format (its text is then not shown)."""
    where = "" if raw is None else f" in {_clip(raw)!r}"
    return DataError(f"{path}, line {line_no}: {problem}{where}. {fix}")


def _shape(value: str) -> str:
    """What a value looks like, without its content (for files that are not recognised)."""
    if not value:
        return "empty"
    if _is_number(value):
        return "a number"
    return f"a text of {len(value)} character{'s' if len(value) != 1 else ''}"


def _fix(key: str, value, kwarg: str, registration: str | None) -> str:
    """How to change one setting: in the registration (JSON) or as read_table's argument."""
    if registration:
        return f"set {json.dumps(key)}: {json.dumps(value)} in {registration}"
    return f"pass {kwarg}={value!r} to read_table"


def _sep_hint(line: str, sep: str, registration: str | None) -> str:
    """When ``line`` splits into more fields by another usual separator: which, and the fix."""
    counts = {s: len(line.split(s)) for s in SEPARATORS if s != sep}
    best = max(counts, key=counts.get)
    if counts[best] <= max(len(line.split(sep)), 1):
        return ""
    return (f" The line holds {counts[best]} fields separated by {SEPARATORS[best]}s: if the "
            f"file is {SEPARATORS[best]}-separated, {_fix('sep', best, 'sep', registration)}.")


def _is_int(text: str) -> bool:
    """An integer that fits in int64 (a longer one would overflow the arrays)."""
    try:
        value = int(text)
    except ValueError:
        return False
    return -INT64_LIMIT <= value < INT64_LIMIT


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_timestamp(text: str) -> bool:
    """A finite number within int64's range (an integer literal must fit exactly)."""
    try:
        return -INT64_LIMIT <= int(text) < INT64_LIMIT
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return False
    return bool(np.isfinite(value)) and abs(value) < INT64_LIMIT


# A column check: (column index, what it must be, test).
Check = tuple[int, str, Callable[[str], bool]]


def _problem(fields: list[str], n_fields: int, checks: list[Check], show: bool) -> str | None:
    """What is wrong with one line (None: nothing); ``show``: quote the offending value."""
    if len(fields) != n_fields:
        return f"expected {n_fields} fields, found {len(fields)}"
    for col, what, ok in checks:
        if not ok(fields[col]):
            value = repr(fields[col]) if show else _shape(fields[col])
            return f"field {col + 1} is {value}, not {what}"
    return None


def _scan(path: Path, records: Iterator[tuple[int, list[str], str]], n_fields: int,
          checks: list[Check], layout: str) -> DataError | None:
    """Return a DataError for the first record that breaks a check, or None.

    The error quotes the line only when the file is recognised: some line passes every check
    (looked for up to :data:`RECOGNISE_LINES` lines past the bad one)."""
    bad, recognised, looked = None, False, 0
    for line_no, fields, raw in records:
        if not fields or fields == [""]:
            continue  # blank lines are skipped, as pandas does
        if _problem(fields, n_fields, checks, show=False) is None:
            recognised = True
        elif bad is None:
            bad = (line_no, fields, raw)
        if bad is not None:
            looked += 1
            if recognised or looked > RECOGNISE_LINES:
                break
    if bad is None:
        return None
    line_no, fields, raw = bad
    problem = _problem(fields, n_fields, checks, show=recognised)
    if recognised:
        return _line_error(path, line_no, raw, problem, f"Each line must be {layout}.")
    return _line_error(path, line_no, None, problem,
                       f"Each line must be {layout}. No line of the file looks like that, so no "
                       f"line is quoted: check that this is the data file you meant (and its "
                       f"separator).")


def _split_records(path: Path, sep: str, skip: int = 0) -> Iterator[tuple[int, list[str], str]]:
    with open(path, encoding=ENCODING, errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line_no <= skip:
                continue
            raw = line.rstrip("\r\n")
            yield line_no, raw.split(sep), raw


def _csv_records(path: Path, sep: str, header: bool = True) -> Iterator[tuple[int, list[str], str]]:
    with open(path, encoding=ENCODING, errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        if header:
            next(reader, None)
        for fields in reader:
            yield reader.line_num, fields, sep.join(fields)


def _check_width(df: pd.DataFrame, n_fields: int, explain: Callable[[], DataError | None],
                 path: Path) -> None:
    """Every line must have ``n_fields`` fields. pandas infers the width from the first line
    (with ``header=None``), raises on a longer line and pads a shorter one, so a wrong first
    line shows in ``df.shape`` and padding shows as empty or NaN cells: only then is the file
    scanned for the exact line."""
    if df.shape[1] != n_fields:
        raise explain() or DataError(f"{path}: expected {n_fields} fields per line, found "
                                     f"{df.shape[1]}. Check the separator.")


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{path} not found. {what}")


def encoding_error(path: Path) -> DataError | None:
    """A DataError naming the first line of ``path`` that is not UTF-8 (None: all are)."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = line[exc.start]
                return DataError(
                    f"{path}, line {line_no}: byte 0x{byte:02x} (at character {exc.start + 1}) is "
                    f"not UTF-8; the file must be UTF-8. Convert it, e.g. `iconv -f cp1252 -t "
                    f"utf-8 {path.name} > utf8-{path.name}` (cp1252: Excel on Windows; gbk or "
                    f"gb18030 for Chinese exports, shift_jis for Japanese ones), then point to "
                    f"the converted file.")
    return None


def _read_or_explain(read: Callable[[], pd.DataFrame], explain: Callable[[], DataError | None],
                     path: Path) -> pd.DataFrame:
    """Run the fast parser; if it fails, scan the file for the exact bad line."""
    empty = DataError(f"{path} is empty. Put the interactions there, one per line.")
    try:
        df = read()
    except pd.errors.EmptyDataError:
        raise empty from None
    except UnicodeDecodeError:
        raise encoding_error(path) or DataError(f"{path} is not UTF-8; convert it.") from None
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
        (3, "an integer timestamp that fits in int64", _is_int),
    ]

    def explain() -> DataError | None:
        return _scan(path, _split_records(path, "\t"), 4, checks, layout)

    # no names: the width comes from the data and is checked (see _check_width); a short
    # line leaves an empty int field, which fails the int64 conversion
    df = _read_or_explain(lambda: pd.read_csv(
        path, sep="\t", header=None, index_col=False,
        dtype={0: np.int64, 1: np.int64, 2: "category", 3: np.int64},
        engine="c", na_filter=False, encoding=ENCODING), explain, path)
    _check_width(df, 4, explain, path)
    column = df[2].cat
    # position of each row's name in `names`; -1 marks an unknown name
    codes = pd.Index(names).get_indexer(column.categories)[column.codes].astype(np.int64)
    if (codes < 0).any() or (column.codes < 0).any():
        raise explain() or DataError(f"{path}: unknown behavior names; known: {names}.")
    return Interactions(
        users=df[0].to_numpy(), items=df[1].to_numpy(), behaviors=codes + 1,
        timestamps=df[3].to_numpy(), behavior_names=names, source=str(path))


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
    with open(path, encoding=ENCODING, errors="replace") as f:
        header = f.readline().rstrip("\r\n")
    if tuple(header.split("\t")) != ML100K_HEADER:
        raise _line_error(path, 1, header, "unexpected header",
                          f"The header must be {'<TAB>'.join(ML100K_HEADER)}.")
    checks: list[Check] = [
        (0, "an integer user id", _is_int),
        (1, "an integer item id", _is_int),
        (2, "a rating in 1..5", lambda s: _is_number(s) and float(s) in (1, 2, 3, 4, 5)),
        (3, "an integer timestamp that fits in int64",
         lambda s: _is_timestamp(s) and float(s).is_integer()),
    ]

    def explain() -> DataError | None:
        return _scan(path, _split_records(path, "\t", skip=1), 4, checks, layout)

    # the header is skipped, not parsed: with header=0, lines one field longer than the
    # header would make pandas take the first column as the index
    df = _read_or_explain(lambda: pd.read_csv(
        path, sep="\t", header=None, skiprows=1, index_col=False,
        dtype={0: np.int64, 1: np.int64, 2: np.float64, 3: np.float64},
        engine="c", encoding=ENCODING), explain, path)
    _check_width(df, 4, explain, path)
    rating = df[2].to_numpy()
    timestamps = df[3].to_numpy()
    bad = (~np.isin(rating, [1, 2, 3, 4, 5]) | ~np.isfinite(timestamps)
           | (timestamps != np.round(timestamps)) | (np.abs(timestamps) >= INT64_LIMIT))
    if bad.any():
        raise explain() or DataError(f"{path}: ratings must be 1..5 and timestamps integers.")
    # rating 1-2 -> neg (1), 3 -> neutral (2), 4-5 -> pos (3)
    behaviors = np.select([rating <= 2, rating == 3], [1, 2], default=3).astype(np.int64)
    return Interactions(
        users=df[0].to_numpy(), items=df[1].to_numpy(), behaviors=behaviors,
        timestamps=timestamps.astype(np.int64), behavior_names=ML100K_BEHAVIORS,
        item_titles=_ml100k_titles(path.with_suffix(".item")), source=str(path))


# --------------------------------------------------------------------------- users' own tables

def _keys(column: pd.Series) -> np.ndarray:
    """Raw keys as int64 when every key is an integer that int64 holds exactly (so they sort
    numerically), else str (e.g. 20-digit hashed ids stay exact as text)."""
    as_number = pd.to_numeric(column, errors="coerce")
    if as_number.notna().all():
        if as_number.dtype.kind == "i":
            return as_number.to_numpy().astype(np.int64)
        values = as_number.to_numpy(dtype=np.float64)
        if (values == np.round(values)).all() and (np.abs(values) < 2**53).all():
            return values.astype(np.int64)
    return column.to_numpy().astype(str)


def _timestamps(column: pd.Series) -> np.ndarray | None:
    """int64 when every value is an integer, else float64; None if any value is not a finite
    number within int64's range (the caller then reports the line)."""
    values = pd.to_numeric(column, errors="coerce")
    if values.dtype.kind == "i":
        return values.to_numpy().astype(np.int64)
    as_float = values.to_numpy(dtype=np.float64)
    if not (np.isfinite(as_float) & (np.abs(as_float) < INT64_LIMIT)).all():
        return None
    if (as_float == np.round(as_float)).all():
        return as_float.astype(np.int64)
    return as_float


def _first_fields(path: Path, sep: str) -> tuple[int, list[str]]:
    """(1-based line number, fields) of the first non-blank line."""
    for line_no, fields, _ in _data_records(path, sep, 2):
        return line_no, fields
    raise DataError(f"{path} is empty. Put the interactions there, one per line.")


def _data_records(path: Path, sep: str, n: int) -> list[tuple[int, list[str], str]]:
    """The first ``n`` non-blank records of ``path``; a non-UTF-8 byte among them is reported."""
    records = []
    try:
        with open(path, encoding=ENCODING, newline="") as f:
            reader = csv.reader(f, delimiter=sep)
            for fields in reader:
                if fields and fields != [""]:
                    records.append((reader.line_num, fields, sep.join(fields)))
                    if len(records) == n:
                        break
    except UnicodeDecodeError:
        raise encoding_error(path) or DataError(f"{path} is not UTF-8; convert it.") from None
    return records


def _column_name(key: str, column: str | int) -> str:
    return f"position {column}" if isinstance(column, int) else f"{column!r}"


def _header_problems(path: Path, sep: str, header: bool, records: list, col_at: dict,
                     registration: str | None) -> None:
    """The first line is a header although ``header`` is False: its timestamp is a name (not a
    number) while the next line's is a number."""
    if header or len(records) < 2:
        return
    column = col_at["timestamp"]
    (line_no, first, raw), (next_no, second, _) = records[:2]
    if len(second) > column and not _is_timestamp(first[column]) and _is_timestamp(second[column]):
        raise DataError(
            f"{path}, line {line_no} looks like a header: its timestamp field (position "
            f"{column}) is {_clip(first[column], 40)!r}, not a number, while line {next_no}'s "
            f"is a number. If the first line names the columns, "
            f"{_fix('header', True, 'header', registration)} (columns may then be given by name).")


def _mapping_error(path: Path, line_no: int, first: list[str], sep: str, header: bool,
                   problem: str, registration: str | None) -> DataError:
    """A column of the mapping is not in the first line: say what the line holds (its names
    when it is a header of names; never its data) and the likely fix."""
    line = sep.join(first)
    if len(first) == 1:
        hint = _sep_hint(line, sep, registration) or (
            " No usual separator (TAB , ; |) splits it either: check that this is the data "
            "file you meant.")
        return DataError(f"{path}, line {line_no}: {problem}: the line has 1 field when split "
                         f"by {sep!r}.{hint}")
    if header and not any(_is_number(name) for name in first):
        names = ", ".join(_clip(name, 30) for name in first[:12]) + (", ..." if len(first) > 12 else "")
        return DataError(f"{path}, line {line_no}: {problem}. The header has: {names}; fix the "
                         f"mapping \"columns\".")
    if header:
        return DataError(
            f"{path}, line {line_no}: {problem}. The line has {len(first)} fields and holds "
            f"numbers, so it looks like data, not column names: if the file has no header row, "
            f"{_fix('header', False, 'header', registration)} and give columns as 0-based "
            f"positions.")
    return DataError(f"{path}, line {line_no}: {problem}: the line has {len(first)} fields, "
                     f"positions 0..{len(first) - 1}.{_sep_hint(line, sep, registration)}")


def _units(timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """{unit: mask} of the timestamps whose magnitude reads as Unix time in that unit."""
    size = np.abs(timestamps.astype(np.float64))
    masks = {unit: (size >= lo) & (size < hi) for unit, lo, hi in TIME_UNITS}
    return {unit: mask for unit, mask in masks.items() if mask.any()}


def _mixed_units_error(path: Path, timestamps: np.ndarray, line_of: Callable[[float], int | None],
                       registration: str | None) -> DataError | None:
    units = _units(timestamps)
    if len(units) < 2:
        return None
    ranked = sorted(units, key=lambda unit: -units[unit].sum())
    parts = []
    for unit in ranked:
        example, count = timestamps[units[unit]][0].item(), int(units[unit].sum())
        line = line_of(example)
        parts.append(f"{count:,} look{'s' if count == 1 else ''} like {unit} (e.g. {example}"
                     + (f", line {line})" if line else ")"))
    return DataError(
        f"{path}: the timestamps mix units: {'; '.join(parts)}, judged by their size (Unix "
        f"time is about 1.7e9 in seconds, 1.7e12 in milliseconds). Sorted together, every "
        f"{ranked[-1]} value would come after every {ranked[0]} one and scramble the order of "
        f"each user's interactions. Convert them to one unit (e.g. divide milliseconds by 1000) "
        f"in the file{' named by ' + registration if registration else ''}.")


def read_table(path: str | Path, columns: Mapping[str, str | int], sep: str | None = None,
               behavior_names: tuple[str, ...] | None = None,
               header: bool = True, registration: str | None = None) -> Interactions:
    """Read a CSV/TSV with a column mapping, with or without a header row.

    Args:
        path: the file (UTF-8; a BOM before the first line is dropped).
        columns: maps ``user``, ``item``, ``behavior``, ``timestamp`` (and optionally
            ``title``, an item title) to a column: a name from the header row, or a 0-based
            position (the only choice when ``header`` is False). The four roles need four
            different columns.
        sep: field separator; None picks it from the extension (.tsv/.txt -> tab, .csv -> comma).
        behavior_names: behavior names in order (id = position + 1); None -> the sorted
            unique names found in the file.
        header: whether the first line names the columns.
        registration: the ``.dataset.json`` these settings come from, if any: errors then say
            what to change in it (JSON) rather than which argument to pass.

    Every line must have as many fields as the header (or, without one, as the first line).
    Lines that repeat an earlier line exactly (same user, item, behavior and timestamp) are
    dropped, and timestamps that mix units (seconds and milliseconds, by size) are refused.
    What was dropped, and a declared behavior that no line has, go into ``notes`` (warned
    by ``preprocess.prepare``).
    """
    path = Path(path)
    missing = [k for k in TABLE_FIELDS if k not in columns]
    unknown = sorted(set(columns) - {*TABLE_FIELDS, "title"})
    if missing or unknown:
        raise DataError(f"columns must map {', '.join(TABLE_FIELDS)} (and optionally title) to "
                        f"column names or 0-based positions; missing: {', '.join(missing) or '-'}"
                        f"; unknown: {', '.join(unknown) or '-'}.")
    if sep is None:
        seps = {".tsv": "\t", ".txt": "\t", ".csv": ","}
        if path.suffix.lower() not in seps:
            fix = (f'add "sep" to {registration}, e.g. "sep": "\\t" (TAB) or "sep": ","'
                   if registration else "pass sep='\\t' (TAB) or sep=',' to read_table")
            raise DataError(f"{path}: cannot tell the separator from the extension "
                            f"{path.suffix!r}; {fix}.{_double_colon_hint(path)}")
        sep = seps[path.suffix.lower()]
    require_file(path, "Check the path (relative paths start from the working directory).")
    records = _data_records(path, sep, 2)
    if not records:
        raise DataError(f"{path} is empty. Put the interactions there, one per line.")
    first_line, first, _ = records[0]
    col_at = {}
    for key, column in columns.items():
        if isinstance(column, bool) or not isinstance(column, (int, str)):
            raise DataError(f"columns[{key!r}] = {column!r}: give a column name or a 0-based "
                            f"position.")
        if isinstance(column, int):
            if not 0 <= column < len(first):
                raise _mapping_error(path, first_line, first, sep, header,
                                     f"no column at position {column} (0-based) for {key!r}",
                                     registration)
            col_at[key] = column
        elif not header:
            raise DataError(f"{path}: columns[{key!r}] = {column!r} is a name, but the file has "
                            f"no header row (header=False): give a 0-based position.")
        elif column not in first:
            raise _mapping_error(path, first_line, first, sep, header,
                                 f"no column named {column!r}", registration)
        else:
            col_at[key] = first.index(column)
    roles: dict[int, list[str]] = {}
    for key in TABLE_FIELDS:
        roles.setdefault(col_at[key], []).append(key)
    for column, keys in roles.items():
        if len(keys) > 1:
            given = ", ".join(f"{k} -> {_column_name(k, columns[k])}" for k in keys)
            raise DataError(
                f"{path}: columns gives one column (position {column}) to {' and '.join(keys)} "
                f"({given}); user, item, behavior and timestamp each need their own column. "
                f"Fix \"columns\"{' in ' + registration if registration else ''}.")
    _header_problems(path, sep, header, records, col_at, registration)
    known = None if behavior_names is None else set(behavior_names)
    layout = (f"{len(first)} fields separated by {sep!r}, as in the "
              f"{'header' if header else 'first line'}")
    checks: list[Check] = [(col_at["timestamp"], "a number (e.g. Unix seconds) within int64's "
                            "range", _is_timestamp)]
    if known is not None:
        checks.append((col_at["behavior"], f"a known behavior name (one of "
                       f"{', '.join(behavior_names)})", known.__contains__))

    def explain() -> DataError | None:
        return _scan(path, _csv_records(path, sep, header), len(first), checks, layout)

    df = _read_or_explain(lambda: pd.read_csv(
        path, sep=sep, header=None, skiprows=first_line if header else first_line - 1,
        index_col=False, dtype=str, keep_default_na=False, engine="c", encoding=ENCODING),
        explain, path)
    _check_width(df, len(first), explain, path)
    if (df[len(first) - 1] == "").any():  # pandas pads a short line with empty cells
        error = explain()
        if error is not None:
            raise error
    timestamps = _timestamps(df[col_at["timestamp"]])
    raw_behaviors = df[col_at["behavior"]].astype(str)
    names = tuple(sorted(raw_behaviors.unique()) if behavior_names is None else behavior_names)
    codes = pd.Index(names).get_indexer(raw_behaviors).astype(np.int64)  # -1: unknown
    if timestamps is None or (codes < 0).any():
        raise explain() or DataError(f"{path}: bad timestamps or behavior names.")

    def line_of(value) -> int | None:
        """The line of the first timestamp equal to ``value`` (error path only)."""
        for line_no, fields, _ in _csv_records(path, sep, header):
            if len(fields) > col_at["timestamp"] and _is_number(fields[col_at["timestamp"]]) \
                    and float(fields[col_at["timestamp"]]) == float(value):
                return line_no
        return None

    mixed = _mixed_units_error(path, timestamps, line_of, registration)
    if mixed is not None:
        raise mixed
    users, items = _keys(df[col_at["user"]]), _keys(df[col_at["item"]])
    behaviors = codes + 1
    notes = []
    repeated = pd.DataFrame({"u": users, "i": items, "b": behaviors, "t": timestamps}).duplicated()
    if repeated.any():
        n, keep = int(repeated.sum()), ~repeated.to_numpy()
        k = int(np.flatnonzero(repeated.to_numpy())[0])
        notes.append(
            f"{n:,} of {len(df):,} lines repeat an earlier line exactly (same user, item, behavior "
            f"and timestamp; the first: user {users[k]}, item {items[k]}, {names[behaviors[k] - 1]} "
            f"at {timestamps[k].item()}): dropped them, keeping one of each. A repeat carries no order, "
            f"and a repeated last interaction would make a user's validation and test items the "
            f"same. If they are distinct events, give them distinct timestamps.")
        users, items, behaviors, timestamps = users[keep], items[keep], behaviors[keep], timestamps[keep]
        df = df[keep]
    counts = np.bincount(behaviors, minlength=len(names) + 1)[1:]
    if behavior_names is not None and (counts == 0).any():
        absent = [name for name, c in zip(names, counts) if c == 0]
        them = "them" if len(absent) > 1 else "it"
        where = _column_name("behavior", columns["behavior"])
        declared = f'"behaviors" in {registration}' if registration else "behavior_names"
        per_behavior = ", ".join(f"{name} {c:,}" for name, c in zip(names, counts))
        notes.append(
            f"{'behaviors' if len(absent) > 1 else 'behavior'} {', '.join(map(repr, absent))} "
            f"{'are' if len(absent) > 1 else 'is'} declared but no line has {them} (lines per "
            f"behavior: {per_behavior}), so {them} can never be a target and "
            f"{'their embeddings are' if len(absent) > 1 else 'its embedding is'} never "
            f"trained. Check the behavior column ({where}); if the data simply lack {them}, "
            f"remove {them} from {declared} to silence this.")
    titles = None
    if "title" in col_at:
        firsts = ~pd.Series(items).duplicated().to_numpy()   # each item's first title
        titles = dict(zip(items[firsts].tolist(), df[col_at["title"]].to_numpy()[firsts].tolist()))
    return Interactions(
        users=users, items=items, behaviors=behaviors, timestamps=timestamps,
        behavior_names=names, item_titles=titles, source=str(path), notes=tuple(notes))


def _double_colon_hint(path: Path) -> str:
    """MovieLens 1M/10M ``.dat`` files separate fields by '::', which no one-character sep reads."""
    try:
        records = _data_records(path, "\t", 1) if path.is_file() else []
    except DataError:
        return ""
    if records and "::" in records[0][2]:
        return (f" Its lines separate fields by '::' (MovieLens 1M style), two characters: "
                f"convert it first, e.g. `sed 's/::/\\t/g' {path.name} > {path.stem}.tsv`, "
                f"and register the .tsv.")
    return ""
