"""Every bench script's --smoke run (tiny input, seconds), so that none rots unseen, and the GPU check
scripts' command lines against the bench scripts they run.

Scripts are found by glob: a new bench/*.py without a smoke mode, or without its figure lines below,
fails here. bench/_*.py are helpers, not scripts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._smoke import SMOKE_HELP, SMOKE_LINE

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SCRIPTS = sorted(path.stem for path in BENCH.glob("*.py") if not path.name.startswith("_"))
SHELL_SCRIPTS = sorted(path.name for path in BENCH.glob("*.sh"))
TIMEOUT_S = 300  # one run; they take 1-45 s on an idle 2-core machine
PARALLEL = 2  # runs at a time: the Spark ones mostly wait on their JVM
NOT_RUN = r"^\[smoke\] not run: "

# Lines (regular expressions, multiline) each script's smoke run must print on stdout: its usual figures.
FIGURES = {
    "bench_annotate": [r"^one at a time: [\d.]+ docs/s, \d+ label tokens/s", r"^batched x\d+: [\d.]+ docs/s, \d+ label tokens/s",
                       r"^batched vs one at a time: largest probability difference", r"^\| calibrated \| [\d.]+ \| [\d.]+ \| [\d.]+ \|"],
    "bench_classifiers_quality": [r"^majority_data\.jsonl: \d+ docs .*2-fold: AUC", r"^agreement_data\.jsonl: \d+ docs .*AUC"],
    "bench_clutter_guards": [r"^dev pages \d+ ", r"^\| plain trafilatura ", r"^chosen per held-out source: trafilatura: @ "],
    "bench_decontam": [r"^index: \d+ items of 1 benchmarks, [\d,]+ n-grams, .* MiB per million n-grams",
                       r"^stage 2 heuristics: [\d,]+ us per document",
                       r"^decontam tagger: [\d,]+ us per document = [\d.]+% of stage 2$",
                       r"^pii tagger \+ replacement: [\d,]+ us per document = [\d.]+% of stage 2$",
                       r"^decontam \+ PII: [\d.]+% of stage 2 \(limit 15%\)$"],
    "bench_document_memory": [r"^40 ordinary documents; input.max_document_bytes 200,000",
                              r"^\| tokenizer \| one past it \(rejected\) \| 41 / 40 / 1 \|",
                              r"^\| tag \| one at the maximum \| 41 / 41 / 0 \|", r"^\| export \| ordinary \| "],
    "bench_export": [r"^input: \d+ documents", r"^export job, format parquet, local\[1\]: .* 1 Parquet shards, 0 Megatron",
                     r"^export job, format megatron, local\[1\]: .* 0 Parquet shards, 1 Megatron shards",
                     r"^parquet export, Parquet shards: \d+ tokens, [\d.]+ MB on disk .* tokens/s per core",
                     r"^megatron export, Megatron shards: \d+ tokens, [\d.]+ MB on disk .* tokens per CPU second"],
    "bench_export_memory": [r"^\| input \| tokens \| shards", r"^\| 1x \(0\.05 MB\) \| [\d,]+ \| 1 \| \d+ \| \d+ MiB"],
    "bench_extract_guard": [r"^\d+ pages; identical text and rejects both ways: True",
                            r"^extraction CPU in process", r"^guard cost, measured directly: .* of extraction CPU"],
    "bench_extraction": [r"^dev pages: \d+ ", r"^\| trafilatura_default \| [\d. ]+ \|",
                         r"^\| thresher_comments_posts_line20 \(stage 1, \d+ ms CPU/page\) \|",
                         r"^\| thresher_comments_posts_line20 \+ fasttext @ [\d.]+, CV \|",
                         r"^\| thresher_comments_posts_line20 \+ line_sequence @ [\d.]+, CV \|",
                         r"^  \(\d+ labelled lines", r"^  bootstrap F1 line_sequence @ [\d.]+ minus fasttext: "],
    "bench_extraction_limits": [r"^\| the page's whole visible text", r"^\| stage 1 \| ", r"^\| stage 1, every clutter-labelled",
                                r"^\| 100% @ 0\.05 \| ", r"^\| one model per benchmark \(oracle\) @ 0\.05 \| ",
                                r"^\| \+ HTML context of the line @ 0\.05 \| "],
    "bench_filter_overhead": [r"^stage 2: .* us per document with counting and timing", r"^stage 2: the contract costs",
                              r"^stage 1 per-page steps: \d+ pages", r"^stage 1: the contract costs"],
    "bench_hostile": [r"^\| gzip cut inside a record \| document x2 \|", r"^\| a file gone when its task opens it \| warc_unreadable \|",
                      r"^slowest file .* \(suite limit 1500\)"],
    "bench_minhash_curve": [r"^    0\.80 ", r"^largest \|flagged - theory\|: ", r"^flagged pairs: \d+"],
    "bench_minhash_speed": [r"^bit-identical to datasketch .*: True", r"^thresher MinHasher\.signature .* docs/s",
                            r"^datasketch MinHash\.bulk, default sha1_hash32: .* docs/s"],
    "bench_models": [r"^60 documents, \d+ non-blank lines", r"^plain loop, 1 core: ", r"^spark local\[1\] cold: tagging stage"],
    "bench_objstore": [r"^round 1 disk: [\d.]+s \(prepare", r"^round 1   s3: [\d.]+s \(prepare", r"^per stage, median: prepare ",
                       r"^whole run, median of 1: local disk [\d.]+s, S3 [\d.]+s: [\d.]+x \(limit 1\.15x\)"],
    "bench_pii": [r"^documents: \d+ \(\d+ en DCLM, \d+ zh ChineseWebText\)", r"^stage 2 heuristics: [\d,.]+ us per document",
                  r"^pii tag \(find_pii\): [\d,.]+ us per document; select replacement \(redact\): [\d,.]+ us per document",
                  r"^PII share of stage 2: [\d.]+% \(budget: decontamination \+ PII together at most 15%\)"],
    "bench_prepare": [r"^session start: [\d.]+s .*, excluded from every job figure", *(line for mix in ("crawl-like", "all-kept") for line in (
        rf"^{mix}: \d+ pages in \d+ files", rf"^{mix} job, pre-check on : \d+ pages in [\d.]+s wall = [\d.]+ pages/s per core",
        rf"^{mix} job, pre-check off: \d+ pages in ", rf"^{mix} job steps, pre-check on : \{{",
        rf"^{mix} kept documents, on vs off: \d+ off, \d+ lost",
        rf"^{mix} baseline \(1 process, warcio \+ trafilatura\.extract\): .* pages/s per core; job with pre-check [\d.]+x",
        rf"^{mix} trafilatura\.extract on \d+ decoded pages: [\d.]+s CPU with lxml\.html's element lookup",
        rf"^{mix} per-page work without Spark \(process_warc\), pre-check on : \d+ pages in [\d.]+s CPU"))],
    "bench_prepare_memory": [r"^pages: \d+ in \d+s; documents \d+", r"^peak Python worker RSS \(psutil polling\): \d+ MiB",
                             r"^peak Python worker RSS \(ru_maxrss in the task\): \d+ MiB",
                             r"^peak extraction child RSS \(ru_maxrss, mostly shared with the worker\): \d+ MiB; pre-check on"],
    "bench_quality_cut": [r"^\$ thresher classifiers train --task plain", r"^agreement_data: \d+ unseen docs, AUC",
                          r"^top 50% cut: ", r"^label-1 share kept - label-0 share kept = "],
    "bench_reference_dedup": [r"^dumps: 30 \+ 30 documents; first run \(the reference\) ",
                              r"^second run with reference, #1: [\d.]+s, \d+ kept, rejects ",
                              r"^second run, median of 1: without reference [\d.]+s, with reference [\d.]+s: [\d.]+x \(limit 1\.3x\)"],
    "bench_rules_memory": [r"^scale +docs +out", r"^ +1 +20 +\d+ ", r"^ +peak/doc .* minhash clusters"],
    "bench_select": [r"^select: 200 docs -> .*output digest [0-9a-f]{16}", r"^  filter_batches \(workers\): ",
                     r"^tag: 60 docs in ", r"^select [\d.]+ us/doc = .* of tag"],
    "bench_sweep": [r"^\| 0\.5 \| \d+ \| [\d,]+ \| ", r"^sweep: 2 values in [\d.]+s; tag and tokenizer run once: True; one "
                    r"tokenizer for every value: True; every value's shards decode to its selected texts: True",
                    r"^independent: 2 runs in [\d.]+s; their tokenizers identical \(trained on rules/\): True",
                    r"^sweep / independent: [\d.]+x the time"],
    "bench_tagger": [r"^tagger: Qwen2 4 layers x 128 .* 16 documents", r"^plain loop : ", r"^spark job  : .*x the plain loop"],
    "bench_trainer_balance": [r"^\| bias update \|", r"^\| on \| [\d., ]+ \|", r"^\| off \| [\d., ]+ \|"],
    "bench_trainer_gpu": [r"^device: .*; preset tiny: ", r"^tokens/s: [\d,]+", r"^model TFLOP/s: ", r"^last loss [\d.]+",
                          # the GPU's figure, or where there is none the line that says what did not run
                          r"^(peak GPU memory: |\[smoke\] not run: bf16 autocast, peak GPU memory and MFU \(no CUDA device)"],
    "bench_trainer_learning": [r"unigram entropy of training tokens: [\d.]+ nats/token", r"^trained `tiny` on 4,096 tokens",
                               r"^\| 2,048 \| [\d.]+ \|", r"^\| 4,096 \| [\d.]+ \|"],
    "build_clutter_model": [r'^  "accuracy": ', r'^  "macro_f1": '],
    "bench_url_subwords": [r"^ordinary URLs: \d+; configs/blocklists/banned_subwords\.txt \(3 subwords\): hit anywhere \(before\) \d+, by the word-start rule \(after\) \d+",
                           r"^blocklist entries: \d+; datatrove/banned_subwords\.txt \(\d+ subwords\): hit anywhere \(before\) \d+, by the word-start rule \(after\) \d+"],
    "check_vllm_scorer": [r"^vllm prefix_cache: label log-likelihoods", r"^vllm prompt_logprobs: label log-likelihoods",
                          r"^page_type: 2 rows, same label", r"^topic: 2 rows, same label", r"^vLLM check: passed"]
    + ([NOT_RUN + r"the vLLM scorer \(vllm is not installed"] if importlib.util.find_spec("vllm") is None else []),
}


@dataclass
class SmokeRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_smoke(script: str) -> SmokeRun:
    """`python bench/SCRIPT.py --smoke` from the repository root; past the timeout its whole process
    group (the JVM, workers and children it started) is killed."""
    started = time.perf_counter()
    command = [sys.executable, f"bench/{script}.py", "--smoke"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            stderr += f"\n(killed after {TIMEOUT_S} s)"
    return SmokeRun(process.returncode, stdout, stderr, time.perf_counter() - started)


def checkout_state() -> dict[str, tuple[int, int]]:
    """(size, modification time) of every file in the checkout, bench/RESULTS.md, the shipped models and
    what real runs keep under bench/work/ included; not the virtualenv, dot-folders or bytecode."""
    state = {}
    for folder, folders, files in os.walk(REPO):
        folders[:] = [name for name in folders if not name.startswith(".") and name != "__pycache__"]
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            state[os.path.relpath(os.path.join(folder, name), REPO)] = (stat.st_size, stat.st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def smoke_runs(request):
    """The smoke runs of the scripts this session selected, started at once (PARALLEL at a time), so
    that each test below finds its run done or under way; and the checkout's state before them."""
    selected = [item.callspec.params["script"] for item in request.session.items
                if item.module is request.module and "script" in getattr(getattr(item, "callspec", None), "params", {})]
    before = checkout_state()
    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    yield before, {script: pool.submit(run_smoke, script) for script in selected}
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_prints_its_figures_on_tiny_input(script, smoke_runs):
    assert script in FIGURES, f"bench/{script}.py: add the figure lines of its --smoke run to FIGURES"
    run = smoke_runs[1][script].result()
    assert run.returncode == 0, f"bench/{script}.py --smoke exited {run.returncode} after {run.seconds:.0f} s:\n{run.stderr[-3000:]}"
    assert run.stdout.splitlines()[0] == SMOKE_LINE
    missing = [line for line in FIGURES[script] if not re.search(line, run.stdout, re.MULTILINE)]
    assert not missing, f"bench/{script}.py --smoke printed none of {missing}:\n{run.stdout[-3000:]}"


