"""Reject rows: one per record, document or line that a stage removed, with the reason."""

import pyarrow as pa

REJECT = pa.schema(
    [
        pa.field("doc_id", pa.string()),  # null only where no document could be formed (unreadable file)
        pa.field("url", pa.string()),
        pa.field("warc_path", pa.string()),
        pa.field("stage", pa.string(), nullable=False),  # prepare | rules | tag | select | tokenizer | export
        pa.field("rule", pa.string(), nullable=False),  # the named reason, e.g. "url_blocklist:gambling"
        pa.field("detail", pa.string()),  # free text: the value that tripped the rule, kept doc_id, error
        pa.field("content", pa.string()),  # the removed line, or the start of the removed text, to audit it
    ]
)

CONTENT_SNIPPET_CHARS = 500  # enough of a removed page to audit the decision, small enough to store

LINE_DUPLICATE_OF_REFERENCE = "line_duplicate_of_reference"  # line dedup against earlier runs (rules.dedup.references)
LINE_RULES = ("line_dedup", LINE_DUPLICATE_OF_REFERENCE)  # line rejects besides the taggers' `<tagger>_line`: lines, not documents


def is_line_rule(rule: str) -> bool:
    """Whether a reject rule removes lines from a kept document (not the document itself)."""
    return rule in LINE_RULES or rule.endswith("_line")
