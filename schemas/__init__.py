"""Arrow schemas: the contracts between jobs. Spark schemas are derived from these, never restated."""

import pyarrow as pa


def to_spark_schema(arrow_schema: pa.Schema):
    """The Spark StructType for an Arrow schema (imports pyspark lazily: schemas need no Spark)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def extend(schema: pa.Schema, *fields: pa.Field) -> pa.Schema:
    """`schema` with `fields` appended; a name clash is an error, since columns are stable contracts."""
    clash = {f.name for f in fields} & set(schema.names)
    if clash:
        raise ValueError(f"columns already in schema: {sorted(clash)}")
    for f in fields:
        schema = schema.append(f)
    return schema
