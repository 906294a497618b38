"""Stage 3 classifiers: page type, line clutter and topic, each behind one interface with a fastText
(default, CPU) and a transformers backend; line clutter also has line_sequence (a small torch
BiGRU over the page's lines, classifiers.line_sequence).

Models out of the box
---------------------
    thresher classifiers bootstrap --input out/prepare --output models

weak-labels the documents of a stage output (or Parquet/JSONL files, or WARC files) with transparent
rules (URL patterns and text features for page type, DCLM/C4-style line rules for clutter,
bilingual keyword seeds from configs/topics.yaml for topic), writes those labels to
models/weak_labels/{page_type,clutter,topic}.jsonl, and trains models/{page_type,clutter,topic}
with fastText. `thresher tag` runs them as the taggers of config `tag.taggers`, whose relative
model_dirs start at `tag.model_dir` (configs/default.yaml: `../models`, i.e. models/ at the
repository root; override with --models-dir or `--set tag.model_dir=DIR`). Any other model, e.g.
a quality classifier, is one more tagger: `--set tag.taggers.quality.model_dir=DIR`.

Bringing your own labels
------------------------
Labelled data is JSONL (one object per line) or Parquet with a `text` and a `label` field (other
names via --text-field/--label-field), for example the output of an LLM annotation pass:

    {"text": "Photosynthesis converts light energy ...", "label": "science.biology"}
    {"url": "https://bbs.example.com/thread-1.html", "text": "Re: ...", "label": "forum"}
    {"text": "Sign in | Register", "line_index": 0, "line_count": 40, "label": "clutter"}

- page type (--task page_type): labels from article, forum, tool, video, audio, adult, listing,
  product (others are allowed); an optional `url` field is used as the job uses it.
- clutter (--task clutter): one line per row, labels `keep` / `clutter`; optional `line_index` and
  `line_count` give the line's place in its document. A line's score is P(keep).
- topic (--task topic): labels are taxonomy ids `<domain>.<subtopic>` from configs/topics.yaml.
- anything else (--task plain), e.g. a 0/1 quality label.

    thresher classifiers train --task topic --data topics.jsonl --output models/topic
    thresher classifiers train --backend transformers --base-model /path/to/checkpoint \\
        --task page_type --data pages.parquet --output models/page_type --param epochs=2
    thresher classifiers eval models/topic            # reproduces models/topic/metrics.json

Training holds out a fraction of rows (--holdout, by hash of the text and --seed), trains on the
rest and writes the model, classifier.json (backend, labels) and metrics.json (held-out accuracy,
macro-F1, and ROC AUC for two labels) into the output directory.
"""
