"""The dataset registry: which name means which source, in one place.

Every other module that needs a dataset by name asks here: :func:`load_interactions` reads
it, :func:`raw_file` says which file backs it (and fails early with what to do when it is
missing), :func:`source_identity` tells the preprocessing cache what the data depend on,
and :func:`profile_changes` gives the per-dataset adjustments of a run profile.

======================  ==========================================  ========================
name                    source                                      behaviors
======================  ==========================================  ========================
``ml100k``              the file inside the ``recbole`` wheel       neg, neutral, pos
``yelp``                ``<data_dir>/yelp.txt`` (MB-STR format)     tip, neg, neutral, pos
``retail``              ``<data_dir>/retail.txt``                   pv, fav, cart, buy
``ijcai``               ``<data_dir>/ijcai.txt`` (batch 64)         pv, fav, cart, buy
``synthetic-<preset>``  :data:`fatsmb_lib.data.synthetic.PRESETS`        the preset's
``synthetic-<preset>+<field>=<value>...``  the preset with those fields changed  the preset's
``<name>`` (yours)      ``<data_dir>/<name>.dataset.json``          as registered
======================  ==========================================  ========================

**Your own data.** A small JSON file ``<data_dir>/<name>.dataset.json`` registers a CSV/TSV
under ``name``; from then on ``name`` works everywhere a built-in name does (``open_run``,
``python -m fatsmb_lib.course.pipeline --dataset name``, papermill ``-p dataset name``)::

    {"file": "shop.csv",                      relative to data_dir (or absolute)
     "columns": {"user": 0, "item": 1, "behavior": 3, "timestamp": 4},
     "header": false,                         true: the first line names the columns
     "sep": ",",                              optional: from the extension (.csv , .tsv/.txt TAB)
     "behaviors": ["pv", "fav", "cart", "buy"],   behavior ids 1.. in this order
     "profile": {"batch_size": 64}}            optional: profile fields this dataset changes

**A synthetic variant** is named by its changes: ``synthetic-map+behavior_influence=0.5+
sparse_behavior_share=0.1`` is the ``map`` preset with those two ``SyntheticConfig`` fields
changed (values: numbers, or ``None``). The name is the identity everywhere (cache, run folders,
reports), so a grid of variants needs no registration.

``columns`` maps ``user``, ``item``, ``behavior``, ``timestamp`` (and optionally ``title``)
to header names or 0-based positions. :func:`register` writes such a file and checks it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..support.checkpoints import write_text
from ..support.paths import data_folder
from . import synthetic
from .readers import (
    ML100K_BEHAVIORS,
    PAPER_DATA_HINT,
    TABLE_FIELDS,
    DataError,
    Interactions,
    ml100k_path,
    read_mbstr,
    read_ml100k,
    read_table,
    require_file,
)


@dataclass(frozen=True)
class TableSource:
    """How to read a user's registered table (the fields of its ``.dataset.json``)."""

    file: str                         # relative to data_dir, or absolute
    columns: dict                     # user/item/behavior/timestamp[/title] -> name or position
    header: bool = True
    sep: str | None = None            # None: from the file's extension
    registration: str = ""            # the .dataset.json it was read from


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: ``kind`` is "ml100k" | "mbstr" | "synthetic" | "table" (registered)."""

    name: str
    kind: str
    behaviors: tuple[str, ...]
    profile_changes: dict = field(default_factory=dict)  # e.g. IJCAI's batch 64 (Sec. 4.1.4)
    table: TableSource | None = None


REGISTRATION_SUFFIX = ".dataset.json"
REGISTRATION_HINT = ("To use your own CSV/TSV, register it: write <data_dir>/<name>.dataset.json "
                     "(see data/README.md) or call fatsmb_lib.data.datasets.register(...).")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SYNTHETIC_PREFIX = "synthetic-"
HASH_BYTES = 1 << 20  # bytes hashed at each end of a raw file for the cache key
TABLE_READER_VERSION = 2  # read_table's rules (2: exact duplicate lines dropped); in the cache key
REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (
        DatasetSpec("ml100k", "ml100k", ML100K_BEHAVIORS),
        DatasetSpec("yelp", "mbstr", ("tip", "neg", "neutral", "pos")),
        DatasetSpec("retail", "mbstr", ("pv", "fav", "cart", "buy")),
        DatasetSpec("ijcai", "mbstr", ("pv", "fav", "cart", "buy"), {"batch_size": 64}),
        *(DatasetSpec(SYNTHETIC_PREFIX + preset, "synthetic", config.behavior_names)
          for preset, config in synthetic.PRESETS.items()),
    )
}
KNOWN_DATASETS: tuple[str, ...] = tuple(REGISTRY)


def registration_path(name: str, data_dir: str | Path | None = None) -> Path:
    """Where the registration of dataset ``name`` lives: ``<data_dir>/<name>.dataset.json``."""
    return data_folder(data_dir) / f"{name}{REGISTRATION_SUFFIX}"


def registered(data_dir: str | Path | None = None) -> tuple[str, ...]:
    """Names registered in ``data_dir`` (one ``<name>.dataset.json`` each), sorted."""
    folder = data_folder(data_dir)
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name.removesuffix(REGISTRATION_SUFFIX)
                        for p in folder.glob(f"*{REGISTRATION_SUFFIX}")))


def synthetic_variant(preset: str, **changes) -> str:
    """The dataset name of synthetic ``preset`` with ``changes`` (``SyntheticConfig`` fields),
    e.g. ``synthetic_variant("map", behavior_influence=0.5)`` ->
    ``"synthetic-map+behavior_influence=0.5"``; :func:`synthetic_config` reads it back."""
    return SYNTHETIC_PREFIX + "+".join([preset, *(f"{k}={v}" for k, v in changes.items())])


def _parse_variant(dataset: str) -> synthetic.SyntheticConfig:
    """The config of ``synthetic-<preset>+<field>=<value>...``; DataError naming the part
    that is wrong and what is allowed."""
    preset, *parts = dataset.removeprefix(SYNTHETIC_PREFIX).split("+")
    if preset not in synthetic.PRESETS:
        raise DataError(f"dataset {dataset!r}: unknown synthetic preset {preset!r}; known: "
                        f"{', '.join(synthetic.PRESETS)}")
    base = synthetic.PRESETS[preset]
    changes = {}
    for part in parts:
        field_name, sep, text = part.partition("=")
        if not sep or not hasattr(base, field_name):
            raise DataError(f"dataset {dataset!r}: {part!r} is not <field>=<value> with a field of "
                            f"SyntheticConfig ({', '.join(asdict(base))})")
        current = getattr(base, field_name)
        if not (current is None or isinstance(current, (int, float))):
            raise DataError(f"dataset {dataset!r}: {field_name} is not a number; a variant "
                            f"changes numeric fields only (add a preset for the others)")
        try:
            changes[field_name] = (None if text == "None" else
                                   int(text) if isinstance(current, int) else float(text))
        except ValueError:
            raise DataError(f"dataset {dataset!r}: {field_name}={text!r} is not "
                            f"{'an integer' if isinstance(current, int) else 'a number'} "
                            f"(or None)") from None
    try:
        return replace(base, **changes)
    except AssertionError as exc:
        raise DataError(f"dataset {dataset!r}: {exc}") from None


def spec(dataset: str, data_dir: str | Path | None = None) -> DatasetSpec:
    """The entry of ``dataset``: a built-in one, a synthetic variant, else its registration in
    ``data_dir``. An unknown name lists the known ones and says how to register a file."""
    if dataset in REGISTRY:
        return REGISTRY[dataset]
    if dataset.startswith(SYNTHETIC_PREFIX) and "+" in dataset:
        return DatasetSpec(dataset, "synthetic", _parse_variant(dataset).behavior_names)
    path = registration_path(dataset, data_dir) if NAME_PATTERN.fullmatch(dataset) else None
    if path is not None and path.is_file():
        return _read_registration(dataset, path)
    mine = registered(data_dir)
    raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(KNOWN_DATASETS)}"
                    + (f"; registered in {data_dir}: {', '.join(mine)}" if mine else "")
                    + f". {REGISTRATION_HINT}")


def _registration_error(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}. A registration looks like {{\"file\": \"shop.csv\", "
                     f"\"columns\": {{\"user\": 0, \"item\": 1, \"behavior\": 3, "
                     f"\"timestamp\": 4}}, \"header\": false, \"behaviors\": [\"pv\", \"buy\"]}}"
                     f" (see data/README.md).")


def _read_registration(name: str, path: Path) -> DatasetSpec:
    """Parse and check ``<name>.dataset.json``; every problem names the file and the key."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _registration_error(path, f"not valid JSON (line {exc.lineno}, column "
                                        f"{exc.colno}: {exc.msg})") from None
    if not isinstance(entry, dict):
        raise _registration_error(path, "must hold one JSON object")
    allowed = {"file", "columns", "behaviors", "header", "sep", "profile"}
    unknown, missing = sorted(set(entry) - allowed), sorted({"file", "columns", "behaviors"} - set(entry))
    if unknown or missing:
        raise _registration_error(path, f"unknown key(s) {unknown}, missing key(s) {missing}; "
                                        f"allowed: {sorted(allowed)}")
    columns, behaviors = entry["columns"], entry["behaviors"]
    header, sep, profile = entry.get("header", True), entry.get("sep"), entry.get("profile", {})
    problems = []
    if not isinstance(entry["file"], str) or not entry["file"]:
        problems.append('"file" must be a file name (relative to the data folder)')
    if not isinstance(columns, dict) or not set(TABLE_FIELDS) <= set(columns):
        problems.append(f'"columns" must map {", ".join(TABLE_FIELDS)} (and optionally title) '
                        f'to column names or 0-based positions')
    else:
        given = [json.dumps(columns[key]) for key in TABLE_FIELDS]
        shared = sorted({g for g in given if given.count(g) > 1})
        for column in shared:
            roles = [key for key, g in zip(TABLE_FIELDS, given) if g == column]
            problems.append(f'"columns" gives column {column} to {" and ".join(roles)}: '
                            f'user, item, behavior and timestamp each need their own column')
    if (not isinstance(behaviors, list) or not behaviors or len(set(behaviors)) != len(behaviors)
            or not all(isinstance(b, str) and b for b in behaviors)):
        problems.append('"behaviors" must list the behavior names once each, in order '
                        '(ids 1, 2, ...; put the target behavior, e.g. buy, where you want it)')
    if not isinstance(header, bool):
        problems.append('"header" must be true or false')
    if sep is not None and not (isinstance(sep, str) and len(sep) == 1):
        problems.append('"sep" must be one character, e.g. "," or "\\t"')
    if not isinstance(profile, dict):
        problems.append('"profile" must map profile fields to values, e.g. {"batch_size": 64}')
    if problems:
        raise _registration_error(path, "; ".join(problems))
    table = TableSource(entry["file"], dict(columns), header, sep, str(path))
    return DatasetSpec(name, "table", tuple(behaviors), dict(profile), table)


