"""Stage 3 fixtures: a stage-2-shaped input of real DCLM and ChineseWebText documents, and small
default models bootstrapped from it (shared by the tag, select and models job tests)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.schemas.documents import RULES


@pytest.fixture(scope="session")
def stage2_dir(shared_data, tmp_path_factory) -> Path:
    """A committed stage 2 output: 160 English (DCLM) and 40 Chinese (ChineseWebText) documents."""
    # Imported here: Spark workers import test modules without tests/ on their path.
    from stage_rows import URL_SHAPES, read_jsonl, rules_row

    quality = shared_data / "quality"
    rows = [
        rules_row("dclm", i, URL_SHAPES[i % len(URL_SHAPES)].format(i=i), r["text"], "en")
        for i, r in enumerate(read_jsonl(quality / "dclm" / "majority_data.jsonl")[:160])
    ]
    rows += [rules_row("cwt", i, r["url"], r["raw_content"], "zh") for i, r in enumerate(read_jsonl(quality / "chinesewebtext" / "cleared1.jsonl")[:40])]
    directory = tmp_path_factory.mktemp("stage2")
    (directory / "documents").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=RULES), directory / "documents" / "part-0.parquet")
    (directory / "_COMMITTED").write_text("{}\n")
    return directory


@pytest.fixture(scope="session")
def models_dir(stage2_dir, tmp_path_factory) -> Path:
    from thresher.classifiers.bootstrap import bootstrap
    from thresher.classifiers.topic import load_taxonomy

    directory = tmp_path_factory.mktemp("models")
    bootstrap([str(stage2_dir)], directory, load_taxonomy(), params={"bucket": 20_000, "dim": 16})
    return directory


@pytest.fixture(scope="session")
def quality_model(shared_data, tmp_path_factory) -> Path:
    """A 0/1 quality classifier trained as a user would, with `thresher classifiers train --task plain`
    on DCLM's majority-vote labels."""
    from thresher.jobs.cli import main

    directory = tmp_path_factory.mktemp("quality") / "model"
    argv = ["classifiers", "train", "--task", "plain", "--data", str(shared_data / "quality" / "dclm" / "majority_data.jsonl"),
            "--output", str(directory), "--param", "dim=16", "--param", "bucket=20000"]
    assert main(argv) == 0
    return directory


@pytest.fixture(scope="session")
def tagged_dir(spark, stage2_dir, models_dir, quality_model, tmp_path_factory) -> Path:
    """`thresher tag` on the stage 2 fixture with all four taggers, on one input partition."""
    from stage_rows import stage3_config

    from thresher.jobs.tag import run_tag

    directory = tmp_path_factory.mktemp("tagged")
    run_tag(spark, str(stage2_dir), str(directory), stage3_config(models_dir, quality_model), partitions=1)
    return directory
