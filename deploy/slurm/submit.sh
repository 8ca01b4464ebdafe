#!/bin/bash
# Driver job: a small CPU allocation that holds the dask scheduler and the cohort loop for the
# whole run; `--cluster slurm` submits the worker jobs (one GPU each) from inside it.
#   sbatch deploy/slurm/submit.sh /shared/cohort/manifest.csv -o /shared/cohort/out \
#       --jobs 8 --gpus-per-job 1 --model vit_b_histopathology ...     # any option of `run`
# Submit from the repository root (sbatch runs a spooled copy of this file). OUT and every slide
# path must be on a file system that all compute nodes mount at the same path. Rerunning the
# same command after a timeout or a failure resumes: finished slides are skipped, unfinished
# ones continue from their finished blocks.
# The log goes to the submit folder: SLURM opens it before the script runs, so it must not name
# a folder that may not exist yet.
#SBATCH --job-name=pathosam-driver
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=24:00:00
#SBATCH --output=pathosam-driver-%j.out
set -euo pipefail
HERE="${SLURM_SUBMIT_DIR:-$PWD}/deploy/slurm"
source "$HOME/pathosam-wsi/.venv/bin/activate"   # EDIT: environment with pathosam-wsi[cuda,slurm]
exec pathosam-wsi run "$@" --cluster slurm --jobqueue-config "$HERE/jobqueue.yaml"