def register(name: str, file: str | Path, columns: dict, behaviors: tuple[str, ...], *,
             header: bool = True, sep: str | None = None, profile: dict | None = None,
             data_dir: str | Path | None = None) -> Path:
    """Register a CSV/TSV as dataset ``name``: write ``<data_dir>/<name>.dataset.json`` (the
    format in the module docstring) and check it. Returns the file written.

    ``file`` is stored relative to ``data_dir`` when it lies inside it, so the folder can move.
    """
    if name in REGISTRY or name.startswith(SYNTHETIC_PREFIX):
        raise DataError(f"{name!r} is a built-in dataset name; choose another")
    if not NAME_PATTERN.fullmatch(name):
        raise DataError(f"dataset name {name!r}: use letters, digits, '_', '-' and '.' "
                        f"(starting with a letter or digit)")
    data_dir, file = data_folder(data_dir), Path(file)
    if not file.is_absolute() and not (data_dir / file).exists() and file.exists():
        file = file.resolve()            # given relative to the working directory
    if file.is_absolute() and file.resolve().is_relative_to(data_dir.resolve()):
        file = file.resolve().relative_to(data_dir.resolve())
    entry = {"file": file.as_posix(), "columns": dict(columns), "header": header,
             "behaviors": list(behaviors)}
    if sep is not None:
        entry["sep"] = sep
    if profile:
        entry["profile"] = dict(profile)
    path = registration_path(name, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(entry, indent=2) + "\n")
    try:
        _read_registration(name, path)
    except DataError:
        path.unlink()
        raise
    return path


