"""`make dist`: the artifacts the README's cluster recipes submit, under the names the README uses
(tests/jobs/test_cluster.py submits them to a real cluster)."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cluster_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]


def wheel_name() -> str:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    return f"thresher-{setup['metadata']['version']}-py3-none-any.whl"


def test_make_dist_builds_every_file_the_readme_recipes_name(dist):
    named = set(re.findall(r"dist/([\w.-]+)", cluster_section()))
    assert {"thresher.zip", "thresher-venv.tar.gz", "Dockerfile", wheel_name()} <= named
    assert all((dist / name).is_file() for name in named), sorted(named)
    assert "make dist" in cluster_section()


def test_the_zip_is_the_wheels_package_tree_with_configs_and_models(dist):
    with zipfile.ZipFile(dist / "thresher.zip") as bundle:
        names = set(bundle.namelist())
    with zipfile.ZipFile(dist / wheel_name()) as wheel:
        assert names == set(wheel.namelist())
    checkout = {"thresher/" + path.relative_to(REPO).as_posix()
                for folder in ("schemas", "pipeline", "classifiers", "trainer", "jobs") for path in (REPO / folder).rglob("*.py")}
    assert checkout <= names
    assert {"thresher/configs/default.yaml", "thresher/configs/topics.yaml", "thresher/configs/prompts/labels.yaml",
            "thresher/classifiers/default_models/clutter/model.ftz", "thresher/jobs/gpu_discovery.sh"} <= names


def test_a_job_file_runs_with_thresher_imported_from_the_zip(dist):
    # `python -v` names where each module came from: every thresher module must come from the zip,
    # although this interpreter also has the checkout installed.
    zip_path = str(dist / "thresher.zip")
    shown = subprocess.run([sys.executable, "-v", str(REPO / "jobs" / "rules.py"), "--help"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": zip_path}, cwd="/")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: thresher rules"), shown.stderr[-2000:]
    imports = [line for line in shown.stderr.splitlines() if line.startswith("import 'thresher")]
    assert len(imports) > 10
    assert all(f'<zipimporter object "{zip_path}/' in line for line in imports), imports


def test_the_packed_virtualenv_holds_thresher_and_its_runtime_dependencies_only(dist):
    with tarfile.open(dist / "thresher-venv.tar.gz") as archive:
        top = {Path(name).parts[3] for name in archive.getnames() if name.startswith("lib/python3") and
               len(Path(name).parts) > 3 and Path(name).parts[2] == "site-packages"}
        bin_python = archive.getmember("bin/python")
    assert {"thresher", "pandas", "pyarrow", "numpy", "fasttext", "trafilatura", "datasketch", "tokenizers", "yaml"} <= top
    assert not {"pip", "pytest", "ruff", "venv_pack", "torch", "pyspark"} & top  # the cluster brings its own Spark
    assert bin_python.issym() or bin_python.isfile()


def test_the_dockerfile_installs_the_built_wheel_and_the_kubernetes_recipe_names_its_job_files(dist):
    dockerfile = (dist / "Dockerfile").read_text()
    assert "@WHEEL@" not in dockerfile
    assert f"COPY {wheel_name()} /tmp/" in dockerfile and f"pip install --no-cache-dir /tmp/{wheel_name()}" in dockerfile
    assert (dist / ".dockerignore").read_text().split() == ["*", f"!{wheel_name()}"]  # the build context: the wheel
    assert "/opt/thresher" in dockerfile
    scripts = re.findall(r"local:///opt/thresher/([\w/]+\.py)", cluster_section())
    assert scripts
    with zipfile.ZipFile(dist / wheel_name()) as wheel:
        assert all(f"thresher/{script}" in wheel.namelist() for script in scripts)
