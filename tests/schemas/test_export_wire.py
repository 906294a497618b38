"""The export's wire schemas: each converts to Spark, and counts never share a schema with pointers."""

import numpy as np
import pyarrow as pa

from thresher.schemas import to_spark_schema
from thresher.schemas.export_wire import INPUT_TALLY, PACKED, PLACED, RANGE_SUMMARY, TOKENIZED, WRITTEN, list_array


def test_every_stage_schema_converts_to_spark():
    for schema in (TOKENIZED, PACKED, PLACED, RANGE_SUMMARY, WRITTEN, INPUT_TALLY):
        assert [f.name for f in to_spark_schema(schema).fields] == schema.names


def test_pointer_streams_carry_no_counts():
    counts = {"sequences", "documents", "padding", "dropped_tokens", "dropped_documents", "source_documents",
              "copies", "empty_text", "sampled_out"}
    for pointers in (TOKENIZED, PACKED, PLACED):
        assert not counts & set(pointers.names)


def test_list_array_wraps_flat_values_with_offsets():
    array = list_array(np.array([1, 2, 3, 4], dtype=np.int32), np.array([0, 1, 1, 4]))
    assert array.type == pa.list_(pa.int32()) and array.to_pylist() == [[1], [], [2, 3, 4]]
