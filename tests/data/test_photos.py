"""Phone photos (issue 25, finding 7): 48-200 MP JPEGs are decoded at reduced scale (Pillow's draft mode keeps
memory small) and HEIC/HEIF is read, under the same memory checks. Memory is measured in a child process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ogaudit.data import limits
from ogaudit.data.imagefiles import MAX_IMAGE_PIXELS, MAX_SIDE, read_image, read_image_as_shown
from ogaudit.data.limits import decode_reduced, header_of, image_memory_estimate, open_image, read_image_header
from ogaudit.data.load import load_dataset

REPO = Path(__file__).resolve().parents[2]
PHONE_48MP = (8064, 6048)
PHONE_200MP = (16320, 12240)


def _small(folder: Path, count: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (32, 24), (value, 30, 30)).save(folder / f"small-{i}.jpg")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """Two classes; ``a`` holds a 48 MP RGB phone JPEG and a 200 MP grey one (200 MB decoded whole)."""
    root = tmp_path_factory.mktemp("photos")
    _small(root / "a", 3, 200)
    _small(root / "b", 4, 40)
    Image.new("RGB", PHONE_48MP, (180, 60, 20)).save(root / "a" / "phone48.jpg", quality=60)
    Image.new("L", PHONE_200MP, 128).save(root / "a" / "phone200.jpg", quality=50)
    return root


CHILD = """
import json, sys
from pathlib import Path
from ogaudit.data.load import load_dataset
import ogaudit.data.images, pandas, PIL.Image  # imports before the baseline: the growth is the decoding

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

base = peak_mb()
dataset = load_dataset(sys.argv[1])
print(json.dumps({"n": len(dataset), "skipped": [s.reason for s in dataset.skipped], "shape": list(dataset.x.shape),
                  "base_mb": base, "peak_mb": peak_mb()}))
"""


def test_48_and_200_megapixel_phone_jpegs_load_at_reduced_scale_with_little_memory(photo_folder):
    headers = {name: read_image_header(photo_folder / "a" / name) for name in ("phone48.jpg", "phone200.jpg")}
    assert (headers["phone48.jpg"].width, headers["phone48.jpg"].height) == (4032, 3024)  # 1/2 scale
    assert (headers["phone200.jpg"].width, headers["phone200.jpg"].height) == (4080, 3060)  # 1/4 scale
    env = {**os.environ, "PYTHONPATH": str(REPO), limits.MEMORY_BUDGET_ENV: "512M"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(photo_folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 9 and result["skipped"] == [], result  # no "too large (limit 40,000,000 pixels)"
    # Decoded whole and brought to RGB, the 48 MP photo alone grows a process by about 560 MB (measured: 141 MB
    # reduced), and the 200 MP one is 200 MB as grey pixels before any copy; both together here stay well under.
    assert result["peak_mb"] - result["base_mb"] < 250, result
    files = sorted(photo_folder.rglob("*.jpg"))
    estimate, _ = image_memory_estimate(
        [read_image_header(f) for f in files], max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE
    )
    assert (result["peak_mb"] - result["base_mb"]) * 1024**2 < estimate  # the estimate is not optimistic


def test_reduced_photos_are_the_picture_and_thumbnails_read_them_too(photo_folder):
    image, reason = read_image(photo_folder / "a" / "phone48.jpg")
    assert reason is None and image.size == (4032, 3024) and image.getpixel((100, 100))[0] in range(170, 191)
    assert read_image_as_shown(photo_folder / "a" / "phone200.jpg").size == (4080, 3060)


def test_a_jpeg_too_large_even_at_one_eighth_is_skipped_by_name(tmp_path):
    """Past 64 x 40 MP a JPEG is refused from its header (Pillow's own bomb guard is kept for other formats)."""
    from PIL import JpegImagePlugin  # noqa: F401  (the plugin open_image uses)

    small = io.BytesIO()
    Image.new("L", (64, 64), 9).save(small, format="JPEG")
    data = bytearray(small.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")  # claims 3.6 gigapixels
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    image, reason = read_image(path)
    assert image is None and "too large" in reason
    assert read_image_header(path) is None


def test_heic_photos_are_read_and_large_ones_reduced_under_the_memory_checks(tmp_path):
    pytest.importorskip("pillow_heif")
    assert limits.HEIF_SUPPORTED
    folder = tmp_path / "heic"
    for label, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (64, 48), colour).save(folder / label / f"{i}.heic", format="HEIF")
    dataset = load_dataset(folder)
    assert len(dataset) == 6 and not dataset.skipped
    assert dataset.image(0) is not None  # thumbnails read HEIC too
    big = tmp_path / "big.heic"
    Image.new("RGB", (2048, 1536), (10, 200, 10)).save(big, format="HEIF")
    with open_image(big) as image:  # a "large" HEIC against a 1 MP cap: decoded whole, then halved
        header = header_of(image, max_pixels=1_000_000)
        assert (header.width, header.height, header.decode_pixels) == (1024, 768, 2048 * 1536)
        assert header.decoded_bytes == 2048 * 1536 * 4  # the full-size decode is what the estimate counts
        assert decode_reduced(image, max_pixels=1_000_000).size == (1024, 768)


def test_odd_sizes_are_reduced_by_the_decoder_not_decoded_whole():
    """Pillow's draft picks the largest scale whose size is at least the one asked for: asking for the rounded-up
    size of an odd-sized photo would get the whole photo."""
    buffer = io.BytesIO()
    Image.new("L", (8065, 6047), 7).save(buffer, format="JPEG")
    buffer.seek(0)
    with open_image(buffer) as image:
        header = header_of(image)
        assert (header.width, header.height) == (4033, 3024)
        assert decode_reduced(image).size == (4033, 3024)
