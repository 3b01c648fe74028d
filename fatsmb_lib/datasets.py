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
``synthetic-<preset>``  :data:`fatsmb_lib.synthetic.PRESETS`        the preset's
======================  ==========================================  ========================
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import synthetic
from .readers import (ML100K_BEHAVIORS, PAPER_DATA_HINT, DataError, Interactions, ml100k_path,
                      read_mbstr, read_ml100k, require_file)


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: ``kind`` is "ml100k" | "mbstr" | "synthetic"."""

    name: str
    kind: str
    behaviors: tuple[str, ...]
    profile_changes: dict = field(default_factory=dict)  # e.g. IJCAI's batch 64 (Sec. 4.1.4)


SYNTHETIC_PREFIX = "synthetic-"
HASH_BYTES = 1 << 20  # bytes hashed at each end of a raw file for the cache key
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


def spec(dataset: str) -> DatasetSpec:
    """The registry entry of ``dataset``; an unknown name lists the known ones."""
    if dataset not in REGISTRY:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(KNOWN_DATASETS)}. "
                        f"For your own CSV/TSV call fatsmb_lib.readers.read_table(path, columns=...).")
    return REGISTRY[dataset]


def raw_file(dataset: str, data_dir: str | Path = "data") -> Path | None:
    """The raw file behind a named dataset (None for the synthetic ones); raises if missing."""
    entry = spec(dataset)
    if entry.kind == "ml100k":
        return ml100k_path()
    if entry.kind == "mbstr":
        path = Path(data_dir) / f"{dataset}.txt"
        require_file(path, f"Put the MB-STR file for {dataset!r} there "
                           f"(uid<TAB>sid<TAB>behavior<TAB>timestamp). {PAPER_DATA_HINT}")
        return path
    return None


def synthetic_config(dataset: str) -> synthetic.SyntheticConfig:
    """The generator settings of a ``synthetic-<preset>`` dataset."""
    if spec(dataset).kind != "synthetic":
        raise DataError(f"{dataset!r} is not a synthetic dataset")
    return synthetic.PRESETS[dataset.removeprefix(SYNTHETIC_PREFIX)]


def load_interactions(dataset: str, data_dir: str | Path = "data",
                      synthetic_seed: int = 0) -> Interactions:
    """Read a dataset by name: one of :data:`KNOWN_DATASETS` (see the table above)."""
    entry, path = spec(dataset), raw_file(dataset, data_dir)
    if entry.kind == "ml100k":
        return read_ml100k(path)
    if entry.kind == "mbstr":
        return read_mbstr(path, entry.behaviors)
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
    :func:`file_fingerprint` or, for synthetic data, the generator config and seed."""
    path = raw_file(dataset, data_dir)
    if path is None:
        return {"config": asdict(synthetic_config(dataset)), "seed": synthetic_seed}
    return {"file": file_fingerprint(path)}


def profile_changes(dataset: str) -> dict:
    """Profile fields this dataset changes (IJCAI trains with batch 64, Section 4.1.4)."""
    return dict(spec(dataset).profile_changes)