def test_smoke_runs_leave_the_checkout_as_they_found_it(smoke_runs):
    """Nothing in the checkout changes: not bench/RESULTS.md, not a shipped model, not bench/work/."""
    before, runs = smoke_runs
    for run in runs.values():
        run.exception()  # waits for it
    after = checkout_state()
    assert sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path)) == []


def script_options(script: str) -> set[str]:
    """The options `bench/SCRIPT --help` lists."""
    done = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert SMOKE_HELP in " ".join(done.stdout.split())
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", done.stdout))


def bench_command_options(text: str) -> dict[str, set[str]]:
    """{bench script: the options a shell script passes it}: on each command line that runs
    `python3 bench/X.py`, and on each call of a shell function whose body runs one."""
    text = re.sub(r"\\\n", " ", text)
    lines = [re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines()]
    wrappers: dict[str, str] = {}  # shell function -> the bench script it runs
    function = None
    found: dict[str, set[str]] = {}
    for line in lines:
        if definition := re.match(r"\s*(\w+)\(\)\s*\{", line):
            function = definition.group(1)
        elif line.strip() == "}":
            function = None
        for script, arguments in re.findall(r"python3? (bench/\w+\.py)([^|;&>]*)", line):
            found.setdefault(script, set()).update(token for token in shlex.split(arguments) if token.startswith("--"))
            if function:
                wrappers[function] = script
    for line in lines:
        call = re.match(r"\s*(\w+)\s(.*)", line)
        if call and call.group(1) in wrappers:
            found[wrappers[call.group(1)]].update(word for word in shlex.split(call.group(2)) if word.startswith("--"))
    return found


