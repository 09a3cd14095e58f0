#!/usr/bin/env bash
# test_plot.sh — qw-eval plot: the SVG parses as XML and has one polyline per
# run and key with one point per record holding the key; stages joined into
# one run continue its steps; the PNG has the signature and the figure's
# size; bad metrics lines and unknown keys are errors naming them.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 26

# two runs of 50 steps with a validation record every 10 (qw-metrics(5))
python3 - "$tmp" <<'PY'
import json, math, sys
d = sys.argv[1]
for name, s in (("a", 1.0), ("b", 1.3)):
    with open(f"{d}/{name}.jsonl", "w") as f:
        for st in range(1, 51):
            f.write(json.dumps({"step": st, "loss": s * (4 * math.exp(-st / 15) + 2), "lr": 3e-3 * min(1, st / 10),
                                "grad_norm": 1 / st ** 0.5, "tokens": st * 4096, "tok_per_s": 20000.5 + st}) + "\n")
            if st % 10 == 0:
                f.write(json.dumps({"step": st, "val_loss": s * (4 * math.exp(-st / 15) + 2.2), "val_tokens": 1000}) + "\n")
with open(f"{d}/s2.jsonl", "w") as f:   # a second stage: steps 1..20 again
    for st in range(1, 21):
        f.write(json.dumps({"step": st, "loss": 2.0 - st / 100, "lr": 1e-3}) + "\n")
PY
# polylines.py SVG: "N p1,p2,..." (the point count of each polyline, in order); exit 1 if not XML
cat >"$tmp/polylines.py" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg"
p = root.findall(".//" + ns + "polyline")
print(len(p), ",".join(str(len(x.get("points").split())) for x in p))
if len(sys.argv) > 2:   # the largest x of polyline N
    print(max(float(pt.split(",")[0]) for pt in p[int(sys.argv[2])].get("points").split()))
PY
polylines() { python3 "$tmp/polylines.py" "$@"; }

expect_status plot_keys 0 qw-eval plot "$tmp/a.jsonl" "$tmp/b.jsonl" --keys loss,val_loss,lr -o "$tmp/f.svg" --png "$tmp/f.png"
check svg_is_xml polylines "$tmp/f.svg"
check polyline_per_run_and_key test "$(polylines "$tmp/f.svg" | head -n 1)" = "6 50,50,5,5,50,50"
check svg_panel_titles test "$(grep -c '>val_loss</text>' "$tmp/f.svg")" -eq 1
check svg_legend test "$(grep -c '>a</text>\|>b</text>' "$tmp/f.svg")" -eq 2
check svg_axis_ticks grep -q '>0.0030</text>' "$tmp/f.svg"
check png_signature test "$(head -c 8 "$tmp/f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a
# 3 panels: two columns, two rows of 260 px under a 40 px legend
check png_size python3 -c '
import struct, sys
b = open(sys.argv[1], "rb").read(24)
sys.exit(0 if b[12:16] == b"IHDR" and struct.unpack(">II", b[16:24]) == (880, 560) else 1)' "$tmp/f.png"
# the rows, unfiltered (PNG filters 0-4), hold the first run's colour
check png_has_ink python3 -c '
import sys, zlib
b = open(sys.argv[1], "rb").read()
i, data, W, H = 8, b"", 0, 0
while i < len(b):
    n = int.from_bytes(b[i:i + 4], "big"); t = b[i + 4:i + 8]
    if t == b"IHDR": W, H = int.from_bytes(b[i + 8:i + 12], "big"), int.from_bytes(b[i + 12:i + 16], "big")
    if t == b"IDAT": data += b[i + 8:i + 8 + n]
    i += 12 + n
raw, s, prev, blue = zlib.decompress(data), 3 * W, bytearray(3 * W), 0
for y in range(H):
    f, row = raw[y * (s + 1)], bytearray(raw[y * (s + 1) + 1:(y + 1) * (s + 1)])
    for x in range(s):
        a = row[x - 3] if x >= 3 else 0; up = prev[x]; c = prev[x - 3] if x >= 3 else 0
        if f == 1: row[x] = (row[x] + a) & 255
        elif f == 2: row[x] = (row[x] + up) & 255
        elif f == 3: row[x] = (row[x] + (a + up) // 2) & 255
        elif f == 4:
            p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
            row[x] = (row[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
    blue += sum(1 for x in range(0, s, 3) if row[x:x + 3] == bytes([0x1f, 0x77, 0xb4]))
    prev = row
sys.exit(0 if blue > 200 else 1)' "$tmp/f.png"

# default keys: every numeric key but step, tokens and val_tokens (loss, lr, grad_norm, tok_per_s, val_loss)
expect_status plot_default_keys 0 qw-eval plot "$tmp/a.jsonl" "$tmp/b.jsonl" -o "$tmp/d.svg"
check default_keys_panels test "$(polylines "$tmp/d.svg" | head -n 1)" = "10 50,50,50,50,50,50,50,50,5,5"
check default_keys_no_tokens test "$(grep -c '>tokens</text>\|>val_tokens</text>' "$tmp/d.svg")" -eq 0
check svg_no_png_without_option test ! -e "$tmp/d.png"

# stages joined: LABEL=S1,S2 is one run whose steps continue (50 + 20 loss points up to step 70)
expect_status plot_stages 0 qw-eval plot "dense=$tmp/a.jsonl,$tmp/s2.jsonl" "$tmp/b.jsonl" --keys loss -o "$tmp/s.svg"
check stages_one_polyline test "$(polylines "$tmp/s.svg" | head -n 1)" = "2 70,50"
# the joined run reaches the right end of the panel (x 440 − 16) at step 70, the x axis's last tick
check stages_steps_continue test "$(polylines "$tmp/s.svg" 0 | tail -n 1)" = 424.0 -a "$(grep -c '>70</text>' "$tmp/s.svg")" -eq 1
check stages_label grep -q '>dense</text>' "$tmp/s.svg"

# bad input
{ head -n 2 "$tmp/a.jsonl"; echo '{"step": 3, "loss": '; } >"$tmp/bad.jsonl"
expect_status bad_line 3 qw-eval plot "$tmp/bad.jsonl" -o "$tmp/x.svg"
expect_stderr bad_line_msg "^qw-eval: '.*bad.jsonl': line 3: not JSON$"
printf '%s\n' '{"step": 1, "loss": 2}' '{"loss": 1.5}' >"$tmp/nostep.jsonl"
expect_status no_step 3 qw-eval plot "$tmp/nostep.jsonl" -o "$tmp/x.svg"
expect_stderr no_step_msg "nostep.jsonl': line 2: no numeric \"step\"$"
expect_status unknown_key 3 qw-eval plot "$tmp/a.jsonl" --keys loss,reward -o "$tmp/x.svg"
expect_stderr unknown_key_msg "no values of 'reward' in .*a.jsonl"
expect_status needs_output 2 qw-eval plot "$tmp/a.jsonl"

# make report RUN=DIR: the run's logs (DIR/*.jsonl, DIR/logs/*.jsonl) drawn into DIR/metrics.svg and .png
mkdir -p "$tmp/run/logs" && cp "$tmp/a.jsonl" "$tmp/run/" && cp "$tmp/s2.jsonl" "$tmp/run/logs/"
expect_status make_report 0 make --no-print-directory -C "$QW_SRCDIR" report RUN="$tmp/run"
check make_report_figures test "$(polylines "$tmp/run/metrics.svg" | cut -d' ' -f1)" -ge 6 -a -s "$tmp/run/metrics.png"
