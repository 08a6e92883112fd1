"""The Parquet table ``doascope batch`` writes: its schema, the part files that keep finished work
safe while a run goes on, the index ``--resume`` reads, and the compaction into one file at the end.

While a run goes on, every finished piece of work (one chunk of one file, or its error) is written at
once as its own small Parquet file under ``<out>.parts/`` (written aside, then renamed, so a crash
leaves only whole files). At the end, the table and the parts are merged into ``<out>``, one piece
of work once: a result wins over an error for the same work, and the newest error over older ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from doascope import DoascopeError

# The DESIGN.md columns, then what --resume and failures need: the file's content hash, the
# settings' key, and the error of a piece of work that failed (null for results).
COLUMNS = (
    ("file", "string"), ("chunk", "int32"), ("t", "float64"), ("rank", "int16"),
    ("azimuth", "float64"), ("elevation", "float64"), ("x", "float64"), ("y", "float64"), ("z", "float64"),
    ("power", "float64"), ("method", "string"), ("profile", "string"), ("version", "string"),
    ("sha256", "string"), ("settings", "string"), ("error", "string"),
)
KEY = ("file", "sha256", "settings", "chunk")   # one piece of work
ROW_GROUP_ROWS = 1 << 17


def import_pyarrow():
    from doascope.extras import optional_import

    return optional_import("pyarrow"), optional_import("pyarrow.parquet")


def schema():
    pa, _ = import_pyarrow()
    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])


def empty_columns() -> dict[str, list]:
    return {name: [] for name, _ in COLUMNS}


class ResultTable:
    """``<out>`` and its ``<out>.parts/`` folder."""

    def __init__(self, out: str | os.PathLike, *, resume: bool):
        self.pa, self.pq = import_pyarrow()
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        if not resume and (self.out.exists() or self.parts.exists()):
            raise DoascopeError(f"{self.out} already exists: add --resume to continue it, or remove it first")
        if self.out.exists() and not self.out.is_file():
            raise DoascopeError(f"{self.out} is not a file")
        if not self.out.parent.is_dir():
            raise DoascopeError(f"cannot write {self.out}: no folder {self.out.parent}")
        if not os.access(self.out.parent, os.W_OK):
            raise DoascopeError(f"cannot write {self.out}: the folder is not writable")
        self.schema = schema()
        self._seq = len(list(self.parts.glob("*.parquet"))) if self.parts.is_dir() else 0

    # --- while running ---------------------------------------------------------------------------

    def append(self, columns: dict[str, list]) -> int:
        """Write one finished piece of work (its rows, as column lists) durably; returns the row count."""
        table = self.pa.table(columns, schema=self.schema)
        self.parts.mkdir(exist_ok=True)
        self._seq += 1
        name = self.parts / f"part-{self._seq:08d}-{os.getpid()}.parquet"
        tmp = name.with_suffix(".tmp")
        self.pq.write_table(table, tmp)
        os.replace(tmp, name)
        return table.num_rows

    # --- what is there -------------------------------------------------------------------------

    def _sources(self) -> list[Path]:
        """The files holding rows, oldest first: the table, then the parts in the order written."""
        parts = sorted(self.parts.glob("*.parquet"), key=lambda p: p.name) if self.parts.exists() else []
        return ([self.out] if self.out.exists() else []) + parts

    def _keys(self, path: Path):
        """(work key, is error) of every piece of work in one file."""
        try:
            t = self.pq.read_table(path, columns=list(KEY) + ["error"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one sentence for the user
            raise DoascopeError(f"cannot read {path} as a doascope batch table: {exc}") from None
        t = t.group_by(list(KEY)).aggregate([("error", "count")])
        cols = [t.column(k).to_pylist() for k in KEY]
        errors = t.column("error_count").to_pylist()
        return [(tuple(c[i] for c in cols), errors[i] > 0) for i in range(t.num_rows)]

    def done(self) -> set[tuple]:
        """The work keys that have results (errors do not count: --resume tries them again)."""
        return {key for src in self._sources() for key, err in self._keys(src) if not err}

    # --- at the end ----------------------------------------------------------------------------

    def compact(self) -> int:
        """Merge the table and the parts into ``<out>`` (written aside, then renamed); returns its rows."""
        pa, pq = self.pa, self.pq
        sources = self._sources()
        if not sources:
            pq.write_table(pa.table(empty_columns(), schema=self.schema), self.out)
            shutil.rmtree(self.parts, ignore_errors=True)
            return 0
        owner: dict[tuple, tuple[int, bool]] = {}   # key -> (source that keeps it, it is an error)
        keys_of = []
        for i, src in enumerate(sources):
            keys = self._keys(src)
            keys_of.append(keys)
            for key, err in keys:
                held = owner.get(key)
                if held is None or held[1]:   # a result, or a newer error, replaces an error
                    owner[key] = (i, err)
        tmp = self.out.with_name(self.out.name + ".tmp")
        rows = 0
        with pq.ParquetWriter(tmp, self.schema) as writer:
            pending, pending_rows = [], 0
            for i, src in enumerate(sources):
                table = pq.read_table(src, schema=self.schema)
                drop = [key for key, _ in keys_of[i] if owner[key][0] != i]
                if drop:
                    table = table.filter(_not_in(pa, table, drop))
                pending.append(table)
                pending_rows += table.num_rows
                if pending_rows >= ROW_GROUP_ROWS or i == len(sources) - 1:
                    merged = pa.concat_tables(pending).combine_chunks()
                    writer.write_table(merged, row_group_size=ROW_GROUP_ROWS)
                    rows += merged.num_rows
                    pending, pending_rows = [], 0
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        return rows


def _not_in(pa, table, keys):
    """Mask of the rows whose work key is not among ``keys``."""
    import pyarrow.compute as pc

    joined = _key_strings(pa, pc, [table.column(k) for k in KEY])
    drop = _key_strings(pa, pc, [pa.array([k[j] for k in keys], type=table.schema.field(name).type)
                                 for j, name in enumerate(KEY)])
    return pc.invert(pc.is_in(joined, value_set=drop))


def _key_strings(pa, pc, cols):
    parts = [pc.fill_null(pc.cast(c, pa.string()), "\x00") for c in cols]
    return pc.binary_join_element_wise(*parts, "\x1f")
