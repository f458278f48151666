"""The subject report as PDF: the same context, sections and captions as the HTML.

Drawn with fpdf2 (pure Python, no browser): headings and captions from ``layout.yaml``,
tables, and the very PNGs the HTML embeds. The built-in PDF fonts cover Latin-1 only, so
text is folded to it (a dash for an en dash, ``>=`` for ``≥``); IDs and hashes are ASCII.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from fpdf import FPDF

from medcnn.report.html import fmt

_FOLD = {"–": "-", "—": "-", "…": "...", "≥": ">=", "≤": "<=", "·": "-", "’": "'"}


def _text(value: Any) -> str:
    text = str(value)
    for a, b in _FOLD.items():
        text = text.replace(a, b)
    return text.encode("latin-1", "replace").decode("latin-1")


def _png(uri: str) -> io.BytesIO:
    return io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))


def _num(value: Any, digits: int = 3) -> str:
    return _text(fmt(value, digits))


def _segmentation(pdf: Any, s: dict[str, Any], t: dict[str, Any]) -> None:
    """A segmentation task's part of an image's page: mask figure, measurements, scores."""
    pdf.heading(f"{s['masks']['title']}: {t['task']}", 11)
    pdf.caption(s["masks"]["caption"])
    if t.get("overlay"):
        pdf.image(_png(t["overlay"]), w=170 if t["kind"] == "segmentation" else 90)
    rows = []
    if t["kind"] == "instance_segmentation":
        rows.append(["nuclei", str(t.get("n_instances"))])
    else:
        rows += [[f"{c} volume (mL)", _num(v)] for c, v in t["volume_ml"].items()]
        rows.append(["separate lesions", str(t.get("n_lesions", 0))])
    rows.append(["mask", t["mask"]])
    if t.get("dicom_seg"):
        rows.append(["DICOM SEG", t["dicom_seg"]])
    pdf.rows(None, rows, widths=(35, 65))
    if t.get("table_rows"):
        pdf.heading(s["morphology"]["title"], 11)
        pdf.caption(s["morphology"]["caption"] + " (first rows; all rows in the HTML report's CSV)")
        pdf.rows(t["table_columns"][:6], [[_num(v) for v in r[:6]] for r in t["table_rows"]])
    if t.get("metrics"):
        pdf.heading(s["scores"]["title"], 11)
        pdf.caption(s["scores"]["caption"])
        flat = []
        for k, v in t["metrics"].items():
            if isinstance(v, dict):
                flat += [[f"{k} {k2}", _num(v2)] for k2, v2 in v.items()]
            else:
                flat.append([k, _num(v)])
        pdf.rows(None, flat, widths=(35, 65))
    for g in t.get("segmentations", []):
        if pdf.will_page_break(62):
            pdf.add_page()
        pdf.image(_png(g["overlay"]), w=62)
        mean = _num(g.get("mean_uncertainty"), 4)
        pdf.caption(f"{g.get('label', '')}; mean inside the mask {mean}")
    pdf.para(f"Split role of this subject: {t['role']}.")


class _Report(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.title_text = _text(title)
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 15, 15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.set_text_color(120)
        self.cell(0, 5, f"{self.title_text} - page {self.page_no()}", align="C")
        self.set_text_color(0)

    def heading(self, text: str, size: int = 13) -> None:
        self.ln(2)
        self.set_font("Helvetica", "B", size)
        self.set_text_color(43, 93, 138)
        self.multi_cell(0, 7, _text(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)

    def caption(self, text: str) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(85)
        self.multi_cell(0, 4, _text(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)
        self.ln(1)

    def para(self, text: str, size: int = 9, style: str = "") -> None:
        self.set_font("Helvetica", style, size)
        self.multi_cell(0, 4.5, _text(text), new_x="LMARGIN", new_y="NEXT")

    def rows(self, header: list[str] | None, body: list[list[str]], widths=None) -> None:
        self.set_font("Helvetica", size=7.5)
        with self.table(
            col_widths=widths,
            text_align="LEFT",
            line_height=4.2,
            first_row_as_headings=bool(header),
        ) as table:
            for row in ([header] if header else []) + body:
                cells = table.row()
                for value in row:
                    cells.cell(_text(value))
        self.ln(2)


def subject_pdf(context: dict[str, Any], path: Path) -> Path:
    """Write the subject report of :func:`medcnn.stages.report.subject.subject_context` as PDF."""
    lay, s = context["layout"], context["layout"]["sections"]
    pdf = _Report(f"{lay['title']}: {context['subject']}")
    pdf.add_page()
    pdf.heading(f"{lay['title']}: {context['subject']}", 16)
    pdf.para(
        f"{lay['intro']} {len(context['studies'])} study/studies, "
        f"{len(context['images'])} image(s)."
    )
    _images_table(pdf, s, context["images"])
    for im in context["images"]:
        pdf.add_page()
        pdf.heading(f"{im['series']} ({im['study']}, {im['modality']} {im['view']})")
        pdf.image(_png(im["thumbnail"]), w=60)
        pdf.caption(im["window"])
        for t in im["tasks"]:
            if t.get("kind") in ("segmentation", "instance_segmentation"):
                _segmentation(pdf, s, t)
            else:
                _classification(pdf, lay, t)
    pdf.add_page()
    _warnings(pdf, s, context)
    _provenance(pdf, s, context)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def _images_table(pdf: _Report, s: dict[str, Any], images: list[dict[str, Any]]) -> None:
    """The table of the subject's images."""
    pdf.heading(s["images"]["title"])
    pdf.caption(s["images"]["caption"])
    columns = ("study", "series", "modality", "view", "shape", "spacing", "photometric")
    pdf.rows(
        ["study", "series", "modality", "view", "shape", "spacing (mm)", "photometric"],
        [[i[c] for c in columns] for i in images],
    )


