#!/bin/bash
# tests/gpu/bundle.sh [--full] OUTDIR — the built qw programs and the shared
# libraries they need that a GPU machine may lack, to carry there:
#
#   OUTDIR/bin/qw-*          $QW_BIN/qw-* (default bin/)
#   OUTDIR/tests/test_model  build/tests/test_model (the parity comparator), if built
#   OUTDIR/gpu/*             $QW_GPU_BIN (default build/gpu) test_ops, test_flash_fwd, test_flash_bwd, if built
#   OUTDIR/lib/              libraries from ldd, minus those surely on an Ubuntu
#                            24.04 + CUDA + OpenMPI machine (glibc, the GCC runtime,
#                            CUDA, OpenMPI and its hwloc/libevent/pmix, libgomp,
#                            OpenBLAS/gfortran, and the base system's zlib, zstd, xz,
#                            bzip2, lz4, acl, nettle, udev)
#   OUTDIR/env.sh            `. OUTDIR/env.sh` (bash): PATH, LD_LIBRARY_PATH, QW_BIN,
#                            QW_TEST_MODEL, QW_GPU_BIN
#   OUTDIR/check.sh          lists the libraries each program still lacks there
#
# libxml2 and ICU (33 MB, only reached through libarchive by qw-tokenize)
# are left out unless --full: the GPU tests and benchmarks do not tokenize
# there.  The copies are stripped of debug information (the working tree and
# what is carried with it must stay small).  Prints the bundle's size.
set -eu
full=0
if [ "${1:-}" = --full ]; then full=1; shift; fi
out=${1:?usage: bundle.sh [--full] OUTDIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${QW_BIN:-$root/bin}
gpu=${QW_GPU_BIN:-$root/build/gpu}
sure='^(linux-vdso|ld-linux.*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libmvec|libstdc\+\+|libgcc_s'
sure+='|libcuda|libcudart|libcublas|libcublasLt|libcudnn.*|libnccl|libnvrtc.*|libnvJitLink|libnvidia-.*'
sure+='|libmpi|libmpi_.*|libopen-rte|libopen-pal|libhwloc|libevent.*|libpmix|libucp|libucs|libuct|libfabric'
sure+='|libgomp|libopenblas.*|libblas|liblapack|libgfortran|libquadmath'
sure+='|libz|libzstd|liblzma|libbz2|liblz4|libacl|libattr|libnettle|libhogweed|libgmp|libudev|libcap|libselinux)\.so'
big='^(libxml2|libicu[a-z0-9]*)\.so'

ls "$bin"/qw-* >/dev/null 2>&1 || { echo "bundle.sh: no programs in '$bin' (run make)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
progs=()
for p in "$bin"/qw-*; do cp "$p" "$out/bin/"; progs+=("$p"); done
if [ -x "$root/build/tests/test_model" ]; then
    mkdir -p "$out/tests" && cp "$root/build/tests/test_model" "$out/tests/" && progs+=("$root/build/tests/test_model")
fi
for p in test_ops test_flash_fwd test_flash_bwd; do
    if [ -x "$gpu/$p" ]; then mkdir -p "$out/gpu" && cp "$gpu/$p" "$out/gpu/" && progs+=("$gpu/$p"); fi
done

for d in bin tests gpu; do   # the folders this bundle has (tests/ and gpu/ may be absent)
    [ -d "$out/$d" ] && strip --strip-debug "$out/$d"/*
done
left=()
for p in "${progs[@]}"; do
    if ldd "$p" | grep -q 'not found'; then
        echo "bundle.sh: '$p' has unresolved libraries here:" >&2; ldd "$p" | grep 'not found' >&2; exit 1
    fi
    # "soname => /path (addr)" lines; the loader and vdso have no "=>"
    while read -r name path; do
        if [[ $name =~ $sure ]]; then continue; fi
        if [[ $name =~ $big ]] && [ $full = 0 ]; then left+=("$name"); continue; fi
        [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
    done < <(ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
done

cat >"$out/env.sh" <<'SH'
# . env.sh (bash) — put this bundle's programs and libraries first.
_qw_b=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export QW_BIN=$_qw_b/bin
export PATH=$_qw_b/bin:$PATH
export LD_LIBRARY_PATH=$_qw_b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for _qw_d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$_qw_d" ] && case ":$LD_LIBRARY_PATH:" in *":$_qw_d:"*) ;; *) LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$_qw_d ;; esac
done
[ -x "$_qw_b/tests/test_model" ] && export QW_TEST_MODEL=$_qw_b/tests/test_model
[ -d "$_qw_b/gpu" ] && export QW_GPU_BIN=$_qw_b/gpu
unset _qw_b _qw_d
SH
cat >"$out/check.sh" <<'SH'
#!/bin/bash
# check.sh — the libraries each bundled program cannot find on this machine.
. "$(dirname "$0")/env.sh"
st=0
for p in "$QW_BIN"/qw-* ${QW_TEST_MODEL:-} ${QW_GPU_BIN:+"$QW_GPU_BIN"/*}; do
    miss=$(ldd "$p" 2>&1 | grep -E 'not found|error' | tr '\n' ' ')
    if [ -n "$miss" ]; then echo "$(basename "$p"): missing $miss"; st=1; fi
done
[ $st = 0 ] && echo "all programs resolve their libraries"
exit $st
SH
chmod +x "$out/check.sh"
echo "bundle '$out': ${#progs[@]} programs, libraries: $(cd "$out/lib" && ls | tr '\n' ' ')"
[ ${#left[@]} = 0 ] || echo "left out (--full adds them; only qw-tokenize needs them): $(printf '%s\n' "${left[@]}" | sort -u | tr '\n' ' ')"
echo "size: $(du -sh "$out" | cut -f1)"
