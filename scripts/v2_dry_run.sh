#!/usr/bin/env bash
# A dry run of the v2 model pipeline (docs/training.rst, "The v2 models") on the shards
# committed so far: scripts/v2_models.sh with a short training on a copy of the configuration
# (work/v2-dry-run-<setup>.toml), the models and the validation page under work/dry-run/.
# It checks that every step runs on the grid as it is, and measures each step's time and
# memory, long before the grid is done. A dry run's model is not a result.
#
#     bash scripts/v2_dry_run.sh hr|lr [STEPS] > work/v2_dry_run_hr.log 2>&1
#
# STEPS (default 200) replaces the training's 12,000 steps; CONFIG_ONLY=1 stops after writing
# the configuration. The emulator steps write to work/ as the real run does.
set -euo pipefail
SETUP=${1:?usage: bash scripts/v2_dry_run.sh hr|lr [STEPS]}
STEPS=${2:-200}
case "$SETUP" in hr|lr) ;; *) echo "setup must be hr or lr, got $SETUP"; exit 2;; esac
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || { echo "STEPS must be a positive integer, got $STEPS"; exit 2; }
DRY_RUN=$STEPS exec bash "$(dirname "$0")/v2_models.sh" "$SETUP"
