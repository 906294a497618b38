import pyarrow as pa
import pytest

from schemas import extend, to_spark_schema
from schemas.documents import MODELS, PREPARED, RULES
from schemas.rejects import REJECT
from schemas.tokens import SHARD


def test_each_stage_keeps_the_previous_columns_in_order():
    assert RULES.names[: len(PREPARED)] == PREPARED.names
    assert MODELS.names[: len(RULES)] == RULES.names


def test_extend_refuses_a_column_clash():
    with pytest.raises(ValueError, match="doc_id"):
        extend(PREPARED, pa.field("doc_id", pa.string()))


def test_spark_schemas_are_derived_from_arrow():
    spark_schema = to_spark_schema(REJECT)
    assert [f.name for f in spark_schema.fields] == REJECT.names
    assert spark_schema["stage"].nullable is False
    assert to_spark_schema(SHARD)["tokens"].dataType.elementType.typeName() == "integer"
