"""The report stage: ``results/reports/{subject}.html`` (+ PDF) per subject and
``results/reports/cohort.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcnn.stages.subjects import batch_marker, for_each_subject, job_subjects


def run(config: dict[str, Any], subject: list[str] | None, batch: str | None, cohort: bool) -> None:
    """Report each subject given (or of the batch, then its marker), then the cohort report
    when ``cohort``; prints each report's path."""
    from medcnn.stages.report.cohort import render_cohort
    from medcnn.stages.report.subject import render_subject

    results = Path(config["results"])

    def one(subject: str) -> list[str]:
        html = Path(render_subject(config, subject))
        print(html)
        outputs = [html] + ([html.with_suffix(".pdf")] if config["report"]["pdf"] else [])
        return [str(Path(o).resolve().relative_to(results.resolve())) for o in outputs]

    subjects = job_subjects(config, batch, subject)
    if subjects or batch:
        for_each_subject(subjects, one, batch_marker(config, batch, "reports"), "report")
    if cohort:
        print(render_cohort(config))
