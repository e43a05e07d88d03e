#!/usr/bin/env bash
# Regenerate the shipped thresholds (src/lookalike/quality/calibration_defaults.json) from the DEV set for
# every model with real weights. Run from the repo root after changing the default pooling or
# preprocessing: thresholds hold for the embedding method they were computed with.
set -euo pipefail
SHARED=${LOOKALIKE_SHARED_DIR:-../shared}
export LOOKALIKE_WEIGHTS_DIRS=${LOOKALIKE_WEIGHTS_DIRS:-$SHARED/weights}
export LOOKALIKE_ALLOW_HUB_DOWNLOAD=false
OUT=${1:-src/lookalike/quality/calibration_defaults.json}
for model in tf_efficientnet_lite0 tf_efficientnet_lite1 tf_efficientnet_lite2 mobilenetv2_100 sscd_distilled sscd; do
  lookalike calibrate "$SHARED/data/pairs.csv" --model "$model" --out "$OUT"
done