def _classification(pdf: _Report, lay: dict[str, Any], t: dict[str, Any]) -> None:
    """A classification task's part of an image's page: the calls, then the saliency maps."""
    s = lay["sections"]
    pdf.heading(f"{s['predictions']['title']}: {t['task']}", 11)
    pdf.caption(s["predictions"]["caption"])
    reference = {"1": t["label"], "0": f"not {t['label']}"}.get(str(t["target"]), "unknown")
    pdf.rows(
        ["finding", "probability", "fold spread", "threshold", "call", "reference"],
        [
            [
                p["label"],
                _num(p["probability"]),
                "+/-" + _num(t["spread"]),
                _num(p["threshold"]),
                p["label"] if p["predicted"] else f"not {p['label']}",
                reference,
            ]
            for p in t["labels"]
        ],
    )
    pdf.para(f"Split role of this subject: {t['role']}.")
    if t["maps"]:
        pdf.heading(s["saliency"]["title"], 11)
        pdf.caption(s["saliency"]["caption"] + " " + s["faithfulness"]["caption"])
        for m in t["maps"]:
            _saliency_map(pdf, lay["flags"], m)


def _saliency_map(pdf: _Report, flags: dict[str, str], m: dict[str, Any]) -> None:
    """One saliency overlay with its method, faithfulness score and verdict beside it."""
    if pdf.will_page_break(62):
        pdf.add_page()
    y = pdf.get_y()
    pdf.image(_png(m["overlay"]), x=15, y=y, w=62)
    pdf.set_xy(82, y + 2)
    verdict = (
        "not_assessed"
        if not m.get("assessed", True)
        else ("reliable" if m["reliable"] else "unreliable")
    )
    lines = [
        f"{m['method_title']}, {m['label']}" + (f" (layer {m['layer']})" if m["layer"] else ""),
        f"faithfulness {_num(m['score'])} (threshold {_num(m['threshold'])})",
        flags[verdict],
        f"P = {_num(m['probability'])}; after removing the most salient "
        f"{_num(m['removed'], 2)}: {_num(m['morf'])}, least salient: "
        f"{_num(m['lerf'])}",
    ]
    for k, line in enumerate(lines):
        pdf.set_x(82)
        red = k == 2 and verdict == "unreliable"
        pdf.set_text_color(163, 33, 27) if red else pdf.set_text_color(0)
        pdf.set_font("Helvetica", "B" if k in (0, 2) else "", 8.5)
        pdf.multi_cell(110, 4.5, _text(line), new_x="RIGHT", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_y(y + 54)


def _warnings(pdf: _Report, s: dict[str, Any], context: dict[str, Any]) -> None:
    """The warnings, then the subject's quarantined files (when there are any)."""
    pdf.heading(s["warnings"]["title"])
    pdf.caption(s["warnings"]["caption"])
    if context["warnings"]:
        for w in context["warnings"]:
            pdf.para(f"- {w['series']}: {w['text']}")
    else:
        pdf.para("None.")
    if context["quarantined"]:
        pdf.heading(s["quarantine"]["title"], 11)
        pdf.caption(s["quarantine"]["caption"])
        pdf.rows(["file", "reason"], [[q["file"], q["reason"]] for q in context["quarantined"]])


def _provenance(pdf: _Report, s: dict[str, Any], context: dict[str, Any]) -> None:
    """Models and weights, source hashes and UIDs, config hash, versions, time."""
    pdf.heading(s["provenance"]["title"])
    pdf.caption(s["provenance"]["caption"])
    body = []
    for m in context["models"]:
        body.append([f"model ({m['task']})", m["name"]])
        body += [[f"weights SHA-256 ({fold})", h] for fold, h in m["folds"]]
    for im in context["images"]:
        body.append([f"source SHA-256 ({im['series']})", im["source_sha256"]])
        body += [[f"{k} ({im['series']})", v] for k, v in im["uids"].items() if v]
    body.append(["config SHA-256", context["config_sha256"]])
    body += [[k, v] for k, v in context["versions"].items()]
    body.append(["generated", context["generated"]])
    pdf.rows(None, body, widths=(35, 65))
