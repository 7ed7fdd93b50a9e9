#!/usr/bin/env bash
# Before/after runs of the hostile attacks, alternating per attack so that both
# sides see the same load on a shared machine:
#   bench/hostile/ab.sh BEFORE_COMMIT AFTER_COMMIT LABEL [attacks]
# e.g. bench/hostile/ab.sh 69eb10e HEAD quiet idle,deleteflood,adminhold
# Each commit is exported (git archive) to a temporary directory that uses this
# checkout's node_modules, and runs there (editing the checkout meanwhile
# changes nothing). Rows are labelled before-LABEL and after-LABEL and merged
# into this checkout's bench/results/hostile.json; the RESULTS.md section is
# then rewritten from it. A side whose code lacks the stall metrics shows
# "–" for them.
set -euo pipefail
before=$1 after=$2 label=$3
attacks=${4:-idle,listflood,biglist,logflood,slowpeers,deleteflood,impostor,adminhold}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for side in before after; do
  commit=${!side}
  mkdir -p "$tmp/$side"
  git -C "$root" archive "$commit" | tar -x -C "$tmp/$side"
  # the bench harness of this checkout drives both sides (same probes, same figures)
  rm -rf "$tmp/$side/bench/hostile" && cp -r "$root/bench/hostile" "$tmp/$side/bench/hostile"
  # the measure the harness and its noise process use (a side without it has no stall metrics of its own)
  [ -f "$tmp/$side/src/admin/loop-stall.ts" ] || cp "$root/src/admin/loop-stall.ts" "$tmp/$side/src/admin/loop-stall.ts"
  ln -s "$root/node_modules" "$tmp/$side/node_modules"
  echo "$side: $(git -C "$root" rev-parse --short "$commit")"
done
for a in ${attacks//,/ }; do
  for side in before after; do
    echo "=== $a $side $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd "$tmp/$side" && npm run --silent bench:hostile -- --only="$a" --label="$side-$label" --commit="$(git -C "$root" rev-parse --short "${!side}")") | grep '^\[' | grep -v starting || true
  done
done
# merge the rows into this checkout's results and rewrite RESULTS.md
node -e '
const fs = require("fs");
const [root, tmp, label] = process.argv.slice(1);
const f = root + "/bench/results/hostile.json";
const main = fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, "utf8")) : { runs: [] };
for (const side of ["before", "after"]) {
  const p = tmp + "/" + side + "/bench/results/hostile.json";
  if (!fs.existsSync(p)) continue;
  for (const r of JSON.parse(fs.readFileSync(p, "utf8")).runs.filter((x) => x.label === side + "-" + label)) {
    const i = main.runs.findIndex((y) => y.attack === r.attack && y.label === r.label);
    if (i >= 0) main.runs[i] = r; else main.runs.push(r);
  }
}
fs.writeFileSync(f, JSON.stringify(main, null, 2) + "\n");
' "$root" "$tmp" "$label"
(cd "$root" && npm run --silent bench:hostile -- --report)
