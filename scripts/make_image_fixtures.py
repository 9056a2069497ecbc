#!/usr/bin/env python3
"""Regenerates the image test fixtures in tests/fixtures/ from public-domain
pictures shipped in scikit-image's wheel (downloaded from PyPI).

- astronaut.jpg: NASA portrait of astronaut Eileen Collins (public domain),
  scikit-image's `astronaut.png`, scaled to 256x256.
- group.jpg: three copies of that portrait at different sizes, one mirrored,
  side by side on a plain background: a photo with several faces.
- portrait_640x480.jpg: the top of the full-size portrait (4:3), scaled to
  640x480: a webcam-like frame with one face, for benchmarks.
- coffee.jpg: scikit-image's `coffee.png` (a cup of coffee, public domain,
  by Rachel Michetti): a real photo with no face.
- astronaut_cmyk.jpg, astronaut_palette.tif: astronaut.jpg's picture as a
  CMYK JPEG (as print workflows write them) and as a 64-colour palette TIFF
  (as JAFFE ships its faces): formats the upload path must read.

Usage: python3 scripts/make_image_fixtures.py  (needs Pillow and network access to PyPI)
"""
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        "scikit-image==0.26.0"], check=True)
        wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "scikit_image-*.whl"))[0])
        astronaut = Image.open(wheel.open("skimage/data/astronaut.png")).convert("RGB")
        coffee = Image.open(wheel.open("skimage/data/coffee.png")).convert("RGB")

    os.makedirs(OUT, exist_ok=True)
    portrait = astronaut.resize((256, 256), Image.LANCZOS)
    portrait.save(os.path.join(OUT, "astronaut.jpg"), quality=85)
    portrait.convert("CMYK").save(os.path.join(OUT, "astronaut_cmyk.jpg"), quality=85)
    portrait.convert("P", palette=Image.ADAPTIVE, colors=64).save(
        os.path.join(OUT, "astronaut_palette.tif"), compression="tiff_lzw")

    group = Image.new("RGB", (800, 300), (235, 230, 222))
    group.paste(astronaut.resize((280, 280), Image.LANCZOS), (10, 10))
    group.paste(ImageOps.mirror(astronaut.resize((250, 250), Image.LANCZOS)), (300, 30))
    group.paste(astronaut.resize((230, 230), Image.LANCZOS), (560, 50))
    group.save(os.path.join(OUT, "group.jpg"), quality=85)

    astronaut.crop((0, 0, 512, 384)).resize((640, 480), Image.LANCZOS).save(
        os.path.join(OUT, "portrait_640x480.jpg"), quality=85)

    coffee.resize((300, 200), Image.LANCZOS).save(os.path.join(OUT, "coffee.jpg"), quality=85)


if __name__ == "__main__":
    main()
