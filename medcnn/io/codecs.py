"""pydicom imported light for the ingest command, its codec libraries loaded when a file needs one.

``import pydicom`` registers every pixel-data plugin it knows, and registering one imports its
library: GDCM, CharLS and pylibjpeg with its OpenJPEG, libjpeg and RLE plugins. That is about
0.1 s of every ``medcnn ingest`` start (the imports of the ingest path: 0.58 s, 0.45 s without
them, best of 10 on one machine; dcm2niix converts a 600-file folder in 0.35 s), and most
folders hold only uncompressed data. pydicom also imports ``requests``, only to download its
own test files (it falls back on ``urllib``).

:func:`import_pydicom` imports pydicom with those modules made unimportable for the moment
(``sys.modules[name] = None``), so pydicom records the plugins as unavailable, and then lets
them import again. :func:`load_codecs` imports the libraries and registers the plugins again
through pydicom's ``remove_plugin`` / ``add_plugin``, decoders and encoders alike, in the order
pydicom tries them, so that pydicom then holds exactly what a plain ``import pydicom`` makes (a
test compares the two). medcnn calls it before it decodes pixel data of a compressed transfer
syntax, in the process that forks the bounded decoders (once per process; a no-op when nothing
was deferred). Only ``medcnn ingest`` defers the codecs (``import_pydicom(defer_codecs=True)``);
a library user's ``import medcnn.ingest`` keeps out only ``requests``, and nothing at all once
pydicom is imported.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings

#: pydicom's plugin label -> the libraries it imports (the ``sys.modules`` names kept out).
CODEC_LIBRARIES = {
    "gdcm": ("gdcm",),
    "pyjpegls": ("jpeg_ls",),
    "pylibjpeg": ("pylibjpeg", "openjpeg", "libjpeg", "rle"),  # and its plugins
}
#: Imported by pydicom only to download its own test data (``urllib`` serves as well).
UNNEEDED = ("requests",)
#: The function a plugin module registers where it is not ``_decode_frame`` / ``_encode_frame``.
FUNCTIONS = {("encoders", "gdcm"): "encode_pixel_data"}
#: pydicom's deprecated handlers (the ``use_v2_backend`` path), which test for the same libraries.
LEGACY = {"gdcm": "gdcm_handler", "pyjpegls": "jpeg_ls_handler", "pylibjpeg": "pylibjpeg_handler"}

DEFLATED = "1.2.840.10008.1.2.1.99"
#: Implicit and explicit VR little endian, big endian and deflated: decoded by pydicom itself.
UNCOMPRESSED = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", DEFLATED}
)

_lock = threading.Lock()
_deferred: list[str] = []  # the plugin labels whose libraries were kept out at import


def import_pydicom(defer_codecs: bool = False) -> None:
    """Import pydicom without ``requests`` (and, with ``defer_codecs``, without its codec
    libraries until :func:`load_codecs`). Does nothing when pydicom is already imported."""
    if "pydicom" in sys.modules:
        return
    labels = list(CODEC_LIBRARIES) if defer_codecs else []
    names = [*UNNEEDED, *(m for label in labels for m in CODEC_LIBRARIES[label])]
    blocked = [m for m in names if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import pydicom  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    _deferred.extend(label for label in labels if set(CODEC_LIBRARIES[label]) & set(blocked))


def deferred() -> tuple[str, ...]:
    """The plugin labels whose libraries are still kept out (empty once loaded)."""
    return tuple(_deferred)


def load_codecs(syntax: str | None = None) -> None:
    """Import the codec libraries :func:`import_pydicom` deferred and register pydicom's
    plugins for them again: a no-op when none was deferred, when done already, or when
    ``syntax`` (a Transfer Syntax UID) is an uncompressed one, which needs no plugin."""
    if not _deferred or (syntax is not None and syntax in UNCOMPRESSED):
        return
    # Imported as at a plain `import pydicom`: a caller that turns warnings into errors (as
    # the checked decode does) must not make a library's import warning fail it.
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not _deferred:
            return
        from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
        from pydicom.pixels.encoders.base import _PIXEL_DATA_ENCODERS

        registries = {"decoders": _PIXEL_DATA_DECODERS, "encoders": _PIXEL_DATA_ENCODERS}
        for label in _deferred:
            legacy = sys.modules.get(f"pydicom.pixel_data_handlers.{LEGACY[label]}")
            if legacy is not None:
                importlib.reload(legacy)  # it recorded HAVE_... = False at import
            for kind in registries:
                module = sys.modules.get(f"pydicom.pixels.{kind}.{label}")
                if module is not None:
                    importlib.reload(module)
        for kind, registry in registries.items():
            default = "_decode_frame" if kind == "decoders" else "_encode_frame"
            for coder, *_ in registry.values():
                # Registered while its library was kept out, in the order pydicom added them.
                labels = [k for k in coder._unavailable if k in _deferred]
                for label in labels:
                    path = f"pydicom.pixels.{kind}.{label}"
                    coder.remove_plugin(label)
                    coder.add_plugin(label, (path, FUNCTIONS.get((kind, label), default)))
                # pydicom tries a coder's plugins in the order they were added, and it adds
                # these before the ones that need no library (pillow, its own RLE codec).
                if labels:
                    for k in [k for k in coder._available if k not in labels]:
                        coder._available[k] = coder._available.pop(k)
        _deferred.clear()
