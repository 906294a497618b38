"""`thresher annotate --backend vllm` against `--backend transformers` on the same tiny causal LM, on a GPU
machine where vLLM is installed (bench/gpu_checks_tagger.sh runs it only then):

    python3 bench/check_vllm_scorer.py

A Qwen2ForCausalLM with random weights (head dim 64, which vLLM's attention kernels take) and a
byte-level BPE trained here on real documents and the prompt files; both scorers label the same real
documents (DCLM, ChineseWebText in ../shared/data) for page_type and topic, in bf16, vLLM in both
of its scoring ways (prefix_cache, prompt_logprobs). Printed: the largest difference of the label
log-likelihoods on the same prompts, of the written probabilities, the share of rows with the same
label, and documents per second of each. Both run bf16
kernels of their own, so agreement is to bf16 rounding, not exact.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, not_run, tiny_data  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "quality"
LOGPROB_TOLERANCE = 0.1  # nats: bf16 logits of a 2-layer model, two engines' kernels
PROBABILITY_TOLERANCE = 0.03


def real_documents(count: int, quality: Path = SHARED) -> list[dict]:
    half, docs = count // 2, []
    for path, field, lang in ((quality / "dclm" / "majority_data.jsonl", "text", "en"), (quality / "chinesewebtext" / "cleared1.jsonl", "raw_content", "zh")):
        with open(path, encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines if line.strip()]
        docs += [{"doc_id": f"{lang}-{i}", "url": row.get("url") or f"https://example.org/{lang}/{i}", "text": row[field], "lang": lang}
                 for i, row in enumerate(rows[:half])]
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=40, help="documents labelled per task, half English, half Chinese (default: 40)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    quality, device = SHARED, "cuda:0"
    if args.smoke:  # on CPU where there is no GPU
        announce()
        quality, device, args.documents = tiny_data() / "quality", "auto", 2

    from thresher.classifiers.annotate import (
        Annotator,
        annotate_file,
        label_sets,
        load_prompts,
        shipped_prompts_dir,
    )
    from thresher.classifiers.label_scoring import CausalLMScorer
    from thresher.classifiers.topic import default_topics_file
    from thresher.classifiers.transformers_backend import build_scratch_qwen2
    from thresher.classifiers.vllm_backend import SCORING, VLLMScorer

    docs = real_documents(args.documents, quality)
    with tempfile.TemporaryDirectory(prefix="check-vllm-") as work:
        work = Path(work)
        texts = [d["text"][:2000] for d in docs] + [p.read_text(encoding="utf-8") for p in sorted(shipped_prompts_dir().glob("*.txt"))]
        texts += [(shipped_prompts_dir() / "labels.yaml").read_text(encoding="utf-8"), default_topics_file().read_text(encoding="utf-8")]
        model = build_scratch_qwen2(texts, work / "lm", head="causal_lm", hidden_size=256, heads=4, kv_heads=2, vocab_size=4000,
                                    max_positions=4096, init_std=0.3)
        source = work / "docs.jsonl"
        source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        transformers_scorer = CausalLMScorer(model, device)
        if args.smoke and importlib.util.find_spec("vllm") is None:
            not_run("the vLLM scorer", "vllm is not installed: the transformers scorer stands in for it, so every "
                    "comparison below is transformers with itself")
            vllm_scorer = transformers_scorer
        else:
            vllm_scorer = VLLMScorer(model, dtype="bfloat16", gpu_memory_utilization=0.3)
        failures = 0

        for scoring in SCORING:
            vllm_scorer.scoring = scoring  # one engine, both ways of reading it
            worst = 0.0
            for task in ("page_type", "topic"):
                labels = label_sets(task)
                annotator = Annotator(task, transformers_scorer, load_prompts(task), labels)
                step, label_set = ("topic_domain", labels.domains) if task == "topic" else (task, labels)
                for doc in docs[:: max(1, len(docs) // 8)]:
                    lang = "zh" if doc["lang"] == "zh" else "en"
                    ids, answers = annotator.request(step, label_set, lang, document=doc["text"][:1500], url=doc["url"])
                    a, b = transformers_scorer.label_logprobs(ids, answers), vllm_scorer.label_logprobs(ids, answers)
                    worst = max(worst, float(abs(a - b).max()))
            ok = worst <= LOGPROB_TOLERANCE
            failures += not ok
            print(f"vllm {scoring}: label log-likelihoods, same prompts: max |transformers - vllm| = {worst:.4f} nats "
                  f"(tolerance {LOGPROB_TOLERANCE}: {'ok' if ok else 'NOT ok'})")

        for task, scoring in [(task, scoring) for task in ("page_type", "topic") for scoring in SCORING]:
            vllm_scorer.scoring = scoring
            rows, seconds = {}, {}
            for name, scorer in (("transformers", transformers_scorer), (f"vllm {scoring}", vllm_scorer)):
                out = work / f"{task}.{name.replace(' ', '_')}.jsonl"
                out.unlink(missing_ok=True)
                started = time.perf_counter()
                annotate_file(source, out, task, scorer, max_chars=1500)
                seconds[name] = time.perf_counter() - started
                rows[name] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            pairs = list(zip(rows["transformers"], rows[f"vllm {scoring}"], strict=True))
            assert all(a["doc_id"] == b["doc_id"] for a, b in pairs)
            same = sum(a["label"] == b["label"] for a, b in pairs) / len(pairs)
            # every row's domain (topic) or label probabilities; a topic row's subtopics where both chose the same domain
            compared = [(a["domain_probabilities"], b["domain_probabilities"]) for a, b in pairs if task == "topic"]
            compared += [(a["label_probabilities"], b["label_probabilities"]) for a, b in pairs
                         if a["label_probabilities"].keys() == b["label_probabilities"].keys()]
            diff = max(abs(p[k] - q[k]) for p, q in compared for k in p)
            ok = diff <= PROBABILITY_TOLERANCE
            failures += not ok
            print(f"{task}: {len(pairs)} rows, same label {same:.0%}, max probability difference {diff:.4f} "
                  f"(tolerance {PROBABILITY_TOLERANCE}: {'ok' if ok else 'NOT ok'}); "
                  + ", ".join(f"{name} {len(pairs) / s:.1f} docs/s" for name, s in seconds.items()))
    print("vLLM check:", "passed" if not failures else f"{failures} check(s) NOT ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
