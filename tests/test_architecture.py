"""The layout as a contract: imports go down the layers and never round in a circle, every package folder
is packaged, and a user's own `jobs` or `pipeline` module cannot shadow thresher's.

Layers, lowest first: schemas < pipeline < classifiers < jobs; trainer sits beside classifiers (it uses
schemas and pipeline only). Inside pipeline, the shared modules (pipeline/*.py) import no stage package,
pipeline.stagedir imports only shared modules, and each stage package (prepare, rules, select, export,
report) imports shared modules, stagedir and itself, never another stage's package.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("schemas", "pipeline", "classifiers", "trainer", "jobs")
LAYER = {"schemas": 0, "pipeline": 1, "classifiers": 2, "trainer": 2, "jobs": 3}
STAGE_PACKAGES = ("prepare", "rules", "select", "export", "report")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["thresher", *parts])


def import_graph() -> dict[str, set[str]]:
    """module -> the thresher modules it imports anywhere in its code (function-local imports too)."""
    paths = {module_name(p): p for folder in FOLDERS for p in (REPO / folder).rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("thresher"):
                for alias in node.names:  # `from thresher.x import y` imports module thresher.x.y when there is one
                    name = f"{node.module}.{alias.name}"
                    imported.add(name if name in paths else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("thresher"))
        graph[module] = {name for name in imported if name in paths and name != module}
    return graph


def layer(module: str) -> int:
    return LAYER[module.split(".")[1]]


def pipeline_part(module: str) -> str:
    """'shared', 'stagedir' or the stage package of a thresher.pipeline module."""
    parts = module.split(".")
    if len(parts) > 3 or (len(parts) == 3 and parts[2] in (*STAGE_PACKAGES, "stagedir")):
        return parts[2] if parts[2] in (*STAGE_PACKAGES, "stagedir") else "shared"
    return "shared"


def test_no_import_goes_up_the_layers():
    upward = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps if layer(d) > layer(m)]
    beside = [f"{m} -> {d}" for m, deps in import_graph().items() for d in deps
              if layer(d) == layer(m) == 2 and m.split(".")[1] != d.split(".")[1]]  # classifiers <-> trainer
    assert not upward + beside


def test_pipeline_stages_import_only_shared_code_and_their_own_package():
    wrong = []
    for module, deps in import_graph().items():
        if not module.startswith("thresher.pipeline"):
            continue
        part = pipeline_part(module)
        allowed = {"shared"} | ({"stagedir"} if part != "shared" else set()) | {part}
        wrong += [f"{module} -> {d}" for d in deps if d.startswith("thresher.pipeline") and pipeline_part(d) not in allowed]
    assert not wrong


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_setup_cfg_packages_every_package_folder():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    folders = {module_name(init) for folder in FOLDERS for init in (REPO / folder).rglob("__init__.py")}
    assert listed == folders | {"thresher"}


def test_a_users_own_jobs_and_pipeline_modules_do_not_shadow_thresher(tmp_path):
    """A cluster's Python path often holds a team's own `jobs` or `pipeline` module: thresher's modules
    import as thresher.jobs and thresher.pipeline, so a job still runs with those first on the path."""
    for name in ("jobs", "pipeline", "schemas", "classifiers", "trainer"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name}, not thresher\\'s')\n")
    corpus = tmp_path / "corpus.jsonl"
    sentence = "The committee met on Tuesday to discuss the new library building and its opening hours. "
    corpus.write_text("".join(f'{{"text": "{sentence * 8}Document number {i}."}}\n' for i in range(6)))
    script = "import sys; from thresher.jobs.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}  # Spark's Python workers inherit it
    result = subprocess.run([sys.executable, "-c", script, "rules", str(corpus), "--output", str(tmp_path / "out"),
                             "--set", "spark.shuffle_partitions=2", "--master", "local[2]"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "_COMMITTED").is_file()
    assert "rules: 6 in" in result.stderr
    shadowed = subprocess.run([sys.executable, "-c", "import jobs"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert "the user's own jobs" in shadowed.stderr  # the shadowing modules are really first on the path