def raw_file(dataset: str, data_dir: str | Path | None = None) -> Path | None:
    """The raw file behind a named dataset (None for the synthetic ones); raises if missing."""
    entry = spec(dataset, data_dir)
    if entry.kind == "ml100k":
        return ml100k_path()
    if entry.kind == "mbstr":
        path = data_folder(data_dir) / f"{dataset}.txt"
        require_file(path, f"Put the MB-STR file for {dataset!r} there "
                           f"(uid<TAB>sid<TAB>behavior<TAB>timestamp). {PAPER_DATA_HINT}")
        return path
    if entry.kind == "table":
        path = data_folder(data_dir) / entry.table.file
        require_file(path, f"{entry.table.registration} names it as the file of dataset "
                           f"{dataset!r}: put the file there or fix \"file\" in the registration.")
        return path
    return None


def synthetic_config(dataset: str) -> synthetic.SyntheticConfig:
    """The generator settings of a ``synthetic-<preset>`` dataset or of a variant of one."""
    if spec(dataset).kind != "synthetic":
        raise DataError(f"{dataset!r} is not a synthetic dataset")
    if "+" in dataset:
        return _parse_variant(dataset)
    return synthetic.PRESETS[dataset.removeprefix(SYNTHETIC_PREFIX)]


def load_interactions(dataset: str, data_dir: str | Path | None = None,
                      synthetic_seed: int = 0) -> Interactions:
    """Read a dataset by name: one of :data:`KNOWN_DATASETS` or registered in ``data_dir``
    (see the table above)."""
    entry, path = spec(dataset, data_dir), raw_file(dataset, data_dir)
    if entry.kind == "ml100k":
        return read_ml100k(path)
    if entry.kind == "mbstr":
        return read_mbstr(path, entry.behaviors)
    if entry.kind == "table":
        return read_table(path, entry.table.columns, entry.table.sep, entry.behaviors,
                          header=entry.table.header, registration=entry.table.registration)
    return synthetic.generate(synthetic_config(dataset), seed=synthetic_seed)


