# SPDX-License-Identifier: MIT
# An SVG bar chart of bench_attention's summary table (the Markdown table after
# "## qkv attention benchmark: summary"), as bench/compare_with_ggml.sh saves it:
#
#   awk -f bench/summary_chart.awk qkv.txt > chart.svg
#
# For each prefill, long and decode case: qkv beside ggml's f32 and f16 K/V, as a fraction
# of the limit measured in the same run at that thread count (the FMA peak; for decode,
# the read bandwidth), with that limit as the line at 1. Columns are found by their header
# names (case, threads, qkv, of limit, ggml f32, ggml f16), so added rows and columns do
# not disturb it; a missing ggml column or value just leaves its bar out.
function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
function num(s) { s = trim(s); return (s ~ /^[0-9.]+/) ? s + 0 : -1 }
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }

/^## qkv attention benchmark: summary/ { in_summary = 1; next }
in_summary && /^- machine:/ { machine = substr($0, 12) }
in_summary && /^- build:/ { build = substr($0, 10); gsub(/`/, "", build) }
in_summary && /^\| *case *\|/ && !ncol {
  ncol = split($0, head, "|")
  for (i = 1; i <= ncol; ++i) col[trim(head[i])] = i
  next
}
ncol && /^\|/ {
  if ($0 ~ /^\| *---/) next
  split($0, f, "|")
  name = trim(f[col["case"]])
  if (name !~ /^(prefill|long|decode)/) next
  qkv = num(f[col["qkv"]]); frac = num(f[col["of limit"]])
  if (qkv <= 0 || frac <= 0) next
  limit = qkv / frac
  n++
  label[n] = name ", " trim(f[col["threads"]]) "t"
  decode[n] = name ~ /^decode/
  v[n, 1] = frac
  v[n, 2] = ("ggml f32" in col) && num(f[col["ggml f32"]]) > 0 ? num(f[col["ggml f32"]]) / limit : -1
  v[n, 3] = ("ggml f16" in col) && num(f[col["ggml f16"]]) > 0 ? num(f[col["ggml f16"]]) / limit : -1
  for (s = 1; s <= 3; ++s) if (v[n, s] > top) top = v[n, s]
  next
}
ncol && !/^\|/ { ncol = 0; in_summary = 0 }

END {
  if (n == 0) { print "summary_chart.awk: no summary table with prefill or decode rows" > "/dev/stderr"; exit 1 }
  xmax = top > 1 ? top : 1; xmax = int(xmax * 10 + 0.999) / 10
  left = 260; width = 520; bar = 7; group = 3 * bar + 8; topy = 74
  height = topy + n * group + 40
  scale = width / xmax
  color[1] = "#1f77b4"; color[2] = "#ff7f0e"; color[3] = "#2ca02c"
  series[1] = "qkv"; series[2] = "ggml, f32 K/V"; series[3] = "ggml, f16 K/V"
  printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", left + width + 60, height
  printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
  printf "<text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Fraction of the FMA peak measured in the same run (decode: of the read bandwidth)</text>\n"
  printf "<text x=\"8\" y=\"34\" fill=\"#555\">%s</text>\n", esc(machine)
  printf "<text x=\"8\" y=\"48\" fill=\"#555\">%s</text>\n", esc(build)
  for (s = 1; s <= 3; ++s) {
    printf "<rect x=\"%d\" y=\"56\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"65\">%s</text>\n", left + (s - 1) * 130, color[s], left + (s - 1) * 130 + 14, series[s]
  }
  for (t = 0; t <= xmax + 1e-9; t += 0.2) {
    x = left + t * scale
    printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, topy - 4, x, height - 30
    printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">%.1f</text>\n", x, height - 16, t
  }
  for (i = 1; i <= n; ++i) {
    y = topy + (i - 1) * group
    printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\"%s>%s</text>\n", left - 6, y + 1.5 * bar + 4, decode[i] ? " font-style=\"italic\"" : "", esc(label[i])
    for (s = 1; s <= 3; ++s) {
      if (v[i, s] < 0) continue
      printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>%s %s: %.2f</title></rect>\n", left, y + (s - 1) * bar, v[i, s] * scale, bar - 1, color[s], esc(label[i]), series[s], v[i, s]
      if (s == 1) printf "<text x=\"%.1f\" y=\"%d\" font-size=\"9\">%.2f</text>\n", left + v[i, s] * scale + 3, y + bar - 1, v[i, s]
    }
  }
  x = left + scale
  printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\" stroke-width=\"1.5\"/>\n", x, topy - 4, x, height - 30
  printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">limit</text>\n", x, topy - 6
  printf "</svg>\n"
}
