"""`meterspec conformance build`: every case file in one document, and its checksum
(INTERPRETING.md 1), byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
from pathlib import Path

from meterspec.conformance.cases import SUITE_FILE, bundle, case_files, release
from meterspec.conformance.data import HarnessError

CHECKSUM_FILE = SUITE_FILE + ".sha256"


def build(root: Path) -> dict[str, bytes]:
    """{file name: content} for suite-v1.json and its .sha256, from root/cases/v1 and the
    suite version of root/INTERPRETING.md. Files in code-point order of their paths; members
    and cases in the order the files give them."""
    data = bundle(case_files(root), release(root))
    digest = hashlib.sha256(data).hexdigest()
    return {SUITE_FILE: data, CHECKSUM_FILE: f"{digest}  {SUITE_FILE}\n".encode("ascii")}


def write(root: Path) -> list[Path]:
    """Write the built files into root; the paths written."""
    written = []
    for name, data in build(root).items():
        path = root / name
        try:
            path.write_bytes(data)
        except OSError as error:
            raise HarnessError(f"cannot write {path}: {error}") from None
        written.append(path)
    return written


def stale(root: Path) -> list[str]:
    """The built files whose content on disk differs from what build would write."""
    out_of_date = []
    for name, data in build(root).items():
        path = root / name
        try:
            current = path.read_bytes()
        except OSError:
            current = None
        if current != data:
            out_of_date.append(name)
    return out_of_date
