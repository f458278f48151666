"""Load and validate the workflow configuration against the one schema.

The same schema file serves Snakemake's ``validate()`` (through ``config/schema.yaml``) and the
CLI, so a key that one accepts the other accepts too.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schema" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema; the message names the key."""


def load_schema() -> dict[str, Any]:
    """Return the configuration JSON schema (parsed from its YAML file)."""
    with open(SCHEMA_PATH) as fh:
        # libyaml's loader when PyYAML has it: the same result, ~10x faster than the pure
        # Python one (which took ~70 ms of every ingest start).
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's default of each key of one section of a task (``train``, ``segmentation``…)."""
    properties = load_schema()["$defs"]["task"]["properties"][section]["properties"]
    return {k: copy.deepcopy(v["default"]) for k, v in properties.items() if "default" in v}


def validator_with_defaults(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator that also fills in each property's ``default``."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    # deepcopy: a shared mutable default would leak between tasks.
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a configuration and return a copy with every default filled in.

    Raises:
        ConfigError: naming the offending key path, e.g. ``tasks.cxr.train: Additional
            properties are not allowed ('epoch' was unexpected)``.
    """
    # A JSON round trip, not deepcopy: it also breaks YAML aliases (``*anchor``), which would
    # otherwise make two tasks share one dict and receive each other's defaults.
    config = json.loads(json.dumps(config))
    validator = validator_with_defaults(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{where}: {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    for name, task in config.get("tasks", {}).items():
        _check_task(name, task)
    return config


#: Task kinds whose models segment (the others classify).
SEGMENTATION_KINDS = ("segmentation", "instance_segmentation")


def is_segmentation(task: dict[str, Any]) -> bool:
    """True for a segmentation or instance segmentation task (the kind decides the stages'
    code path)."""
    return task["kind"] != "classification"


def tta_enabled(task: dict[str, Any]) -> bool:
    """``predict.tta`` of a validated task: its value, or for ``null`` the kind's default
    (on for instance segmentation, off otherwise)."""
    setting = (task.get("predict") or {}).get("tta")
    if setting is None:
        return task["kind"] == "instance_segmentation"
    return bool(setting)


#: Networks per kind of task (the schema lists them all).
CLASSIFIERS = ("densenet", "resnet", "seresnet", "efficientnet")
SEGMENTERS = ("unet", "dynunet", "segresnet")


def _check_task(name: str, task: dict[str, Any]) -> None:
    """What the schema cannot say: the default network of a kind, and which fit which.

    Raises:
        ConfigError: a network of the wrong kind, a 3D task that is not segmentation, or
            slices (2D-on-volume) on a task that is not 3D segmentation.
    """
    segmentation = is_segmentation(task)
    network = task["network"]
    if network["name"] is None:
        network["name"] = "unet" if segmentation else "densenet121"
    if segmentation != (network["name"] in SEGMENTERS):
        raise ConfigError(
            f"tasks.{name}.network.name: {network['name']!r} does not fit a {task['kind']} task "
            f"(segmentation: {', '.join(SEGMENTERS)}; classification: the others)"
        )
    if task["train"]["batch_size"] is None and not segmentation:
        task["train"]["batch_size"] = 16
    if task["dims"] == 3 and task["kind"] != "segmentation":
        raise ConfigError(f"tasks.{name}.dims: 3 is for segmentation tasks ({task['kind']} is 2D)")
    slices = (task.get("segmentation") or {}).get("slices") or {}
    if slices.get("enabled") and (task["dims"] != 3 or task["kind"] != "segmentation"):
        raise ConfigError(
            f"tasks.{name}.segmentation.slices.enabled: a 2D network on slices needs a 3D "
            f"segmentation task (this one is a {task['dims']}D {task['kind']} task)"
        )


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file, validate it and fill in defaults.

    Raises:
        ConfigError: when the file is missing, not YAML, or does not match the schema.
    """
    path = Path(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        config = validate_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return attach_bundles(config)


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a configuration (for provenance)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def task_config(config: dict[str, Any], task: str) -> dict[str, Any]:
    """The settings of one task, with a clear error for an unknown task name."""
    try:
        return config["tasks"][task]
    except KeyError:
        known = ", ".join(sorted(config.get("tasks", {}))) or "none"
        raise ConfigError(f"unknown task {task!r} (configured: {known})") from None


def reference_markdown() -> str:
    """The configuration reference as a Markdown table, generated from the schema.

    docs/configuration.md embeds this output (a test checks it is current), so the
    documentation of a key cannot drift from the key itself.
    """
    schema = load_schema()
    rows: list[tuple[str, str, str, str]] = []

    def walk(node: dict[str, Any], prefix: str, required: set[str]) -> None:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        kind = node.get("type", "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if "enum" in node:
            kind += " (" + ", ".join(str(v) for v in node["enum"]) + ")"
        if prefix:
            if "default" in node and not isinstance(node["default"], dict):
                default = json.dumps(node["default"])
            elif prefix.rsplit(".", 1)[-1] in required:
                default = "required"
            else:
                default = ""
            text = " ".join(str(node.get("description", "")).split())
            rows.append((prefix, kind, default, text))
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{prefix}.{name}" if prefix else name, set(node.get("required", [])))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{prefix}.<name>", set())
        items = node.get("items")
        if isinstance(items, dict) and items.get("properties"):
            walk(items, f"{prefix}[]", set())

    walk(schema, "", set(schema.get("required", [])))
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d and f'`{d}`'} | {text} |" for k, t, d, text in rows]
    return "\n".join(lines) + "\n"


def bundle_folds(path: str | Path) -> list[Path]:
    """The fold bundles of a bundle folder, in fold order.

    Raises:
        ConfigError: the folder holds no ``fold<k>/bundle.json``.
    """
    folder = Path(path)
    folds = sorted(folder.glob("fold*/bundle.json"), key=lambda p: int(p.parent.name[4:]))
    if not folds:
        raise ConfigError(f"{folder}: no model bundle (fold*/bundle.json) in this folder")
    return [p.parent for p in folds]


def attach_bundles(config: dict[str, Any]) -> dict[str, Any]:
    """Add each ``bundles:`` entry to ``config['tasks']`` with the settings it was trained with.

    The task gets a ``bundle`` key (the folder) and ``quality`` (the policy). Modifies and
    returns ``config``.

    Raises:
        ConfigError: a name used for both a trained task and a bundle, or a bundle whose
            task settings no longer validate.
    """
    schema = load_schema()
    for name, entry in config.get("bundles", {}).items():
        if name in config["tasks"] and "bundle" not in config["tasks"][name]:
            raise ConfigError(f"bundles.{name}: a task of that name is also configured to train")
        folds = bundle_folds(entry["path"])
        settings = json.loads((folds[0] / "config.json").read_text())
        # A bundle written by an older medcnn lacks settings added since: their defaults.
        validator = validator_with_defaults({**schema["$defs"]["task"], "$defs": schema["$defs"]})
        errors = list(validator.iter_errors(settings))
        if errors:
            raise ConfigError(f"{folds[0] / 'config.json'}: {errors[0].message}")
        config["tasks"][name] = {
            **settings,
            "bundle": str(entry["path"]),
            "quality": entry["quality"],
        }
    return config
