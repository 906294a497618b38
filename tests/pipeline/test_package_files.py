"""thresher's own files as paths on disk: beside the modules in a checkout, extracted from the zip
that `spark-submit --py-files` puts on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import thresher
from thresher.pipeline.package_files import package_path

# Run with thresher.zip first on the path: every shipped file a job reads, read as a job reads it.
READ_SHIPPED_FILES = """
import os, thresher
from thresher.classifiers.annotate import load_prompts
from thresher.classifiers.base import load_classifier
from thresher.classifiers.clutter import shipped_model_dir
from thresher.classifiers.topic import load_taxonomy
from thresher.pipeline.config import load_config
from thresher.pipeline.lexicon import clutter_phrases, read_list
from thresher.pipeline.package_files import package_path
from thresher.pipeline.rules.heuristics import load_resources

assert ".zip" in thresher.__file__, thresher.__file__
config = load_config(None, {"rules.gopher_quality.min_words": 31})
assert config.rules.gopher_quality.min_words == 31 and config.spark.master == "local[*]"
assert read_list(config.resolve_path(config.prepare.banned_words_file))
load_resources(config.rules, config.resolve_path)
assert load_taxonomy().topics and load_prompts("topic") and clutter_phrases().pattern
load_classifier(shipped_model_dir())
assert os.access(package_path("jobs/gpu_discovery.sh"), os.X_OK)
print(package_path("configs"))
"""


def test_in_a_checkout_the_files_are_the_packages_own():
    assert package_path("configs/default.yaml") == Path(thresher.__file__).resolve().parent / "configs" / "default.yaml"
    assert package_path("configs/default.yaml").is_file()


def test_from_the_zip_every_shipped_file_is_read_from_one_extraction(dist, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(dist / "thresher.zip"), "TMPDIR": str(tmp_path)}
    # Four processes at once (a worker's Python processes start together): one extraction wins, all read it.
    processes = [subprocess.Popen([sys.executable, "-c", READ_SHIPPED_FILES], env=env, cwd="/", text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    assert all(code == 0 for code, _, _ in results), [err[-2000:] for _, _, err in results]
    assert len({out for _, out, _ in results}) == 1
    [extracted] = tmp_path.iterdir()  # nothing half-extracted left beside it
    assert Path(results[0][1].strip()) == extracted / "thresher" / "configs"
    assert not list(extracted.rglob("*.py"))  # the code stays in the zip
