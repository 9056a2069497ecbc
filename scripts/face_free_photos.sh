#!/bin/bash
# Gathers the face-free photos the face verifier trains on and the ones it is
# measured on (symlinks; nothing is copied into the repository).
#
#   scripts/face_free_photos.sh OUT
#
# OUT/train: opencv-doc's sample pictures without people (Debian package
#            opencv-doc: apt-get install opencv-doc).
# OUT/test:  scikit-image's data pictures without people, never trained on
#            (pip install scikit-image, in any Python environment; set
#            SKIMAGE_DATA to its skimage/data folder if python3 cannot import it).
# OUT/faces: the scikit-image pictures that do hold a face (astronaut, camera).
set -euo pipefail
out=${1:?usage: $0 OUT}
ocv=/usr/share/doc/opencv-doc/examples/data
[ -d "$ocv" ] || { echo "missing $ocv: apt-get install opencv-doc" >&2; exit 1; }
sk=${SKIMAGE_DATA:-$(python3 -c 'import os, skimage.data; print(os.path.dirname(skimage.data.__file__))' 2>/dev/null || true)}
[ -n "$sk" ] && [ -d "$sk" ] || { echo "scikit-image's data folder not found: pip install scikit-image, or set SKIMAGE_DATA" >&2; exit 1; }
mkdir -p "$out/train" "$out/test" "$out/faces"
# People appear in basketball*, left*/right* (behind the chessboard), messi5;
# Blender_Suzanne and ml are drawn faces: left out of both sides.
for f in HappyFish.jpg LinuxLogo.jpg WindowsLogo.jpg aero1.jpg aero3.jpg aloeGT.png aloeL.jpg aloeR.jpg \
         apple.jpg baboon.jpg blox.jpg board.jpg box.png box_in_scene.png building.jpg butterfly.jpg cards.png \
         chessboard.png chicky_512.png detect_blob.png digits.png ela_modified.jpg ela_original.jpg ellipses.jpg \
         fruits.jpg gradient.png graf1.png graf3.png home.jpg imageTextN.png imageTextR.png leuvenA.jpg leuvenB.jpg \
         licenseplate_motion.jpg mask.png notes.png opencv-logo-white.png opencv-logo.png orange.jpg pca_test1.jpg \
         pic1.png pic2.png pic3.png pic4.png pic5.png pic6.png rubberwhale1.png rubberwhale2.png smarties.png \
         squirrel_cls.jpg starry_night.jpg stuff.jpg sudoku.png templ.png text_defocus.jpg text_motion.jpg tmpl.png; do
  ln -sf "$ocv/$f" "$out/train/$f"
done
for f in brick.png cell.png chelsea.png chessboard_GRAY.png clock_motion.png coffee.png coins.png color.png \
         grass.png gravel.png horse.png hubble_deep_field.jpg ihc.png logo.png microaneurysms.png moon.png \
         motorcycle_left.png motorcycle_right.png page.png phantom.png retina.jpg rocket.jpg text.png; do
  ln -sf "$sk/$f" "$out/test/$f"
done
for f in astronaut.png camera.png; do ln -sf "$sk/$f" "$out/faces/$f"; done
echo "$(ls "$out/train" | wc -l) training, $(ls "$out/test" | wc -l) test face-free photos, $(ls "$out/faces" | wc -l) with faces, in $out"
