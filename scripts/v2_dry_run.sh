#!/usr/bin/env bash
# A dry run of the v2 model pipeline (docs/training.rst, "The v2 models") on the shards
# committed so far: emulator, its error, the held-out sets, a short training, both
# calibrations and the validation page, each step timed. It checks that every step runs on
# the grid as it is, and measures each step's time and memory, long before the grid is done.
#
#     bash scripts/v2_dry_run.sh hr|lr [STEPS] > work/v2_dry_run_hr.log 2>&1
#
# STEPS (default 200) replaces the training's 12,000 steps in a copy of
# configs/4most-<setup>-lte-v2.toml (work/v2-dry-run-<setup>.toml); everything is written under
# work/ (the emulator to work/emulators/, as the real run does, the models and the validation
# page to work/dry-run/; CONFIG_ONLY=1 stops after writing the configuration). A dry run's
# model is not a result: its numbers only show that the pipeline works. Each step prints
# "=== <s> s wall, <s> s user, <KB> KB maxrss".
set -euo pipefail
SETUP=${1:?usage: bash scripts/v2_dry_run.sh hr|lr [STEPS]}
STEPS=${2:-200}
case "$SETUP" in hr|lr) ;; *) echo "setup must be hr or lr, got $SETUP"; exit 2;; esac
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || { echo "STEPS must be a positive integer, got $STEPS"; exit 2; }
cd "$(git rev-parse --show-toplevel)"
S=grid/4most-lte-v2
OUT=work/dry-run
# the copy sits in work/, one level below the root like configs/: its relative paths still hold
CONFIG=work/v2-dry-run-$SETUP.toml
mkdir -p "$OUT"
rm -f "$OUT/$SETUP.ckpt.safetensors"  # a dry run starts afresh (the grid may have grown)
EVERY=$(( STEPS < 500 ? (STEPS + 1) / 2 : 500 ))
sed -e "s#^output = .*#output = \"../work/dry-run/models/4most-$SETUP-lte-v2\"#" \
    -e "s#^steps = .*#steps = $STEPS#" -e "s#^eval_every = .*#eval_every = $EVERY#" \
    -e "s#^warmup_steps = .*#warmup_steps = $(( STEPS < 500 ? STEPS / 4 : 500 ))#" \
    -e "s#^validation_size = .*#validation_size = 128#" \
    "configs/4most-$SETUP-lte-v2.toml" > "$CONFIG"
[ -z "${CONFIG_ONLY:-}" ] || { echo "wrote $CONFIG"; exit 0; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
step() { echo "=== $(date -u +%T) $*"; /usr/bin/time -f "=== %e s wall, %U s user, %M KB maxrss" "$@"; }
M=$OUT/models/4most-$SETUP-lte-v2
step specutils-cinn emulator prepare --shards $S --setup "$SETUP" -o "work/emu_v2_$SETUP.npz"
step specutils-cinn emulator train "configs/emulator-4most-$SETUP-v2.toml" --threads 1
step specutils-cinn emulator error "configs/emulator-4most-$SETUP-v2.toml" -o "work/emu_v2_${SETUP}_error.npz"
step specutils-cinn emulator holdout --shards $S --tag v2 --setups "$SETUP" --vmacro-range 1 8
step specutils-cinn emulator holdout --shards $S --tag v2 --setups "$SETUP" --vmacro-range 1 8 \
    --stars emulator-validation
step python scripts/continuum_check.py "configs/4most-$SETUP-lte-v2.toml" --spectra 1024
step specutils-cinn train "$CONFIG" --checkpoint "$OUT/$SETUP.ckpt.safetensors"
step specutils-cinn calibrate fit-flag "$M" "work/emulators/4most-$SETUP-emulator-v2" --grid $S \
    --version 2.0.0 -o "$M-fit" --json "$OUT/fit_flag_$SETUP.json"
step specutils-cinn calibrate posterior "$M-fit" --grid $S --version 2.0.0 -o "$M-cal" \
    --json "$OUT/posterior_cal_$SETUP.json"
step python scripts/validation_report.py --model "$M-cal" --grid $S --held-out holdout \
    --vsini-per-star 2 --snr 50 250 --output "$OUT/validation_$SETUP.rst" \
    --figures "$OUT/figures_$SETUP" --threads 1
echo "=== $(date -u +%T) dry run of the v2 $SETUP pipeline done"
