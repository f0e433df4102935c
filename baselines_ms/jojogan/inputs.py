"""Reading JoJoGAN's images: the style references and the photos to stylize (no MindSpore here).

An entry is an image file, a bundled photo (builtin:astronaut, builtin:grace_hopper), or one
member of a built-in set under the name the data sources give it (``builtin:painted/0003``,
``builtin:photos/0000``); photo entries may also be a folder, a .txt list, a .zip or a whole
built-in set. A problem is an InputError naming the entry (one line, exit code 2 in the tools).
"""
import re

import numpy as np

from modify_ms.data.imageio import InputError

BUILTIN_MEMBER = re.compile(r"builtin:(photos|painted)/(\d{4})")


def builtin_member(entry, size):
    """float32 [3, size, size] of ``builtin:<set>/<index>``, or None when ``entry`` is not one."""
    from modify_ms.data.builtin import builtin_images
    from modify_ms.data.prepare import to_model_array

    match = BUILTIN_MEMBER.fullmatch(entry)
    if match is None:
        return None
    images = builtin_images(match.group(1), size)
    index = int(match.group(2))
    if index >= len(images):
        raise InputError(entry, f"builtin:{match.group(1)} has {len(images)} images (0000 .. {len(images) - 1:04d})")
    return to_model_array(images[index])


def read_entry(entry, size, align, source=None, index=None):
    """One image entry -> float32 [1, 3, size, size] in [-1, 1]."""
    from modify_ms.stylize import read_photo

    member = builtin_member(entry, size)
    if member is not None:
        return member[None]
    if source is None and not entry.startswith("builtin:"):
        import os

        if not os.path.isfile(entry):
            raise InputError(entry, "no such image file")
    return read_photo(entry, source, index, size, align)


def read_references(entries, size, align):
    """[N, 3, size, size]: every style reference, in order; the first unusable one is an InputError."""
    return np.concatenate([read_entry(e, size, align) for e in entries])


def list_photos(entries, max_photos=0):
    """[(name, source or None, index)] of every photo the entries name, in order (nothing decoded);
    ``max_photos`` > 0 keeps the first that many."""
    from modify_ms.stylize import list_inputs

    items = []
    for entry in entries:
        if BUILTIN_MEMBER.fullmatch(entry):
            items.append((entry, None, None))
            continue
        names, source, single = list_inputs(entry)
        items += [(name, None if single else source, None if single else i) for i, name in enumerate(names)]
    return items[:max_photos] if max_photos else items
