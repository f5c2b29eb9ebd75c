"""The plain PySpark job the sales benchmark compares Wharf with, run as its own process.

    .venv/bin/python -m bench.sales_spark PATH RUNS

Starts a `local[2]` session, then RUNS times reads the JSON-lines file with an explicit
schema, explodes the products, counts them by product and collects the counts to the driver.
Prints one JSON line: each job's seconds (the session's start not included), and the
products and units of the last job, which the benchmark checks against Wharf's.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main() -> None:
    path, runs = sys.argv[1], int(sys.argv[2])
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F  # noqa: N812 (Spark's own spelling)

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("wharf-bench-sales")
        .config("spark.ui.enabled", "false")  # no port to bind on a shared machine
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    seconds: list[float] = []
    rows: list[Any] = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = (
            spark.read.schema("id BIGINT, products ARRAY<BIGINT>")
            .json(path)
            .select(F.explode("products").alias("p"))
            .groupBy("p")
            .count()
            .collect()
        )
        seconds.append(time.perf_counter() - started)
    units = sum(row["count"] for row in rows)
    print(json.dumps({"seconds": seconds, "products": len(rows), "units": units}))
    spark.stop()


if __name__ == "__main__":
    main()
