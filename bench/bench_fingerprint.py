"""`python bench/bench_fingerprint.py [--json]`: same as `shadow-dagster bench fingerprint`.

Fit time and memory for 1k/10k/30k instances of a 30-step workflow, prediction latency p50/p99,
and next-activity accuracy on receipt.csv (J.C.A.M. Buijs, Receipt phase of an environmental
permit application process (WABO), CoSeLoG project, 4TU.ResearchData).
"""

import sys

from shadow_dagster.fingerprint.bench import run

__all__ = ["run"]

if __name__ == "__main__":
    run(json_out="--json" in sys.argv)
