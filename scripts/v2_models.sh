#!/usr/bin/env bash
# The v2 model pipeline of docs/training.rst ("The v2 models"), resumable step by step: the
# emulator (prepare, train, error), the held-out and selection sets, the continuum check, the
# cINN training (its checkpoint continues a killed run), the fit flag, the posterior
# calibration and the validation page.
#
#     nohup bash scripts/v2_models.sh hr|lr > work/v2_models_hr.log 2>&1 &
#
# Each finished step leaves work/v2-models/<setup>/<step>.done (with the step's time and peak
# memory); a rerun skips finished steps, so the same command continues after a kill. Delete the
# folder (or FROM=<step>, which deletes the markers of that step and all after it) to redo;
# UNTIL=<step> stops after that step (e.g. to pick a new model's line windows from its emulator).
# Steps: prepare emulator error holdout selection continuum train fit_flag posterior mismatch
# validation (mismatch: the model-mismatch term fitted on the observed Sun, and the parameters
# the posterior calibration found unconstrained declared so; docs/real_stars.rst).
# The run reads the grid's shards as they are when "prepare" runs and records their count; the
# later steps that read shards warn if the count changed (stop scripts/grid_background.sh
# first for a frozen grid). DRY_RUN=STEPS runs the same pipeline on a copy of the configuration
# with STEPS training steps and writes the models and the page under work/dry-run/ instead
# (scripts/v2_dry_run.sh): a check that every step runs, not a model.
# Every step prints "=== <s> s wall, <s> s user, <KB> KB maxrss".
set -euo pipefail
SETUP=${1:?usage: bash scripts/v2_models.sh hr|lr}
case "$SETUP" in hr|lr) ;; *) echo "setup must be hr or lr, got $SETUP"; exit 2;; esac
DRY=${DRY_RUN:-}
[ -z "$DRY" ] || [[ "$DRY" =~ ^[1-9][0-9]*$ ]] \
    || { echo "DRY_RUN must be a positive integer (training steps), got $DRY"; exit 2; }
STEPS_ALL="prepare emulator error holdout selection continuum train fit_flag posterior mismatch validation"
if [ -n "${FROM:-}" ] && [[ " $STEPS_ALL " != *" $FROM "* ]]; then
    echo "FROM must be one of: $STEPS_ALL; got $FROM"; exit 2
fi
if [ -n "${UNTIL:-}" ] && [[ " $STEPS_ALL " != *" $UNTIL "* ]]; then
    echo "UNTIL must be one of: $STEPS_ALL; got $UNTIL"; exit 2
fi
cd "$(git rev-parse --show-toplevel)"
# GRID_DIR: another folder of shards (e.g. links to a subset, to rerun a model's calibration on
# the stars it was made with while the grid grows)
S=${GRID_DIR:-grid/4most-lte-v2}
EMU_CONFIG=configs/emulator-4most-$SETUP-v2.toml
EMU=work/emulators/4most-$SETUP-emulator-v2
if [ -n "$DRY" ]; then
    OUT=work/dry-run
    MARKS=work/dry-run/marks-$SETUP
    # the copy sits in work/, one level below the root like configs/: its paths still hold
    CONFIG=work/v2-dry-run-$SETUP.toml
    M=$OUT/models/4most-$SETUP-lte-v2
    PAGE=$OUT/validation_$SETUP.rst FIGURES=$OUT/figures_$SETUP SNR="50 250"
    JSON_FIT=$OUT/fit_flag_$SETUP.json JSON_CAL=$OUT/posterior_cal_$SETUP.json
    MISMATCH_RST=$OUT/mismatch_$SETUP.rst JSON_MM=$OUT/mismatch_$SETUP.json
    CKPT=$OUT/$SETUP.ckpt.safetensors
    FLOOR_RST=""
    rm -rf "$MARKS" "$CKPT"  # a dry run starts afresh (the grid may have grown)
else
    OUT=work
    MARKS=work/v2-models/$SETUP
    CONFIG=configs/4most-$SETUP-lte-v2.toml
    M=work/models/4most-$SETUP-lte-v2
    PAGE=docs/validation/4most-$SETUP-lte-v2.rst FIGURES=docs/validation/4most-$SETUP-lte-v2
    SNR="10 25 50 100 250"
    JSON_FIT=work/fit_flag_${SETUP}_v2.json JSON_CAL=work/posterior_cal_${SETUP}_v2.json
    MISMATCH_RST=docs/real_stars/mismatch_${SETUP}_v2.rst JSON_MM=work/mismatch_${SETUP}_v2.json
    CKPT=work/4most-$SETUP-lte-v2.ckpt.safetensors
    FLOOR_RST=docs/training/continuum_floor_$SETUP.rst
fi
mkdir -p "$MARKS" "$OUT"
if [ -n "${FROM:-}" ]; then
    drop=0
    for s in $STEPS_ALL; do [ "$s" = "$FROM" ] && drop=1; [ $drop = 1 ] && rm -f "$MARKS/$s.done"; done
