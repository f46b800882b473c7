"""The files a command writes: checked before any work starts, written as they come, never lost.

Checks: every output is its own path, never one of the inputs, not a folder, and an existing file
is replaced only when the user says so (--force); its folder exists (or is created) and takes a
file. Writing: each PNG appears whole (see metadata.save_png); one that cannot be written goes to
the temporary folder instead, and the user is told where.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

from PIL import Image

from gradop.metadata import save_png


def check_outputs(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]], force: bool) -> None:
    seen: dict[Path, str] = {}
    for flag, path in outputs:
        where = path.expanduser().resolve()
        if where in seen:
            raise ValueError(f"{flag} '{path}' is also the {seen[where]} file; give each output its own name")
        seen[where] = flag
        for input_flag, input_path in inputs:
            if same_file(path, input_path):
                raise ValueError(f"{flag} '{path}' is the {input_flag} input and would be overwritten; "
                                 "choose another output name")
        if path.is_dir():
            raise ValueError(f"{flag} '{path}' is a folder; give a file name ending in .png")
    existing = [str(path) for _, path in outputs if path.exists()]
    if existing and not force:
        names = ", ".join(f"'{name}'" for name in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise ValueError(f"{names} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite, "
                         "or choose another --out")
    folders: dict[Path, str] = {}
    for flag, path in outputs:
        folders.setdefault(path.expanduser().parent, flag)
    for folder, flag in folders.items():
        ensure_writable_folder(folder, flag)


def same_file(a: Path, b: Path) -> bool:
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def ensure_writable_folder(folder: Path, flag: str) -> None:
    """Prove that a file can be written in `folder`, or in the nearest existing folder above it
    (where the missing ones will be created): a probe file is made there and removed."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot create the folder '{folder}' for {flag}: '{existing}' is a file")
    probe = existing / f".gradop-write-test-{secrets.token_hex(4)}"
    try:
        probe.open("xb").close()
        probe.unlink()
    except OSError as error:
        raise ValueError(f"cannot write to the folder '{existing}' for {flag} ({error.strerror or error}); "
                         "choose a writable place") from None


class Writer:
    """Writes the PNGs as they come and says where they went; a file that cannot be written is
    saved in the temporary folder instead, so the image is never lost."""

    def __init__(self):
        self.saved: list[Path] = []
        self.rescued = False

    def write(self, image: Image.Image, path: Path, params: dict, final: bool = True) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_png(image, path, params)
        except OSError as error:
            rescue = Path(tempfile.gettempdir()) / f"gradop-{secrets.token_hex(3)}-{path.name}"
            save_png(image, rescue, params)
            print(f"gradop: warning: could not write '{path}' ({error.strerror or error}); saved it as '{rescue}'",
                  file=sys.stderr, flush=True)
            path, self.rescued = rescue, True
        if path not in self.saved:
            self.saved.append(path)
        if final:
            print(path, flush=True)
