"""The memory budget: small files that decode to gigabytes are refused from their headers, within seconds and at
low memory (measured in a child process), and the budget follows the machine or ``OGAUDIT_MEMORY_BUDGET``."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ogaudit.data import limits
from ogaudit.data.imagefiles import MAX_IMAGE_PIXELS, MAX_SIDE
from ogaudit.data.limits import ImageHeader, image_memory_estimate, memory_budget, parse_size, read_image_header
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError, SettingsError

REPO = Path(__file__).resolve().parents[2]
BOMB_SIDE = 6000  # 36 megapixels: under the loader's 40 MP per-image cap, so each image alone is accepted
BOMB_IMAGES = 8  # 8 x 144 MiB decoded (Pillow holds RGB in 4 bytes a pixel): about 1.1 GiB
CHILD_BUDGET = "512M"
PEAK_BOUND_MB = 300  # a child that decoded even two of the images would pass this


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def solid_png(side: int, rgb=(200, 30, 30)) -> bytes:
    """A valid ``side`` x ``side`` RGB PNG of one colour, compressed row by row (never whole in memory)."""
    row = b"\x00" + bytes(rgb) * side
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_png() -> bytes:
    data = solid_png(BOMB_SIDE)
    assert len(data) < 200_000
    return data


@pytest.fixture(scope="module")
def png_zip(big_png) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(BOMB_IMAGES):
            archive.writestr(f"photos/{'ab'[i % 2]}/{i}.png", big_png)
    return buffer.getvalue()


def _raw_deflate_zeros(count: int, prefix: bytes) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` and ``count`` zero bytes, and its CRC-32, built in about a second:
    a fully flushed block of 64 MiB of zeros is independent of what precedes it, so it is repeated."""
    block = 64 * 1024**2
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = [head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH)]
    zeros = bytes(block)
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = body.compress(zeros) + body.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(count // block):
        stream.append(segment)
        crc = zlib.crc32(zeros, crc)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    rest = bytes(count % block)
    stream.append(tail.compress(rest) + tail.flush(zlib.Z_FINISH))
    return b"".join(stream), zlib.crc32(rest, crc)


def zip_with_deflated_members(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip whose members are given as (raw deflate data, CRC-32, uncompressed size), written by hand."""
    out, central = io.BytesIO(), []
    for name, (data, crc, size) in members.items():
        offset, encoded = out.tell(), name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0))
        out.write(encoded + data)
        entry = (0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0, 0, 0, 0, 0, offset)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", *entry) + encoded)
    start = out.tell()
    out.write(b"".join(central))
    size = out.tell() - start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), size, start, 0))
    return out.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.fixture(scope="module")
def npz_bomb(tmp_path_factory) -> Path:
    """A ~1 MB .npz holding (really, not just declaring) 1.2 GB of zeros in x: a valid file numpy would load."""
    shape = (1200, 1000, 1000)
    header = _npy_header(shape, "|u1")
    x_data, x_crc = _raw_deflate_zeros(int(np.prod(shape)), header)
    labels = np.arange(shape[0]) % 2
    y_bytes = io.BytesIO()
    np.save(y_bytes, labels)
    y_raw = y_bytes.getvalue()
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    y_data = compressor.compress(y_raw) + compressor.flush()
    archive = zip_with_deflated_members(
        {
            "x.npy": (x_data, x_crc, len(header) + int(np.prod(shape))),
            "y.npy": (y_data, zlib.crc32(y_raw), len(y_raw)),
        }
    )
    path = tmp_path_factory.mktemp("npz-bomb") / "bomb.npz"
    path.write_bytes(archive)
    with zipfile.ZipFile(path) as check:  # an honest archive: every member's size and CRC are right
        assert [(i.filename, i.file_size) for i in check.infolist()] == [
            ("x.npy", len(header) + 1_200_000_000),
            ("y.npy", len(y_raw)),
        ]
        with check.open("y.npy") as stream:
            assert np.array_equal(np.lib.format.read_array(stream), labels)
    return path


CHILD = """
import json, resource, sys, time
from pathlib import Path
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError
from ogaudit.data.uploads import unpack_zip

def peak_mb():  # VmHWM: this process's own peak. ru_maxrss would carry over the parent's from before exec
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

kind, source, dest = sys.argv[1:4]
base_mb, started = peak_mb(), time.monotonic()
try:
    if kind == "upload":
        unpack_zip(Path(source).read_bytes(), Path(dest))
    else:
        load_dataset(source)
    error = None
except DataError as caught:
    error = str(caught)
print(json.dumps({"error": error, "peak_mb": peak_mb(), "base_mb": base_mb, "seconds": time.monotonic() - started}))
"""


def run_child(kind: str, source: Path, dest: Path, budget: str = CHILD_BUDGET) -> dict:
    """Load ``source`` in a fresh process under ``budget``: its error, peak RSS in MB (``VmHWM``, read
    inside the child) before and after the load, and the load's seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), limits.MEMORY_BUDGET_ENV: budget}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(source), str(dest)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the bombs


def test_small_zip_of_big_pngs_is_refused_within_seconds_at_low_memory(tmp_path, png_zip):
    assert len(png_zip) < 2_000_000  # 8 images of 6000x6000, 1.1 GiB decoded, in well under 2 MB
    upload = tmp_path / "upload.zip"
    upload.write_bytes(png_zip)
    result = run_child("upload", upload, tmp_path / "unpacked")
    assert result["error"] is not None and result["error"].startswith("Refused the upload: loading it would need")
    assert "8 images, 288 megapixels" in result["error"] and f"{limits.MEMORY_BUDGET_ENV}=512M" in result["error"]
    assert result["peak_mb"] < PEAK_BOUND_MB
    assert not (tmp_path / "unpacked").exists()  # refused before anything was extracted


def test_folder_of_big_pngs_is_refused_before_decoding(tmp_path, big_png):
    for i in range(BOMB_IMAGES):
        folder = tmp_path / "photos" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(big_png)
    result = run_child("load", tmp_path / "photos", tmp_path)
    assert result["error"] is not None and "would need about" in result["error"]
    assert result["peak_mb"] < PEAK_BOUND_MB


def test_the_bound_is_one_a_decoding_loader_breaks_and_the_estimate_covers_it(tmp_path, big_png):
    """The control: with the budget out of the way, the same loader decodes three of these images; its peak
    passes the bound the refusals stay under (so they measure the check, not the machine), and the growth
    stays under the estimate (so the estimate is not optimistic)."""
    for i in range(3):
        folder = tmp_path / "photos" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(big_png)
    result = run_child("load", tmp_path / "photos", tmp_path, budget="64G")
    assert result["error"] is None and result["peak_mb"] > PEAK_BOUND_MB
    headers = [read_image_header(io.BytesIO(big_png))] * 3
    estimate, _ = image_memory_estimate(headers, max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE)
    assert (result["peak_mb"] - result["base_mb"]) * 1024**2 < estimate


def test_small_npz_holding_a_huge_array_is_refused_from_its_headers(tmp_path, npz_bomb):
    assert npz_bomb.stat().st_size < 3_000_000
    result = run_child("load", npz_bomb, tmp_path)
    assert result["error"] is not None and "x (1200, 1000, 1000) uint8" in result["error"]
    assert "1.1 GiB" in result["error"] and result["peak_mb"] < PEAK_BOUND_MB


# ---------------------------------------------------------------- headers, estimates and the budget


def test_headers_are_read_without_decoding(tmp_path, big_png):
    path = tmp_path / "big.png"
    path.write_bytes(big_png)
    assert read_image_header(path) == ImageHeader(BOMB_SIDE, BOMB_SIDE, "RGB")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert read_image_header(tmp_path / "junk.png") is None
    gray = tmp_path / "gray.png"
    Image.new("L", (30, 20)).save(gray)
    header = read_image_header(gray)
    assert header.pixels == 600 and header.decoded_bytes == 600 and header.standard_bytes == 600


def test_estimate_counts_what_the_loader_holds_and_skips_what_it_skips():
    rgb = ImageHeader(1000, 1000, "RGB")
    estimate, detail = image_memory_estimate(
        [rgb] * 10, max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE, workers=2
    )
    kept, buffers, stacked = 10 * 4_000_000, 2 * 8_000_000, 10 * MAX_SIDE * MAX_SIDE * 3
    assert estimate == kept + buffers + stacked
    assert "10 images, 10 megapixels" in detail
    huge = ImageHeader(8000, 6000, "RGB")  # over the per-image cap: skipped unread, so not counted
    assert (
        image_memory_estimate([rgb] * 10 + [huge], max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE, workers=2)[0]
        == estimate
    )


def test_loading_under_the_budget_still_works(tmp_path, monkeypatch, digit_files):
    monkeypatch.setenv(limits.MEMORY_BUDGET_ENV, "64M")
    assert len(load_dataset(digit_files["folder"])) == 300
    assert len(load_dataset(digit_files["npz"])) == 300
    monkeypatch.setenv(limits.MEMORY_BUDGET_ENV, "10K")
    with pytest.raises(DataError, match=r"would need about .* over the memory budget of 10\.0 KiB"):
        load_dataset(digit_files["folder"])
    with pytest.raises(DataError, match=r"x \(300, 8, 8\) uint8"):
        load_dataset(digit_files["npz"])


def test_budget_follows_the_machine_or_the_setting(monkeypatch):
    monkeypatch.setattr(limits, "total_memory", lambda: 16 * 1024**3)
    assert memory_budget({}).bytes == 8 * 1024**3 and "half of the 16.0 GiB" in memory_budget({}).source
    assert memory_budget({limits.MEMORY_BUDGET_ENV: "4G"}).bytes == 4 * 1024**3
    assert memory_budget({limits.MEMORY_BUDGET_ENV: "25%"}).bytes == 4 * 1024**3
    assert parse_size("512M") == parse_size("512MiB") == parse_size("512mb") == 512 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3) and parse_size("1000") == 1000
    for bad in ("lots", "-1G", "0", "150%", "4 X"):
        with pytest.raises(SettingsError, match="OGAUDIT_MEMORY_BUDGET"):
            parse_size(bad)
    assert 0 < limits.total_memory() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_uploads_have_their_own_small_budget_whatever_the_machine(tmp_path, png_zip, monkeypatch):
    from ogaudit.data.uploads import unpack_zip

    monkeypatch.delenv(limits.MEMORY_BUDGET_ENV, raising=False)
    monkeypatch.delenv(limits.UPLOAD_BUDGET_ENV, raising=False)
    assert limits.upload_budget().bytes <= limits.parse_size(limits.DEFAULT_UPLOAD_BUDGET)
    with pytest.raises(DataError, match=r"Refused the upload: .*OGAUDIT_UPLOAD_BUDGET=1G for uploads"):
        unpack_zip(png_zip, tmp_path / "unpacked")  # 1.1 GiB decoded: over 1G even on a large machine
    assert not (tmp_path / "unpacked").exists()
    monkeypatch.setenv(limits.UPLOAD_BUDGET_ENV, "64G")  # never above the machine's own budget
    assert limits.upload_budget().bytes == limits.memory_budget().bytes


# ---------------------------------------------------------------- estimate bypasses (issue 25, finding 4)


def _npz_of(members: dict[str, tuple[bytes, int]]) -> bytes:
    """An .npz (a zip) of ``name -> (raw bytes, count of zero bytes after them)``, each deflated without ever
    holding the zeros in memory."""
    entries = {}
    for name, (prefix, zeros) in members.items():
        data, crc = _raw_deflate_zeros(zeros, prefix)
        entries[name] = (data, crc, len(prefix) + zeros)
    return zip_with_deflated_members(entries)


def _small_xy() -> dict[str, tuple[bytes, int]]:
    out = {}
    for name, array in (("x", np.zeros((40, 8, 8), np.uint8)), ("y", np.arange(40) % 2)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        out[f"{name}.npy"] = (buffer.getvalue(), 0)
    return out


def _npy_v3_header(shape: tuple[int, ...], descr: str) -> bytes:
    """A format-3.0 ``.npy`` header (UTF-8 text, 4-byte length), as numpy writes for UTF-8 field names."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("utf-8")
    pad = -(len(text) + 1 + 12) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x03\x00" + struct.pack("<I", len(text)) + text


def test_a_huge_array_under_an_extra_key_counts_because_the_loader_keeps_every_key(tmp_path):
    members = _small_xy() | {"extra.npy": (_npy_header((1200, 1000, 1000), "|u1"), 1_200_000_000)}
    path = tmp_path / "extra.npz"
    path.write_bytes(_npz_of(members))
    assert path.stat().st_size < 3_500_000
    result = run_child("load", path, tmp_path)
    assert result["error"] is not None and "extra (1200, 1000, 1000) uint8" in result["error"], result
    assert result["peak_mb"] < PEAK_BOUND_MB


def test_a_format_3_npy_header_is_read_not_left_out_of_the_estimate(tmp_path):
    header = _npy_v3_header((1200, 1000, 1000), "|u1")
    with zipfile.ZipFile(io.BytesIO(_npz_of({"x.npy": (header, 0)}))) as archive, archive.open("x.npy") as stream:
        assert np.lib.format.read_magic(stream) == (3, 0)  # numpy's own reader takes it as format 3.0
    members = {"x.npy": (header, 1_200_000_000), "y.npy": _small_xy()["y.npy"]}
    path = tmp_path / "v3.npz"
    path.write_bytes(_npz_of(members))
    result = run_child("load", path, tmp_path)
    assert result["error"] is not None and "x (1200, 1000, 1000) uint8" in result["error"], result
    assert result["peak_mb"] < PEAK_BOUND_MB


def test_an_unreadable_npy_header_is_refused_not_left_out(tmp_path):
    members = _small_xy() | {"z.npy": (b"\x93NUMPY\x09\x00" + b"\x00" * 60, 0)}
    path = tmp_path / "odd.npz"
    path.write_bytes(_npz_of(members))
    with pytest.raises(DataError, match=r"Refused the array 'z'.*header cannot be read"):
        load_dataset(path)


def test_non_npy_members_count_by_their_size_and_small_npz_with_extras_load(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.MEMORY_BUDGET_ENV, "64M")
    path = tmp_path / "ok.npz"
    np.savez(path, x=np.zeros((40, 8, 8), np.uint8), y=np.arange(40) % 2, weights=np.ones(40))
    dataset = load_dataset(path)
    assert "weights" in dataset.origin.arrays
    headers = limits.read_npz_headers(path)
    assert sorted(h.name for h in headers) == ["weights", "x", "y"]
    members = _small_xy() | {"notes.txt": (b"", 200 * 1024**2)}
    (tmp_path / "blob.npz").write_bytes(_npz_of(members))
    with pytest.raises(DataError, match=r"notes\.txt \(209715200,\) uint8"):
        load_dataset(tmp_path / "blob.npz")


@pytest.fixture(scope="module")
def parquet_bomb(tmp_path_factory) -> Path:
    """A ~10 kB Parquet table whose text column is one 3,000-byte text, dictionary-encoded, named by a million
    rows: 3 GB decoded. Its footer says 0.4 MB uncompressed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 1_000_000
    text = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array(["x" * 3000]))
    label = pa.DictionaryArray.from_arrays(pa.array((np.arange(rows) % 2).astype(np.int32)), pa.array(["a", "b"]))
    path = tmp_path_factory.mktemp("parquet-bomb") / "bomb.parquet"
    pq.write_table(
        pa.table({"text": text, "label": label}),
        path,
        compression="zstd",
        write_statistics=False,
        data_page_size=1 << 30,
        store_schema=False,
    )
    assert path.stat().st_size < 20_000
    meta = pq.ParquetFile(path).metadata
    assert meta.row_group(0).total_byte_size * 2 < 1024**3  # the footer's sizes alone pass a 1 GB budget
    return path


def test_a_dictionary_encoded_parquet_bomb_is_refused_by_its_decoded_size(tmp_path, parquet_bomb):
    result = run_child("load", parquet_bomb, tmp_path, budget="1G")
    assert result["error"] is not None and "the text of columns ['text', 'label'] decodes to" in result["error"]
    assert "over the memory budget of 1.0 GiB" in result["error"], result
    assert result["peak_mb"] < PEAK_BOUND_MB and result["seconds"] < 30


def test_parquet_within_the_budget_still_loads_with_dictionary_columns(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv(limits.MEMORY_BUDGET_ENV, "64M")
    texts = [f"text number {i} " * 3 for i in range(200)]
    table = pa.table({"text": texts, "label": ["a", "b"] * 100, "other": list(range(200))})
    pq.write_table(table, tmp_path / "ok.parquet", use_dictionary=True)
    from ogaudit.data.text import load_text_dataset

    dataset = load_text_dataset(str(tmp_path / "ok.parquet"))
    assert len(dataset) == 200


def test_an_npz_member_with_a_negative_dimension_is_refused_before_any_array_is_read(tmp_path):
    """A crafted header (shape (-10**8,)) made the estimate small, then the loader read every other array before
    numpy failed on that member."""
    import io
    import zipfile

    from ogaudit.data.limits import check_npz

    path = tmp_path / "crafted.npz"
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (-(10**8),)})
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in (("x", np.zeros((4, 2), np.float32)), ("y", np.arange(4))):
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
        archive.writestr("extra.npy", member.getvalue())
    with pytest.raises(DataError, match="negative dimension"):
        check_npz(path)
