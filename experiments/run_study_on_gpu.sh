#!/usr/bin/env bash
# Every experiment of the study on one accelerator: each is trained, evaluated on the fixed test
# split, and put in one RESULTS-ready markdown table, OUT/results.md, headed by the machine and date.
#
#   experiments/run_study_on_gpu.sh [DATA_ROOT] [OUT]
#
# DATA_ROOT: the Kaggle download (default ../shared/data/best_artworks); OUT: the workdirs (default
# checkpoints/study_gpu). Rerunning the script resumes each run from its latest checkpoint.
#
# ImageNet rows start from ported weights in IMAGENET_DIR (default checkpoints/imagenet):
# EfficientNet-Lite0 is ported from its pip package when missing; the ResNet50 ImageNet rows run
# only when IMAGENET_DIR/resnet50_torchvision exists (python -m artjax.port torchvision --weights
# resnet50-11ad3fa6.pth --output ...), and are listed as skipped otherwise.
#
# The style rows (issue 34): experiments/style.py at every trainable share and backbone optimizer on
# the six's fixed test split, and leave-artists-out CVs of `all` (cv_style_*), then the unfreezing
# curve OUT/depth_curve.png (python -m artjax.figures depth).
#
# Environment: PYTHON (default python), ONLY="cnn resnet50_scratch ..." (a subset, by row name),
# OVERRIDES="--config.a=b ..." (added to every run: the suite runs this script on CPU at tiny
# sizes), BENCH=0 (skip `artjax.bench accelerator`), WIKIART=DIR (also the WikiArt rows, issue 35).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/best_artworks}
OUT=${2:-checkpoints/study_gpu}
PYTHON=${PYTHON:-python}
IMAGENET_DIR=${IMAGENET_DIR:-checkpoints/imagenet}
read -r -a overrides <<< "${OVERRIDES:-}"

# row name | experiment config | its own overrides
EXPERIMENTS=(
  "cnn|experiments/cnn.py|"
  "cnn_weighted|experiments/cnn.py:weighted|"
  "resnet50_scratch|experiments/resnet50_scratch.py:gpu|"
  "resnet50_scratch_weighted|experiments/resnet50_scratch.py:gpu,weighted|"
  "resnet50_scratch_keras_weighted|experiments/resnet50_scratch.py:gpu,weighted|--config.normalize_class_weights=False"
  "resnet50_imagenet|experiments/resnet50_imagenet.py|--config.init.checkpoint=$IMAGENET_DIR/resnet50_torchvision"
  "resnet50_finetune|experiments/resnet50_finetune.py|--config.init.checkpoint=$IMAGENET_DIR/resnet50_torchvision"
  "lite0_imagenet|experiments/efficientnet_lite0_imagenet.py|--config.init.checkpoint=$IMAGENET_DIR/efficientnet_lite0"
  "lite0_finetune|experiments/efficientnet_lite0_finetune.py|--config.init.checkpoint=$IMAGENET_DIR/efficientnet_lite0"
)
# Issue 34, the unfreezing curve on the six's fixed test split (seen painters): every trainable
# share (transfer.DEPTHS) with every backbone optimizer (experiments/style.py), 12 epochs.
LITE0="--config.init.checkpoint=$IMAGENET_DIR/efficientnet_lite0"
for depth in head top_conv last20 last50 whole; do
  for opt in adam sgd rmsprop; do
    EXPERIMENTS+=("style_six_${depth}_${opt}|experiments/style.py:six,${depth},${opt}|$LITE0")
  done
done
EXPERIMENTS+=(
  "style_six_last20_adam_bn_trainable|experiments/style.py:six,last20,adam,bn_trainable|$LITE0"
  "style_six_last20_adam_photos|experiments/style.py:six,last20,adam,photos|$LITE0"
)
# ... and on unseen painters: leave-artists-out CVs of `all` (5 folds, the same folds in every
# row) at every depth with Adam, then the era as a shared target (without it, at three times its
# weight) and multi-genre artists as partial labels at the partial depths. Each writes
# OUT/<name>/cv_report.md; rerunning resumes.
CVS=()
for depth in head top_conv last20 last50 whole; do
  CVS+=("cv_style_all_${depth}_adam|experiments/style.py:all,${depth},adam|$LITE0")
done
for depth in last20 last50; do
  CVS+=(
    "cv_style_all_${depth}_adam_noera|experiments/style.py:all,${depth},adam,noera|$LITE0"
    "cv_style_all_${depth}_adam_era3|experiments/style.py:all,${depth},adam,era3|$LITE0"
    "cv_style_all_${depth}_adam_partial|experiments/style.py:all,${depth},adam,partial|$LITE0"
  )
done

