#!/usr/bin/env bash
# Under mpirun, heads or d_ff that parallel.tensor does not divide end the job with exit code 2
# and a line naming the key, before anything is written.
# Usage: tp_bad_layout.sh TRAINER SOURCE_DIR. Exits 1 on failure.
set -u
trainer=$1
golden=$2/tests/golden/train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
check() {  # expected message, then --set overrides
  local expected=$1
  shift
  mpirun --oversubscribe --bind-to none -np 2 "$trainer" train --config "$golden/encdec_pre.yaml" \
    --set data.train="$golden/encdec_pre_data.h5" --set model.init= --set run.dir="$work/run" \
    --set parallel.tensor=2 "$@" > "$work/log" 2>&1
  local rc=$?
  if [[ $rc -ne 2 ]] || ! grep -qF "$expected" "$work/log" || [[ -e $work/run ]]; then
    echo "FAILED ($*): exit code $rc, expected 2 and '$expected' without a run directory"
    cat "$work/log"
    status=1
  else
    echo "ok ($*): exit code 2, '$expected'"
  fi
}
check "model.heads: 1 is not divisible by parallel.tensor 2" --set model.heads=1
check "model.d_ff: 33 is not divisible by parallel.tensor 2" --set model.d_ff=33
exit $status
