import time, tempfile, statistics
from pathlib import Path
from app.store.milvus import MilvusStore
from app.core.types import Domain, EntityType
d = tempfile.mkdtemp()
s = MilvusStore(str(Path(d) / "m.db"), 384)
dom = Domain(name="music", entity_types=[EntityType(name="song", description="a song")])
import inspect
print([m for m in dir(s) if "domain" in m])
s.put_domain(dom)
for _ in range(20): s.get_domain("default", "music")
ts=[]
for _ in range(200):
    t=time.perf_counter(); s.get_domain("default","music"); ts.append((time.perf_counter()-t)*1000)
print("get_domain ms median %.2f p95 %.2f" % (statistics.median(ts), sorted(ts)[189]))