# Issue 35, WikiArt (WIKIART=DIR: any of its three distributions, README "WikiArt"): each recipe
# of experiments/wikiart.py on the release's own split and on the artist-disjoint one, and a
# leave-artists-out CV of the frozen recipe. Not run without WIKIART.
if [ -n "${WIKIART:-}" ]; then
  ON_WIKIART="--config.data.root=$WIKIART"
  for split in release artist; do
    EXPERIMENTS+=(
      "wikiart_lite0_${split}|experiments/wikiart.py:lite0,${split}|$LITE0 $ON_WIKIART"
      "wikiart_lite0_finetune_${split}|experiments/wikiart.py:lite0_finetune,${split}|$LITE0 $ON_WIKIART"
      "wikiart_resnet50_${split}|experiments/wikiart.py:resnet50,${split}|--config.init.checkpoint=$IMAGENET_DIR/resnet50_torchvision $ON_WIKIART"
    )
  done
  CVS+=("cv_wikiart_lite0|experiments/wikiart.py:lite0|$LITE0 $ON_WIKIART")
fi

selected() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

mkdir -p "$OUT"
ran=() skipped=()
for row in "${EXPERIMENTS[@]}"; do
  IFS='|' read -r name config own <<< "$row"
  selected "$name" || continue
  case $name in
    resnet50_imagenet|resnet50_finetune|wikiart_resnet50_*)
      if [ ! -d "$IMAGENET_DIR/resnet50_torchvision" ]; then
        skipped+=("$name (no $IMAGENET_DIR/resnet50_torchvision)")
        continue
      fi ;;
    lite0_*|style_*|wikiart_lite0_*)
      [ -d "$IMAGENET_DIR/efficientnet_lite0" ] ||
        "$PYTHON" -m artjax.port efficientnet_lite --output "$IMAGENET_DIR/efficientnet_lite0" ;;
  esac
  echo "=== $name: $config $own ($(date -u +%FT%TZ))"
  # shellcheck disable=SC2086  # $own is a list of flags
  "$PYTHON" -m artjax.train --config "$config" --workdir "$OUT/$name" \
    --config.data.root="$DATA" $own "${overrides[@]}"
  "$PYTHON" -m artjax.evaluate --workdir "$OUT/$name" --split test
  ran+=("$OUT/$name")
done

cv_ran=()
for row in "${CVS[@]}"; do
  IFS='|' read -r name config own <<< "$row"
  selected "$name" || continue
  [ -d "$IMAGENET_DIR/efficientnet_lite0" ] ||
    "$PYTHON" -m artjax.port efficientnet_lite --output "$IMAGENET_DIR/efficientnet_lite0"
  echo "=== $name: $config $own ($(date -u +%FT%TZ))"
  # shellcheck disable=SC2086  # $own is a list of flags
  "$PYTHON" -m artjax.cv --config "$config" --workdir "$OUT/$name" --folds 5 --by artist \
    --config.data.root="$DATA" $own "${overrides[@]}"
  cv_ran+=("$OUT/$name")
done

[ "${BENCH:-1}" = 0 ] || "$PYTHON" -m artjax.bench accelerator | tee "$OUT/bench_accelerator.txt"

{
  echo "Machine: $("$PYTHON" -c 'import jax; d = jax.devices()[0]; print(f"{jax.device_count()} x {d.device_kind} ({d.platform})")')."
  echo "Date: $(date -u +%F). Command: experiments/run_study_on_gpu.sh $DATA $OUT${OVERRIDES:+ (OVERRIDES=$OVERRIDES)}"
  echo
  if [ ${#ran[@]} -gt 0 ]; then
    "$PYTHON" -m artjax.evaluate --table "$(IFS=,; echo "${ran[*]}")" --split test
  fi
  for s in "${skipped[@]}"; do echo "- not run: $s"; done
  for cv in "${cv_ran[@]}"; do echo; echo "### $cv"; echo; cat "$cv/cv_report.md"; done
} > "$OUT/results.md"
# the unfreezing curve of the style rows that ran: seen (six, a line per optimizer) against unseen
# (CV of all, Adam)
seen=() unseen=()
for d in "${ran[@]}"; do [[ $d =~ /style_six_[a-z0-9_]+_(adam|sgd|rmsprop)$ ]] && seen+=("$d"); done
for d in "${cv_ran[@]}"; do [[ $d == */cv_style_all_*_adam ]] && unseen+=("$d"); done
if [ ${#seen[@]} -gt 0 ] || [ ${#unseen[@]} -gt 0 ]; then
  "$PYTHON" -m artjax.figures depth --runs "$(IFS=,; echo "${seen[*]}")" \
    --cvs "$(IFS=,; echo "${unseen[*]}")" --output "$OUT/depth_curve.png"
fi
cat "$OUT/results.md"