@pytest.mark.parametrize("shell_script", SHELL_SCRIPTS)
def test_gpu_check_script_parses_and_runs_only_scripts_and_options_that_exist(shell_script):
    path = BENCH / shell_script
    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    text = path.read_text()
    named = set(re.findall(r"(?<![\w/.-])((?:bench|jobs|tests)/[\w./-]+\.(?:py|sh))", text))
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert named and not missing, f"{shell_script} names files that do not exist: {missing}"
    commands = bench_command_options(text)
    assert commands, f"{shell_script} runs no bench script"
    for script, options in commands.items():
        unknown = options - script_options(Path(script).name)
        assert not unknown, f"{shell_script} passes {sorted(unknown)} to {script}, which has no such option"


@pytest.mark.parametrize("shell_script", SHELL_SCRIPTS)
def test_gpu_check_script_imports_thresher_from_this_checkout_uninstalled(shell_script, tmp_path):
    """A GPU machine's python3 has torch but not thresher: what the script sets up before its first
    command (up to its `export` line) must let a python without site-packages import this checkout."""
    text = (BENCH / shell_script).read_text()
    setup = text[: text.index("\n", text.index("\nexport ") + 1)]
    probe = '"$PYTHON" -S -c "import os, thresher; print(os.path.realpath(thresher.__path__[0]))"'
    done = subprocess.run(["bash", "-c", f"{setup}\n{probe}"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO.resolve())


def test_shell_commands_are_read_with_their_wrapper_functions():
    text = """bench() {  # bench NAME OPTIONS...
  python3 bench/bench_a.py --steps 20 "$@" 2>&1 | tail -8
}
bench one --compile --size 8
python3 bench/bench_b.py --gpu --budget "$b" --repeats 2 2>&1 \\
  | grep -v "x\\|y --not-this"
"""
    assert bench_command_options(text) == {"bench/bench_a.py": {"--steps", "--compile", "--size"},
                                           "bench/bench_b.py": {"--gpu", "--budget", "--repeats"}}
