#!/usr/bin/env bash
# Copies the shared libraries that the given executables and plugins load (ldd: the whole
# dependency tree) into DEST under their sonames, except those that must come from the host:
#   - the C library family, libstdc++ and libgcc_s: every Linux host has them, and a copied
#     libc would have to match the host's dynamic loader;
#   - the CUDA driver and toolkit (libcuda, cudart, cuBLAS/cuBLASLt, cuDNN, NCCL, ...): the
#     driver must match the host's kernel module, and the toolkit libraries are large (cuBLASLt
#     alone is several hundred MB) and present wherever the GPU is usable.
# Shared by launch/bundle (the trainer and Open MPI) and bench/gpu_bundle (the gpu tests).
#
#   launch/lib/collect-libs.sh [--host-list FILE] DEST FILE...
#
# --host-list FILE: writes the sonames of the CUDA libraries left to the host, one a line (the
# bundle's run script looks for them on the host). A library that ldd cannot find is an error
# (exit 1) unless it is one left to the host.
set -euo pipefail

host_list=""
if [[ ${1:-} == --host-list ]]; then
  host_list=${2:?--host-list needs a file}
  shift 2
fi
if [[ $# -lt 2 ]]; then
  echo "usage: launch/lib/collect-libs.sh [--host-list FILE] DEST FILE..." >&2
  exit 2
fi
dest=$1
shift
mkdir -p "$dest"

system='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libresolv\.|libutil\.|libanl\.|libnsl\.|libmvec\.|libstdc\+\+|libgcc_s)'
cuda='^(libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvidia|libnvrtc|libnvJitLink|libcufft|libcurand|libcusparse|libcusolver|libnvToolsExt|libcupti|libnvblas)'

declare -A cuda_left=()
missing=()
file=""
# One ldd for all files (a loader run per file is several times slower): it prints a
# "FILE:" line before each file's list (with more than one file), then "name => /path (addr)"
# for resolved libraries and "name => not found" otherwise; the loader itself and the vdso
# have no "=>" and are system anyway.
while read -r name arrow path _; do
  if [[ -z $arrow && $name == *: ]]; then
    file=${name%:}
    continue
  fi
  [[ $arrow == "=>" ]] || continue
  [[ $name =~ $system ]] && continue
  if [[ $name =~ $cuda ]]; then
    cuda_left[$name]=1
    continue
  fi
  if [[ $path == not ]]; then
    missing+=("$name (needed by ${file:-$1})")
    continue
  fi
  # cp -L: the soname is usually a symlink to the versioned file; the copy is the file itself
  # under the name the loader asks for. Already copied: the same file, skip the work.
  [[ -e $dest/$name ]] || cp -L "$path" "$dest/$name"
done < <(ldd "$@")

if [[ -n $host_list ]]; then
  printf '%s\n' "${!cuda_left[@]}" | sed '/^$/d' | sort > "$host_list"
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "collect-libs: not found by ldd: ${missing[*]}" >&2
  exit 1
fi
