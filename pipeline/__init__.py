"""Per-record and per-document logic in plain Python: no SparkSession here, all testable without Spark."""
