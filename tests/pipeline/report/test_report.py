"""write_report: report.json and report.html beside the run, on local disk or an object store."""

from __future__ import annotations

import json

from thresher.pipeline.report import write_report
from thresher.pipeline.stagedir import storage


def upload(directory, url):
    fs, root = storage(url)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        fs.pipe_file(f"{root}/{path.relative_to(directory)}", path.read_bytes())


def test_the_report_of_a_run_on_s3_is_written_there_and_equals_the_local_one(run_dir, s3_url, copies_and_renames):
    upload(run_dir, s3_url)
    on_s3, local = write_report(s3_url), write_report(run_dir)
    fs, root = storage(s3_url)
    fs.invalidate_cache(root)
    written = json.loads(fs.cat_file(f"{root}/report.json"))
    assert written == json.loads((run_dir / "report.json").read_text().replace(str(run_dir), s3_url)) | {
        "header": written["header"]}  # the date it was made apart
    assert written == json.loads(json.dumps(on_s3)) and local["run_dir"] == str(run_dir) and on_s3["run_dir"] == s3_url
    assert {key: value for key, value in written["header"].items() if key != "generated_utc"} == {
        key: value for key, value in local["header"].items() if key != "generated_utc"}
    html = fs.cat_file(f"{root}/report.html").decode()
    local_html = (run_dir / "report.html").read_text()
    assert html.replace(s3_url, "RUN").replace(on_s3["header"]["generated_utc"], "DATE") == local_html.replace(
        str(run_dir), "RUN").replace(local["header"]["generated_utc"], "DATE")
    assert copies_and_renames == []
