"""A cache of pydicom's value conversions, for headers read by the thousand.

Turning an element's bytes into a value (``DSfloat``, ``IS``, ``MultiValue`` of them, a UID,
text decoded in the file's character set) is most of what reading a header costs once the
element is found: pydicom validates and builds each value anew, ~10 µs an element. The files
of a series repeat most of their values byte for byte (Manufacturer, PixelSpacing,
ImageOrientationPatient, EchoTime, the private diffusion elements of a b-value), so the header
pass converts the same bytes hundreds of times.

:func:`install` wraps pydicom's ``raw_element_value`` hook (``pydicom.hooks``): a short value
is converted by pydicom's own callback once per (tag, VR, bytes, byte order, character set),
and later elements with the same key get that value back, lists and ``MultiValue`` as fresh
copies (so a caller that changes one changes no other data set); the scalar values pydicom
makes (``str``, ``int``, ``float`` and their DICOM subclasses, ``PersonName``) are immutable.
The tag is in the key because pydicom's callback treats some tags apart (LUT descriptors).
Values longer than :data:`MAX_VALUE_BYTES`, sequences and binary VRs are always converted
afresh, and the cache holds at most :data:`MAX_ENTRIES` values (it is emptied when full, and
by :func:`clear` at the start of each header pass). Conversion errors are not cached: pydicom
raises, or turns the element into UN, as without the cache.

The cache is only used while pydicom's default callback is the hook and no hook keyword
arguments are registered, and it assumes pydicom's reading settings
(``pydicom.config``) do not change within a header pass; medcnn never changes them.
"""

from __future__ import annotations

import threading
from typing import Any

from pydicom import hooks as pydicom_hooks
from pydicom.multival import MultiValue

#: Longer values (a private blob, a long comment) are converted afresh each time.
MAX_VALUE_BYTES = 256
#: At most this many cached values (about 10 MB); the cache is emptied when it is full.
MAX_ENTRIES = 50_000
#: VRs whose values are not cached (sequences, binary and unknown data).
UNCACHED_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})

_default = pydicom_hooks.raw_element_value
_cache: dict[tuple, tuple[Any]] = {}
_lock = threading.Lock()
counts = {"hits": 0, "misses": 0}


def _copy(value: Any) -> Any:
    if isinstance(value, MultiValue):
        fresh = MultiValue.__new__(MultiValue)
        fresh._constructor = value._constructor
        fresh._list = list(value._list)
        return fresh
    if isinstance(value, list):
        return list(value)
    return value


def cached_raw_element_value(
    raw: Any, data: dict[str, Any], *, encoding: Any = None, ds: Any = None, **kwargs: Any
) -> None:
    """pydicom's ``raw_element_value`` callback, its results cached (see the module)."""
    vr = data["VR"]
    value = raw.value
    if kwargs or vr in UNCACHED_VRS or value is None or len(value) > MAX_VALUE_BYTES:
        _default(raw, data, encoding=encoding, ds=ds, **kwargs)
        return
    charset = encoding if encoding is None or isinstance(encoding, str) else tuple(encoding)
    key = (raw.tag, vr, value, raw.is_little_endian, charset)
    hit = _cache.get(key)
    if hit is None:
        _default(raw, data, encoding=encoding, ds=ds)
        counts["misses"] += 1
        if data.get("VR") != vr:  # pydicom turned it into UN (a wrong length): not cached
            return
        with _lock:
            if len(_cache) >= MAX_ENTRIES:
                _cache.clear()
            _cache[key] = (data["value"],)
        data["value"] = _copy(data["value"])
        return
    counts["hits"] += 1
    data["value"] = _copy(hit[0])


def install() -> None:
    """Use the cache for pydicom's value conversions (a no-op when another callback than
    pydicom's default is registered, or when it is installed already)."""
    if pydicom_hooks.hooks.raw_element_value is _default:
        pydicom_hooks.hooks.register_callback("raw_element_value", cached_raw_element_value)


def clear() -> None:
    """Empty the cache (each header pass starts with an empty one)."""
    with _lock:
        _cache.clear()