fi
if [ -n "$DRY" ]; then
    EVERY=$(( DRY < 500 ? (DRY + 1) / 2 : 500 ))
    sed -e "s#^output = .*#output = \"../work/dry-run/models/4most-$SETUP-lte-v2\"#" \
        -e "s#^steps = .*#steps = $DRY#" -e "s#^eval_every = .*#eval_every = $EVERY#" \
        -e "s#^warmup_steps = .*#warmup_steps = $(( DRY < 500 ? DRY / 4 : 500 ))#" \
        -e "s#^validation_size = .*#validation_size = 128#" \
        "configs/4most-$SETUP-lte-v2.toml" > "$CONFIG"
    [ -z "${CONFIG_ONLY:-}" ] || { echo "wrote $CONFIG"; exit 0; }
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# the model version the calibration steps write (the configuration's [model] version)
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$CONFIG" 2>/dev/null | head -n 1 || true)
# Teff (K) at which the emulator's error is measured (docs/emulator.rst, "Error by Teff")
TEFF_NODES="4000 4500 5000 6000 7000"
shards() { ls "$S"/shard_*.h5 2>/dev/null | wc -l; }
# step NAME COMMAND...: run unless NAME is done; the marker holds the timing line
step() {
    local name=$1; shift
    if [ -f "$MARKS/$name.done" ]; then
        echo "=== $name: done before ($(cat "$MARKS/$name.done"))"
    else
        if [ -f "$MARKS/shards" ] && [ "$(shards)" != "$(cat "$MARKS/shards")" ]; then
            echo "=== note: $S has $(shards) shards, $(cat "$MARKS/shards") when 'prepare' ran"
        fi
        echo "=== $(date -u +%T) $name: $*"
        /usr/bin/time -o "$MARKS/$name.time" -f "%e s wall, %U s user, %M KB maxrss" "$@"
        echo "=== $(cat "$MARKS/$name.time")"
        mv "$MARKS/$name.time" "$MARKS/$name.done"
    fi
    if [ "$name" = "${UNTIL:-}" ]; then echo "=== stopped after $name (UNTIL=$UNTIL)"; exit 0; fi
}
[ -f "$MARKS/prepare.done" ] || shards > "$MARKS/shards"
step prepare specutils-cinn emulator prepare --shards $S --setup "$SETUP" -o "work/emu_v2_$SETUP.npz"
step emulator specutils-cinn emulator train "$EMU_CONFIG" --threads 1
# the emulator's error per pixel at Teff nodes (its cool stars are several times worse)
step error specutils-cinn emulator error "$EMU_CONFIG" -o "work/emu_v2_${SETUP}_error.npz" \
    --teff-nodes $TEFF_NODES
step holdout specutils-cinn emulator holdout --shards $S --tag v2 --setups "$SETUP" --vmacro-range 1 8
step selection specutils-cinn emulator holdout --shards $S --tag v2 --setups "$SETUP" \
    --vmacro-range 1 8 --stars emulator-validation
step continuum python scripts/continuum_check.py "configs/4most-$SETUP-lte-v2.toml" --spectra 1024 \
    ${FLOOR_RST:+--rst "$FLOOR_RST"}
step train specutils-cinn train "$CONFIG" --checkpoint "$CKPT"
# the chi-square's noise: the mean reported variance over 101 pixels (5 A on HR, 25 A on LR),
# not each pixel's own, which photon noise computed from the noisy flux makes unreliable at low
# S/N (docs/quality.rst, "The fit check at low S/N"); the emulator's error floor per Teff node,
# interpolated in each spectrum's Teff, as the training's emulator error (a single floor for all
# Teff underrates the cool stars' error and flags them at high S/N); the emulated spectrum
# divided by the model's own pseudo-continuum, as the input is (a cool star's blue arm is far
# from a cubic times its true continuum: docs/output.rst, "The fit check compares like with like")
step fit_flag specutils-cinn calibrate fit-flag "$M" "$EMU" --grid $S --version "$VERSION" -o "$M-fit" \
    --json "$JSON_FIT" --noise-window 101 --floor-teff-nodes $TEFF_NODES --renormalize
# a scale per S/N placed at its median posterior width, from 0.5: the v2 HR intervals cover
# more than their levels at high S/N and about right at low S/N
step posterior specutils-cinn calibrate posterior "$M-fit" --grid $S --version "$VERSION" -o "$M-cal" \
    --json "$JSON_CAL" --min-scale 0.5 --by-width
step mismatch python scripts/calibrate_mismatch.py --model "$M-cal" --grid $S \
    --output "$MISMATCH_RST" --json "$JSON_MM" --write "$M-mm" --version "$VERSION"
step validation python scripts/validation_report.py --model "$M-mm" --grid $S --held-out holdout \
    --vsini-per-star 2 --snr $SNR --goals "$SETUP" --output "$PAGE" --figures "$FIGURES" \
    --threads 1
echo "=== $(date -u +%T) the v2 $SETUP pipeline is done${DRY:+ (dry run, $DRY training steps)}: $M-mm"
