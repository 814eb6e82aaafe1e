#!/usr/bin/env bash
# Prints the folder that holds a CUDA library (default libcublasLt.so.13) on this host, for
# LD_LIBRARY_PATH: $CUDA_HOME (default /usr/local/cuda) lib64/ or lib/, the loader's cache, or
# else anywhere under /usr/local, /usr/lib, /opt and Python's site-packages (pip's nvidia-*
# wheels keep cuBLAS there). Exit 1, printing nothing, when the host has none.
# Used by bench/gpu_check and, copied into each bundle, by launch/bundle's run script.
#
#   cuda-libdir.sh [SONAME]
set -euo pipefail
soname=${1:-libcublasLt.so.13}
home=${CUDA_HOME:-/usr/local/cuda}
for dir in "$home/lib64" "$home/lib"; do
  if [[ -e $dir/$soname ]]; then
    echo "$dir"
    exit 0
  fi
done
cached=$(/sbin/ldconfig -p 2> /dev/null | awk -v n="$soname" '$1 == n {print $NF; exit}' || true)
if [[ -n $cached ]]; then
  dirname "$cached"
  exit 0
fi
read -r -a sites <<< "$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2> /dev/null || true)"
found=$(find /usr/local /usr/lib /opt "${sites[@]}" -name "$soname*" 2> /dev/null | head -1 || true)
[[ -n $found ]] || exit 1
dirname "$found"
