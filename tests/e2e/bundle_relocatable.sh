#!/usr/bin/env bash
# launch/bundle end to end: bad usage exits 2 with one line; a bundle made from BUILD_DIR and
# then moved elsewhere (its first path gone) resolves every library that is not the host's
# inside itself (ldd under the bundle's environment, and the loader's own record of what the
# trainer, mpirun and their plugins really loaded), trains a smoke model with ./run, and trains
# it with 2 ranks through the bundle's mpirun.
#   bundle_relocatable.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source_dir=$2
bundle_cmd=$source_dir/launch/bundle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

# Bad usage: exit 2 and exactly one line on stderr, nothing made.
expect_usage_error() {
  local what=$1 rc=0
  shift
  "$bundle_cmd" "$@" > "$work/usage.out" 2> "$work/usage.err" || rc=$?
  [[ $rc -eq 2 ]] || fail "$what: exit $rc, expected 2: $(cat "$work/usage.err")"
  [[ $(wc -l < "$work/usage.err") -eq 1 ]] || fail "$what: not one line: $(cat "$work/usage.err")"
  echo "usage error ($what): $(cat "$work/usage.err")"
}
expect_usage_error "no OUT_DIR" --build-dir "$build"
mkdir -p "$work/full" "$work/no-build"
touch "$work/full/something"
expect_usage_error "OUT_DIR not empty" --build-dir "$build" "$work/full"
expect_usage_error "--force on a folder that is no bundle" --build-dir "$build" --force "$work/full"
expect_usage_error "no trainer in --build-dir" --build-dir "$work/no-build" "$work/new"
[[ -f $work/full/something && ! -e $work/new ]] || fail "a refused run changed the folders"

start=$(date +%s)
# --force replaces an earlier bundle (a folder with the marker launch/bundle leaves).
mkdir -p "$work/first/bundle"
touch "$work/first/bundle/.trainer-bundle" "$work/first/bundle/stale-file"
"$bundle_cmd" --build-dir "$build" --force "$work/first/bundle"
[[ ! -e $work/first/bundle/stale-file ]] || fail "--force kept the earlier bundle's files"
echo "bundle made in $(( $(date +%s) - start )) s: $(du -sh "$work/first/bundle" | cut -f1)"
mkdir -p "$work/elsewhere"
mv "$work/first/bundle" "$work/elsewhere/moved"
rmdir "$work/first"
b=$work/elsewhere/moved

# Nothing in the bundle may name the place it was made in.
if grep -rlF "$work/first" "$b"; then
  fail "files above name the bundle's first path"
fi

# Libraries that stay with the host (launch/lib/collect-libs.sh): the C library family,
# libstdc++/libgcc_s and CUDA's.
host='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libutil\.|libanl\.|libnsl\.|libmvec\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvidia|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver|libnvToolsExt|libcupti|libnvblas)'
# One ldd for every program and plugin (ldd follows the whole tree, so lib/ is covered), in the
# environment the bundle's run script sets up; "FILE:" lines head each file's list.
elfs=("$b"/bin/* "$b"/lib/*/*.so)
checked=0
file=""
while read -r name arrow path _; do
  if [[ -z $arrow && $name == *: ]]; then
    file=$(basename "${name%:}")
    continue
  fi
  [[ $arrow == "=>" ]] || continue
  [[ $path != not ]] || fail "$file: $name not found"
  [[ $path == "$b"/* || $name =~ $host ]] || fail "$file: $name from $path, outside the bundle"
  checked=$((checked + 1))
done < <(
  # shellcheck source=/dev/null
  . "$b/libexec/env.sh"
  ldd "${elfs[@]}"
)
echo "ldd: ${#elfs[@]} files, $checked resolved libraries, all in the bundle or the host's"

# What the loader really loaded into the bundle's programs (plugins are dlopened at run time:
# ldd cannot see them). LD_DEBUG writes one file per process; a process image starts after
# "transferring control" of the previous one (the run script execs the trainer).
loaded_outside() {
  cat "$@" | awk -v b="$b/" '
    / calling init: / { inits = inits " " $NF }
    / transferring control: / { if (index($NF, b) == 1) print inits; inits = "" ; prog = $NF }
    END { if (index(prog, b) == 1) print inits }' | tr ' ' '\n' | sed '/^$/d' | sort -u |
    while read -r lib; do
      [[ $lib == "$b"/* || $(basename "$lib") =~ $host ]] || echo "$lib"
    done
}

data=$work/reverse.h5
"$b/run" prepare synthetic --task reverse --records 600 --vocab 20 --min-len 4 --max-len 12 \
  --seed 1 --out "$data" > /dev/null 2>&1
args=(train --config "$b/configs/smoke_translation.yaml" --set "data.train=$data"
  --set "data.valid=$data" --set train.steps=20 --set train.schedule.warmup_steps=2
  --set eval.every_steps=10 --set log.progress=false)
check_run() {
  local what=$1 dir=$2 log=$3
  grep -q "done: 20 steps" "$log" || { cat "$log"; fail "$what: no 'done: 20 steps'"; }
  [[ -s $dir/metrics.jsonl && -e $dir/checkpoints/latest ]] || fail "$what: no metrics or checkpoint"
}

mkdir -p "$work/ld1"
LD_DEBUG=files LD_DEBUG_OUTPUT=$work/ld1/p "$b/run" "${args[@]}" --set "run.dir=$work/run1" \
  > "$work/run1.log" 2>&1 || { cat "$work/run1.log"; fail "./run train failed"; }
check_run "./run" "$work/run1" "$work/run1.log"
outside=$(loaded_outside "$work"/ld1/p.*)
[[ -z $outside ]] || fail "./run loaded from outside the bundle: $outside"
echo "./run: trained 20 steps, every library loaded from the bundle or the host's"

if [[ -x $b/mpirun ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  mkdir -p "$work/ld2"
  LD_DEBUG=files LD_DEBUG_OUTPUT=$work/ld2/p "$b/mpirun" --oversubscribe --bind-to none -np 2 \
    -x OMP_NUM_THREADS=1 "$b/bin/trainer" "${args[@]}" --set "run.dir=$work/run2" \
    > "$work/run2.log" 2>&1 || { cat "$work/run2.log"; fail "2 ranks through ./mpirun failed"; }
  check_run "./mpirun -np 2" "$work/run2" "$work/run2.log"
  ranks=$(grep -l "transferring control: $b/bin/trainer" "$work"/ld2/p.* | wc -l)
  [[ $ranks -eq 2 ]] || fail "./mpirun -np 2 started $ranks trainers"
  outside=$(loaded_outside "$work"/ld2/p.*)
  [[ -z $outside ]] || fail "./mpirun loaded from outside the bundle: $outside"
  echo "./mpirun -np 2: trained 20 steps on 2 ranks, every library from the bundle or the host's"
  # ./run --np: the same through the run script's launcher flags.
  "$b/run" --np 2 "${args[@]}" --set "run.dir=$work/run3" > "$work/run3.log" 2>&1 ||
    { cat "$work/run3.log"; fail "./run --np 2 failed"; }
  check_run "./run --np 2" "$work/run3" "$work/run3.log"
  echo "./run --np 2: trained 20 steps"
else
  echo "no mpirun in the bundle (trainer built without MPI): multi-process part skipped"
fi
echo "PASS in $(( $(date +%s) - start )) s"
