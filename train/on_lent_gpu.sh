#!/usr/bin/env bash
# The recipes run on a lent GPU machine: 16 cores for augmentation, its own python3 (3.12) with torch, transformers
# and accelerate, and no raw data. Prepare here, then carry packed/<set> and .whl/ along:
#   python train/pack_training_data.py --output-dir packed
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pycocotools==2.0.11
# Score the result back here: train_chromid.py / train_centernet.py --evaluate-only --init OUTPUT_DIR.
#
#   bash train/on_lent_gpu.sh chromid OUTPUT_DIR MINUTES [WORKERS [ARGS...]]    # identity model, from random init
#   bash train/on_lent_gpu.sh centernet OUTPUT_DIR MINUTES [WORKERS [ARGS...]]  # detector, continued from the shipped one
#
# The shipped detector carries config.chromosome_length (65), so its continuation trains at that scale; the packed
# metaphases are shrunk to 640 px, which that scale enlarges up to ~2x for the largest fields.
#
# WORKERS (default 14) augment on the machine's cores; give each of several runs sharing the GPU its share. ARGS go
# to the training script (a geometry such as --hidden-size 192 --layers 8, say).
set -euo pipefail
model=$1 output_dir=$2 minutes=$3 workers=${4:-14}
shift $(( $# < 4 ? $# : 4 ))
# Runs started side by side install the wheels once, in turn.
flock /tmp/site.lock bash -c '[ -d /tmp/site/datasets ] ||
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl'
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# The step count is timed on the machine itself to fill $minutes; snapshots keep the latest weights should the
# machine's time limit cut the run short. Two threads suffice for the process that drives the GPU.
case $model in
  chromid)
    python3 train/train_chromid.py --train-crops packed/chromid-train --output-dir "$output_dir" \
      --batch-size 256 --learning-rate 1.5e-3 --minutes "$minutes" --workers "$workers" --threads 2 --snapshot-minutes 1 "$@" ;;
  centernet)
    python3 train/train_centernet.py --train-metaphases packed/centernet-train --init checkpoints/centernet-chromosomes \
      --output-dir "$output_dir" --batch-size 32 --learning-rate 1e-3 --minutes "$minutes" --workers "$workers" \
      --threads 2 --snapshot-minutes 1 "$@" ;;
  *)
    echo "unknown model '$model': expected chromid or centernet" >&2; exit 2 ;;
esac
