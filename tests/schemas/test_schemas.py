import pyarrow as pa
import pytest

from thresher.pipeline.select.batches import SelectSettings, selected_schema
from thresher.schemas import extend, to_spark_schema
from thresher.schemas.documents import PREPARED, RULES
from thresher.schemas.rejects import REJECT
from thresher.schemas.tags import DeclaredTagger, tagged_schema
from thresher.schemas.tokens import SHARD


def test_each_stage_keeps_the_previous_columns_in_order():
    assert RULES.names[: len(PREPARED)] == PREPARED.names
    taggers = (DeclaredTagger("page_type", "/m/p"), DeclaredTagger("clutter", "/m/c", kind="lines"))
    tagged = tagged_schema(taggers)
    assert tagged.names[: len(RULES)] == RULES.names
    assert tagged.names[len(RULES):] == ["page_type_label", "page_type_score", "page_type_top", "clutter_line_scores"]
    selected = selected_schema(SelectSettings(taggers=taggers, line_thresholds=(("clutter", 0.5),)))
    # select rewrites text, so line scores (aligned with the tagged text) stay in the tag output only
    assert selected.names == [*RULES.names, "page_type_label", "page_type_score", "page_type_top",
                              "lines_removed_clutter", "sample_copies"]


def test_extend_refuses_a_column_clash():
    with pytest.raises(ValueError, match="doc_id"):
        extend(PREPARED, pa.field("doc_id", pa.string()))


def test_spark_schemas_are_derived_from_arrow():
    spark_schema = to_spark_schema(REJECT)
    assert [f.name for f in spark_schema.fields] == REJECT.names
    assert spark_schema["stage"].nullable is False
    assert to_spark_schema(SHARD)["tokens"].dataType.elementType.typeName() == "integer"


def test_the_readme_column_table_lists_each_schema_s_columns_in_order():
    import re
    from pathlib import Path

    from thresher.schemas import tokens
    from thresher.schemas.clusters import CLUSTERS
    from thresher.schemas.dedup_keys import DEDUP_BANDS, DEDUP_DOCS, DEDUP_LINES
    from thresher.schemas.documents import PREPARED, RULES
    from thresher.schemas.rejects import REJECT

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    schemas = {"PREPARED": PREPARED, "RULES": RULES, "REJECT": REJECT, "SHARD": tokens.SHARD,
               "DOCUMENT_INDEX": tokens.DOCUMENT_INDEX, "CLUSTERS": CLUSTERS,
               "DEDUP_DOCS": DEDUP_DOCS, "DEDUP_BANDS": DEDUP_BANDS, "DEDUP_LINES": DEDUP_LINES}
    listed = {}
    for name, columns in re.findall(r"^\| [^|]+ \| `schemas/\w+\.py` (\w+) \| ([^|]+) \|$", readme, re.M):
        if name in schemas:
            listed[name] = re.findall(r"`(\w+)`", columns.split(";")[0])
    assert listed == {name: schema.names for name, schema in schemas.items()}
    assert "Shards hold two columns (`schemas/tokens.py` SHARD): `tokens`" in readme and "one column `tokens`" not in readme
