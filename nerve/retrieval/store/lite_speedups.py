"""A columnar flush for Milvus Lite's write buffer: what made a large ingest stall.

Milvus Lite 3.2.2 (pure Python) turns its in-memory write buffer (``MemTable``) into the table of
a new segment on every flush by reading each buffered row back one pyarrow scalar at a time
(``batch.column(name)[row].as_py()``). For a 384-float vector that call costs ~1.2 ms (measured
on this machine: pyarrow builds one Python float per element), so a flush costs ~2-5 ms a word
row: 105 s for 20,000 rows, and an insert that fills the 128 MB buffer (~80,000 word rows) flushes
synchronously inside the call and overran the store's 30 s timeout (docs/history/benchmarks.md, "Retrieval
that stays flat"). :func:`columnar_build_data_table` builds the same table with one ``take`` over
the buffered batches; :func:`install` puts it in place of ``MemTable._build_data_table``.

It is installed only for the Milvus Lite version it was checked against (the rows, their order
and the schema are the same as the original's: tests/test_store_milvus_bulk.py compares both
on real buffers); with another version Milvus Lite keeps its own code and the slow path.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# The Milvus Lite versions whose MemTable._build_data_table this replaces (same contract).
CHECKED_VERSIONS = frozenset({"3.2.2"})
# Where install() keeps Milvus Lite's own method (on MemTable).
ROW_BY_ROW = "_nerve_row_by_row_build_data_table"


def columnar_build_data_table(memtable: Any, rows: list[tuple[int, int]]) -> Any:
    """``MemTable._build_data_table``: the buffered ``(batch, row)`` pairs, in that order, as one
    table of the data schema (no ``_partition``), taken column by column instead of per scalar."""
    import pyarrow as pa

    schema = memtable._data_schema
    batches = memtable._insert_batches
    if not rows or not batches:
        return pa.Table.from_pydict({name: [] for name in schema.names}, schema=schema)
    offsets = np.cumsum([0] + [b.num_rows for b in batches[:-1]], dtype=np.int64)
    pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    positions = offsets[pairs[:, 0]] + pairs[:, 1]
    buffered = pa.Table.from_batches([b.select(schema.names) for b in batches])
    taken = buffered.take(pa.array(positions)).combine_chunks()
    return pa.Table.from_arrays(
        [taken.column(name).cast(schema.field(name).type) for name in schema.names],
        schema=schema,
    )


def _patched(self: Any, rows: list[tuple[int, int]]) -> Any:
    return columnar_build_data_table(self, rows)


def install() -> bool:
    """Replace Milvus Lite's per-scalar flush with the columnar one (idempotent); False when the
    installed Milvus Lite is not a checked version (then nothing changes)."""
    try:
        import milvus_lite
        from milvus_lite.storage.memtable import MemTable
    except ImportError:
        return False
    version = getattr(milvus_lite, "__version__", None)
    if version not in CHECKED_VERSIONS:
        log.warning(
            "Milvus Lite %s is not a version the columnar flush was checked against (%s): "
            "large ingests flush row by row (slow)",
            version,
            ", ".join(sorted(CHECKED_VERSIONS)),
        )
        return False
    if getattr(MemTable, ROW_BY_ROW, None) is None:
        # Kept on the class: tests compare both on the same buffers.
        setattr(MemTable, ROW_BY_ROW, MemTable._build_data_table)
        MemTable._build_data_table = _patched
    return True
