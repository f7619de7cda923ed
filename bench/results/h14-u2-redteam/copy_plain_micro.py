"""copy_plain (every table read copies the rows it returns) on 10^4 rows shaped as bench.tables
makes them ({title, status, owner, prio, done}, plus one with a nested list): best of 25 rounds,
wall and process CPU, in ms. Run from a tree's root with that tree on PYTHONPATH."""

import json
import sys
import time

from encspaces.shared.table_index import copy_plain

rows = [{"title": f"task {i}", "status": ["open", "doing", "done"][i % 3], "owner": f"user{i % 100}",
         "prio": i % 10, "done": i % 2 == 0, **({"tags": ["a", {"b": [1, 2]}]} if i % 10 == 0 else {})}
        for i in range(10_000)]
walls, cpus = [], []
for _ in range(25):
    w, c = time.perf_counter(), time.process_time()
    for row in rows:
        copy_plain(row)
    walls.append((time.perf_counter() - w) * 1000)
    cpus.append((time.process_time() - c) * 1000)
print(json.dumps({"tree": sys.argv[1], "wall_ms": round(min(walls), 2), "cpu_ms": round(min(cpus), 2)}))
