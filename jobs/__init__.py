"""Spark drivers, one module per job: config in, DataFrame operations, Parquet out."""
