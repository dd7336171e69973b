"""`python bench/bench_ingest.py [--json]`: same as `shadow-dagster bench ingest`."""

import json
import sys

from shadow_dagster.bench.ingest import run

if __name__ == "__main__":
    result = run()
    if "--json" in sys.argv:
        print(json.dumps(result, sort_keys=True))
