#!/bin/bash
# Driver job: a small CPU allocation that holds the dask scheduler and the cohort loop for the
# whole run; the GPU workers are separate jobs submitted by dask-jobqueue (jobqueue.yaml).
#   sbatch deploy/slurm/submit.sh /shared/cohort/manifest.csv /shared/cohort/out 8
# OUT and every slide path must be on a file system that all compute nodes mount at the same
# path (block results and label chunks are written by the workers). Rerunning the same
# command after a timeout or a failure resumes: finished slides are skipped, unfinished ones
# continue from their finished blocks.
#SBATCH --job-name=pathosam-driver
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --output=logs/driver-%j.out
set -euo pipefail
MANIFEST=${1:?manifest}
OUT=${2:?output folder}
JOBS=${3:-4}
# sbatch runs a spooled copy of this file, so locate the recipes from the submit folder
# (submit from the repository root).
HERE="${SLURM_SUBMIT_DIR:-$PWD}/deploy/slurm"
source "$HOME/pathosam-wsi/.venv/bin/activate"   # EDIT
export DASK_CONFIG="$HERE"                       # picks up jobqueue.yaml
mkdir -p logs/dask
exec python "$HERE/cohort_slurm.py" "$MANIFEST" "$OUT" --jobs "$JOBS"
