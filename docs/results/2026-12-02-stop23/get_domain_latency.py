"""MilvusStore.get_domain on Milvus Lite, before the spec was kept in process (stop 23).

PYTHONPATH=<checkout at ecdec4d> taskset -c 1 python get_domain_latency.py
"""

import statistics
import tempfile
import time
from pathlib import Path

from app.core.types import Domain, EntityType
from app.store.milvus import MilvusStore

store = MilvusStore(str(Path(tempfile.mkdtemp()) / "m.db"), 384)
store.put_domain(Domain(name="music", entity_types=[EntityType(name="song", description="a song")]))
for _ in range(20):
    store.get_domain("default", "music")
times = []
for _ in range(200):
    started = time.perf_counter()
    store.get_domain("default", "music")
    times.append((time.perf_counter() - started) * 1000)
print(f"get_domain ms median {statistics.median(times):.2f} p95 {sorted(times)[189]:.2f}")
