"""How the command line reports a failure: one line for the user (exit code 2 for what they can
fix, 1 for the rest), and the traceback of anything unexpected appended to a log file."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


def log_file() -> Path:
    """Where unexpected errors are recorded with their traceback: $GRADOP_LOG, else the user's cache."""
    if os.environ.get("GRADOP_LOG"):
        return Path(os.environ["GRADOP_LOG"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gradop" / "gradop-errors.log"


def record_unexpected(error: BaseException, argv: list[str] | None) -> Path:
    """Append the traceback to the log file (the temporary folder when that fails); its path."""
    text = (f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} gradop {' '.join(argv if argv is not None else sys.argv[1:])}\n"
            + "".join(traceback.format_exception(error)))
    for path in (log_file(), Path(tempfile.gettempdir()) / "gradop-errors.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as file:
                file.write(text)
            return path
        except OSError:
            continue
    return Path("(no writable log file)")


def explain(error: Exception, argv: list[str] | None) -> tuple[int, str]:
    """(exit code, one line) for a failure: 2 for what the user can fix, 1 for the rest."""
    from gradop.jobs import is_out_of_memory
    from gradop.region_words import MissingWordError

    if isinstance(error, MissingWordError):
        return 2, f"error: {error.advice('--append-missing-words')}"
    if isinstance(error, ValueError):  # gradop's user errors, ModelLoadError included
        return 2, f"error: {first_line(error)}"
    if is_out_of_memory(error):
        return 1, ("error: out of memory; lower --height/--width, --num-images or --grad-steps, "
                   "or use a machine with more memory")
    path = record_unexpected(error, argv)
    return 1, (f"unexpected error ({error.__class__.__name__}: {first_line(error)[:200]}); the details are in "
               f"{path}. Please report it with that file.")


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__
