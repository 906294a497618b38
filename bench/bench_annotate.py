"""Issue 25: `thresher annotate` throughput, batched against one document at a time, and the label
score (sum / mean / calibrated) measured on labelled data, in one run.

A scratch Qwen2 causal LM (random weights, byte-level BPE trained on the documents and the prompts;
classifiers.transformers_backend.build_scratch_qwen2) annotates DCLM documents (../shared/data/quality/
dclm/majority_data.jsonl, label 1 = high quality) with the quality task:

1. throughput: the one-at-a-time path (one forward pass per document for its prompt, its answers after
   it; CausalLMScorer.label_logprobs, the code before issue 25) against `--batch-size` documents per
   forward pass with the instructions' key/value cache shared (CausalLMScorer.score_many); docs/s and
   label tokens/s (the answer tokens scored), and the largest probability difference between them;
2. the label score: accuracy against the DCLM labels and the share labelled `high`, for sum, mean and
   calibrated. A random-weight model knows nothing about quality: accuracy near 0.5 is what it can
   show; the share shows the label-length bias (`high` and `low` are one token each here, so the bias
   shows on page types instead: the share of the shortest-in-tokens page type among the labels).

    python3 bench/bench_annotate.py [--documents 64] [--batch-size 8] [--gpu] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


class OneAtATime:
    """A scorer that scores every request alone (the pre-issue-25 path) around a batched one."""

    def __init__(self, scorer):
        self.inner = scorer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score_many(self, requests):
        return [self.inner.label_logprobs(r.prompt_ids, r.answers) for r in requests]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=64, help="documents annotated per measurement (default: 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="documents per forward pass, batched (default: 8)")
    parser.add_argument("--max-chars", type=int, default=1500, help="document characters per prompt (default: 1500)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--gpu", action="store_true", help="on cuda:0, a Qwen2-0.5B-shaped model (random weights)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        announce()
        args.documents, args.max_chars = 6, 200
    import numpy as np
    import torch

    from thresher.classifiers.annotate import Annotator, label_sets, load_prompts, shipped_prompts_dir
    from thresher.classifiers.label_scoring import CausalLMScorer
    from thresher.classifiers.transformers_backend import build_scratch_qwen2

    torch.set_num_threads(args.threads)
    data = tiny_data() if args.smoke else SHARED
    rows = [json.loads(line) for line in (data / "quality/dclm/majority_data.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r.get("text")]
    highs = [r for r in rows if int(r["label"]) == 1][: args.documents // 2]
    lows = [r for r in rows if int(r["label"]) != 1][: args.documents - len(highs)]
    documents = [{"doc_id": str(i), "text": r["text"], "lang": "en", "url": "", "gold": "high" if int(r["label"]) == 1 else "low"}
                 for i, r in enumerate(highs + lows)]
    texts = [d["text"][:2000] for d in documents] + [p.read_text(encoding="utf-8") for p in sorted(shipped_prompts_dir().glob("*"))]
    shape = {"hidden_size": 896, "layers": 24, "heads": 14, "kv_heads": 2} if args.gpu else {"hidden_size": 128, "layers": 4, "heads": 4, "kv_heads": 2}
    if args.smoke:
        shape = {"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1}
    model_dir = build_scratch_qwen2(texts, scratch_directory() / "lm", head="causal_lm", vocab_size=2000, init_std=0.3, **shape)
    scorer = CausalLMScorer(model_dir, "cuda:0" if args.gpu else "cpu")
    device = "cuda:0 " + torch.cuda.get_device_name(0) if args.gpu else f"cpu, {args.threads} threads"
    print(f"model: Qwen2 {shape['layers']} layers x {shape['hidden_size']}, random weights; {len(documents)} DCLM documents, "
          f"{args.max_chars} chars each; {device}")

    prompts, labels = load_prompts("quality"), label_sets("quality")
    answer_tokens = sum(len(scorer.encode_answer(x)) for x in labels.labels)

    def timed(annotator, batch_size):
        annotator.annotate_many(documents[:1])  # warm: the content-free prompt, the instructions' cache
        start = time.perf_counter()
        out = []
        for k in range(0, len(documents), batch_size):
            out += annotator.annotate_many(documents[k:k + batch_size])
        if args.gpu:
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    results = {}
    for name, wrapped, batch_size in (("one at a time", OneAtATime(scorer), 1), (f"batched x{args.batch_size}", scorer, args.batch_size)):
        annotator = Annotator("quality", wrapped, prompts, labels, args.max_chars, "sum")
        out, seconds = timed(annotator, batch_size)
        results[name] = out
        print(f"{name}: {len(documents) / seconds:.1f} docs/s, {len(documents) * answer_tokens / seconds:.0f} label tokens/s ({seconds:.2f} s)")
    first, second = results.values()
    gap = max(abs(a["label_probabilities"][x] - b["label_probabilities"][x]) for a, b in zip(first, second, strict=True) for x in a["label_probabilities"])
    print(f"batched vs one at a time: largest probability difference {gap:.2e}, same labels: "
          f"{all(a['label'] == b['label'] for a, b in zip(first, second, strict=True))}")

    page_types = label_sets("page_type")
    lengths = {x: len(scorer.encode_answer(x)) for x in page_types.labels}
    shortest = min(lengths, key=lengths.get)
    print("| label score | quality accuracy | share labelled high | page types: share labelled the shortest, "
          f"{shortest} ({lengths[shortest]} tokens, of {min(lengths.values())}-{max(lengths.values())}) |")
    print("|---|---|---|---|")
    for how in ("sum", "mean", "calibrated"):
        quality = Annotator("quality", scorer, prompts, labels, args.max_chars, how)
        rows_q = [r for k in range(0, len(documents), args.batch_size) for r in quality.annotate_many(documents[k:k + args.batch_size])]
        accuracy = float(np.mean([r["label"] == d["gold"] for r, d in zip(rows_q, documents, strict=True)]))
        high = float(np.mean([r["label"] == "high" for r in rows_q]))
        pages = Annotator("page_type", scorer, load_prompts("page_type"), page_types, args.max_chars, how)
        rows_p = [r for k in range(0, len(documents), args.batch_size) for r in pages.annotate_many(documents[k:k + args.batch_size])]
        short = float(np.mean([r["label"] == shortest for r in rows_p]))
        print(f"| {how} | {accuracy:.2f} | {high:.2f} | {short:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
