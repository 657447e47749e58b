"""SmartNoise SQL side of veil's DP benchmark (engine/benches/smartnoise.rs).

Reads one job as JSON on stdin:
  {"file": path, "columns": [...], "metadata": yaml path, "delta": d,
   "runs": r, "queries": [{"sql": ..., "epsilon": total}]}
loads the file once into SmartNoise's pandas reader, then runs every query
`runs` times at a per-column epsilon chosen so that SmartNoise's own
accountant (get_privacy_cost) charges `epsilon` for the whole query. Prints
one JSON object: load time, peak RSS, and per query the charged cost, the
wall time of each execute() and every answer.
"""

import json
import resource
import sys
import time

import pandas as pd
import snsql
from snsql.sql.private_reader import PrivateReader
from snsql.sql.reader.pandas import PandasReader


def load(job):
    if job["file"].endswith(".csv"):
        return pd.read_csv(job["file"], usecols=job["columns"])
    return pd.read_parquet(job["file"], columns=job["columns"])


def main():
    job = json.load(sys.stdin)
    started = time.perf_counter()
    df = load(job)
    metadata = snsql.metadata.Metadata.from_file(job["metadata"])
    reader = PandasReader(df, metadata)
    del df
    load_seconds = time.perf_counter() - started
    out = {"load_seconds": load_seconds, "queries": []}
    for q in job["queries"]:
        unit = PrivateReader(reader, metadata, privacy=snsql.Privacy(epsilon=1.0, delta=job["delta"]))
        per_unit_epsilon, _ = unit.get_privacy_cost(q["sql"])
        privacy = snsql.Privacy(epsilon=q["epsilon"] / float(per_unit_epsilon), delta=job["delta"])
        private = PrivateReader(reader, metadata, privacy=privacy)
        cost = private.get_privacy_cost(q["sql"])
        seconds, answers = [], []
        for _ in range(job["runs"]):
            started = time.perf_counter()
            rows = private.execute(q["sql"])
            seconds.append(time.perf_counter() - started)
            answers.append([[str(v) if i == 0 else float(v) for i, v in enumerate(r)] for r in rows[1:]])
        out["queries"].append(
            {"cost": [float(cost[0]), float(cost[1])], "seconds": seconds, "answers": answers}
        )
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
