#!/usr/bin/env bash
# A rank that dies by SIGKILL must end the whole job, with a nonzero exit, within 60 s.
# Usage: rank_failure.sh TRAINER SOURCE_DIR. Prints the measured time; exits 1 on failure.
set -u
trainer=$1
source_dir=$2
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; rm -rf "$work"' EXIT

"$trainer" prepare synthetic --task reverse --records 2000 --vocab 32 --min-len 3 --max-len 10 \
  --seed 1 --out "$work/train.h5" > /dev/null
(
  mpirun --oversubscribe --bind-to none -np 2 "$trainer" train \
    --config "$source_dir/configs/smoke_translation.yaml" --set data.train="$work/train.h5" \
    --set data.valid="$work/train.h5" --set eval.every_steps=0 --set train.steps=1000000 \
    --set run.dir="$work/run" --set log.every_steps=1 --set log.progress=false \
    > "$work/log" 2>&1
  echo $? > "$work/rc"
) &

for _ in $(seq 1 120); do  # wait until training is under way
  [[ -s $work/run/metrics.jsonl ]] && break
  sleep 0.5
done
[[ -s $work/run/metrics.jsonl ]] || { echo "training did not start"; cat "$work/log"; exit 1; }

victim=$(pgrep -f -- "train --config .*run.dir=$work/run" | while read -r pid; do
  [[ $(ps -o comm= -p "$pid") == trainer ]] && echo "$pid"; done | tail -n 1)
[[ -n $victim ]] || { echo "no rank process found"; exit 1; }
start=$(date +%s%N)
kill -9 "$victim"
for _ in $(seq 1 180); do
  [[ -f $work/rc ]] && break
  sleep 0.5
done
end=$(date +%s%N)
[[ -f $work/rc ]] || { echo "job still running 90 s after SIGKILL of rank pid $victim"; exit 1; }
rc=$(cat "$work/rc")
elapsed_ms=$(( (end - start) / 1000000 ))
echo "SIGKILL of pid $victim: job ended with exit code $rc after $elapsed_ms ms"
[[ $rc -ne 0 ]] || { echo "expected a nonzero exit code"; exit 1; }
(( elapsed_ms < 60000 )) || { echo "took longer than 60 s"; exit 1; }