def file_fingerprint(path: Path) -> str:
    """Size + mtime + a hash of the first and last MiB of ``path``.

    Why not a full hash: IJCAI is ~1 GB, and hashing it on every load would cost more than
    reading the cache. Replacing or editing a file changes its size or mtime (and almost
    always its head or tail); a false "changed" (e.g. after `touch`) only costs a rebuild.
    """
    st = path.stat()
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        h.update(f.read(HASH_BYTES))
        if st.st_size > HASH_BYTES:
            f.seek(max(HASH_BYTES, st.st_size - HASH_BYTES))
            h.update(f.read(HASH_BYTES))
    return f"{st.st_size}-{st.st_mtime_ns}-{h.hexdigest()}"


def source_identity(dataset: str, data_dir: str | Path, synthetic_seed: int) -> dict:
    """What the prepared arrays of ``dataset`` depend on: the raw file's
    :func:`file_fingerprint` (and, for a registered table, how it is read) or, for synthetic
    data, the generator config and seed."""
    path = raw_file(dataset, data_dir)
    if path is None:
        return {"config": asdict(synthetic_config(dataset)), "seed": synthetic_seed}
    entry = spec(dataset, data_dir)
    if entry.kind == "table":
        how = {k: v for k, v in asdict(entry.table).items() if k != "registration"}
        return {"file": file_fingerprint(path), "read": how, "behaviors": list(entry.behaviors),
                "reader": TABLE_READER_VERSION}
    return {"file": file_fingerprint(path)}


def profile_changes(dataset: str, data_dir: str | Path | None = None) -> dict:
    """Profile fields this dataset changes (IJCAI trains with batch 64, Section 4.1.4; a
    registration's ``"profile"``)."""
    return dict(spec(dataset, data_dir).profile_changes)
