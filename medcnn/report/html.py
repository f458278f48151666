"""The house style of the reports: number formatting, the Jinja2 templates and the section
titles and captions of ``layout.yaml``, and the small texts every report shows.

Knows nothing of ``results/``: the report stage (:mod:`medcnn.stages.report`) gathers the
context and renders it with these.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import yaml

from medcnn import __version__

log = logging.getLogger(__name__)


HERE = Path(__file__).parent  # the templates and layout.yaml


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: fixed digits, ``–`` for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment, made once per process (compiling a template costs more
    than rendering it; a report job renders a hundred subjects)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = fmt
    env.filters["tidy"] = tidy
    env.globals["columns_of"] = columns_of
    return env


def layout() -> dict[str, Any]:
    """Section titles and captions (``layout.yaml``)."""
    return yaml.safe_load((HERE / "layout.yaml").read_text())


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def report_versions() -> dict[str, str]:
    """Versions of the packages that drew the report."""
    out = {"medcnn": __version__}
    for name in ("jinja2", "matplotlib", "fpdf2", "scikit-learn", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def ingest_warnings(sidecar: dict[str, Any]) -> list[str]:
    """Ingest's own warnings plus what the sidecar shows a reader should know.

    Burned-in annotation matters twice: text in the pixels may identify the patient, and a
    network can learn to read it instead of the anatomy.
    """
    warnings = list(sidecar.get("Warnings") or [])
    if str(sidecar.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append(
            "burned-in annotation (BurnedInAnnotation = YES): text in the pixels may identify "
            "the patient and may be read by the model"
        )
    spacing = sidecar.get("PixelSpacing") or []
    if len(spacing) == 2 and min(spacing) > 0 and max(spacing) / min(spacing) > 1.01:
        warnings.append(f"uneven pixel spacing {spacing[0]:g} x {spacing[1]:g} mm (row x column)")
    seen: set[str] = set()
    return [w for w in warnings if not (w in seen or seen.add(w))]


def metric_rows(metrics: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a metrics JSON into ``(name, text)`` rows, intervals shown as ``x [lo, hi]``.

    Whatever the trainer writes is shown: scalars as numbers, lists of two numbers next to a
    key ending in ``_ci`` (or dicts with ``value``/``mean`` and ``low``/``high``) as
    intervals, anything else as text.
    """
    rows: list[tuple[str, str]] = []
    if not isinstance(metrics, dict):
        return [(prefix or "value", fmt(metrics))]
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if key.endswith("_ci"):
            continue
        ci = metrics.get(f"{key}_ci")
        if isinstance(value, dict):
            centre = value.get("value", value.get("mean", value.get("estimate")))
            low = value.get("low", value.get("ci_low", value.get("lower")))
            high = value.get("high", value.get("ci_high", value.get("upper")))
            if centre is not None and low is not None and high is not None:
                rows.append((name, f"{fmt(centre)} [{fmt(low)}, {fmt(high)}]"))
            else:
                rows += metric_rows(value, f"{name}.")
        elif isinstance(ci, list) and len(ci) == 2:
            rows.append((name, f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"))
        elif isinstance(value, list):
            rows.append((name, ", ".join(fmt(v) for v in value[:20])))
        else:
            rows.append((name, fmt(value)))
    return rows


def readable_number(value: float) -> str:
    """A float rounded for reading: 3 decimals below 10, 2 below 100, 1 above; tiny values
    (a learning rate) in scientific notation."""
    if not math.isfinite(value):
        return "–"
    size = abs(value)
    if size == 0:
        return "0.000"
    if size < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{3 if size < 10 else 2 if size < 100 else 1}f}"


_CENTRES = ("value", "mean", "estimate")
_LOWS = ("low", "ci_low", "lower")
_HIGHS = ("high", "ci_high", "upper")


def _interval(value: dict[str, Any]) -> str | None:
    """``x [lo, hi]`` (``(n = …)`` added) for a dict that is an estimate with its interval."""
    centre = next((value[k] for k in _CENTRES if k in value), None)
    ci = value.get("ci")
    low = next((value[k] for k in _LOWS if k in value), None)
    high = next((value[k] for k in _HIGHS if k in value), None)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = ci
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in (centre, low, high)
    ):
        return None
    extra = set(value) - {*_CENTRES, *_LOWS, *_HIGHS, "ci", "n", "sd", "median"}
    if extra:
        return None
    text = f"{tidy(centre)} [{tidy(low)}, {tidy(high)}]"
    notes = [f"{k} {tidy(value[k])}" for k in ("median", "sd") if k in value]
    notes += [f"n = {value['n']}"] if "n" in value else []
    return text + (f" ({', '.join(notes)})" if notes else "")


def _normal(name: str) -> str:
    return name.replace(".", "_").replace(" ", "_").lower()


def tidy(value: Any, _seen: dict[str, Any] | None = None, _prefix: str = "") -> Any:
    """A JSON value made readable for a table: numbers rounded, estimates with their
    intervals as ``x [lo, hi]``, ``key`` and ``key_ci`` joined, and a value shown only once
    where a nested key repeats a flat one (``best_epoch`` and ``best.epoch``).

    Returns strings, dicts of them (a nested table) and lists of dicts (a table with a
    column per key): never a Python repr.
    """
    seen = {} if _seen is None else _seen
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return readable_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        interval = _interval(value)
        if interval is not None:
            return interval
        out: dict[str, Any] = {}
        for key, item in value.items():
            key = str(key)
            if key.endswith("_ci") and key[:-3] in value:
                continue
            name = _normal(f"{_prefix}{key}")
            if name in seen and seen[name] == item:
                continue
            seen[name] = item
            ci = value.get(f"{key}_ci")
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and isinstance(item, (int, float)):
                out[key] = f"{tidy(item)} [{tidy(ci[0])}, {tidy(ci[1])}]"
            else:
                shown = tidy(item, seen, f"{_prefix}{key}.")
                if shown != {}:
                    out[key] = shown
        return out
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return [tidy(v) for v in value]
        if len(value) > 24:
            head = ", ".join(str(tidy(v)) for v in value[:24])
            return f"{head}, … ({len(value)} values)"
        return ", ".join(str(tidy(v)) for v in value)
    return str(value)


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order (a table's header)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns
