#!/usr/bin/env bash
# test_gpu_suite.sh — tests/gpu/run.sh's bookkeeping, on the CPU, with stand-in
# programs: a skipped case is counted and named in the closing line "N passed,
# N failed, N skipped", and fails the suite unless QW_GPU_ALLOW_SKIP=1.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 9
mkdir -p "$tmp/gpu" "$tmp/path"
for p in test_flash_fwd test_flash_bwd; do
    printf '#!/bin/sh\necho "PASS %s_case"\n' "$p" >"$tmp/gpu/$p"
done
cat >"$tmp/gpu/test_ops" <<'SH'
#!/bin/sh
if [ "${1:-}" = fault ]; then echo "qw: cuda: stand-in fault" >&2; exit 1; fi
echo "PASS cuda_stand_in"
SH
# compute-sanitizer that does not support the device, unless QW_FAKE_SANITIZER_OK=1
cat >"$tmp/path/compute-sanitizer" <<'SH'
#!/bin/sh
if [ "${QW_FAKE_SANITIZER_OK:-}" = 1 ]; then echo "========= ERROR SUMMARY: 0 errors"; exit 0; fi
echo "========= Error: Device not supported"; exit 9
SH
printf '#!/bin/sh\necho "PASS tools_stand_in"\n' >"$tmp/tools_ok.sh"
printf '#!/bin/sh\necho "PASS tools_stand_in"\necho "SKIP tools_memcheck (stand-in)"\n' >"$tmp/tools_skip.sh"
chmod +x "$tmp/gpu"/* "$tmp/path"/*
printf '#!/bin/sh\necho "PASS rollout_stand_in"\n' >"$tmp/rollout_ok.sh"
suite() { env PATH="$tmp/path:$PATH" QW_GPU_BIN="$tmp/gpu" QW_GPU_ROLLOUT="$tmp/rollout_ok.sh" bash "$QW_SRCDIR/tests/gpu/run.sh"; }

QW_GPU_TOOLS=$tmp/tools_ok.sh expect_status gpu_suite_skip_fails 1 suite
check gpu_suite_skip_counted grep -q '^6 passed, 0 failed, 1 skipped$' "$last_out"
check gpu_suite_skip_named grep -q '^SKIP memcheck (compute-sanitizer: device not supported' "$last_out"
expect_stderr gpu_suite_skip_says_why "1 cases skipped.*QW_GPU_ALLOW_SKIP=1"

QW_GPU_TOOLS=$tmp/tools_skip.sh QW_GPU_ALLOW_SKIP=1 expect_status gpu_suite_skip_allowed 0 suite
check gpu_suite_tools_skip_counted grep -q '^6 passed, 0 failed, 2 skipped$' "$last_out"

QW_FAKE_SANITIZER_OK=1 QW_GPU_TOOLS=$tmp/tools_ok.sh expect_status gpu_suite_nothing_skipped 0 suite
check gpu_suite_all_counted grep -q '^7 passed, 0 failed, 0 skipped$' "$last_out"

QW_FAKE_SANITIZER_OK=1 QW_GPU_TOOLS=$tmp/tools_skip.sh expect_status gpu_suite_tools_skip_fails 1 suite
