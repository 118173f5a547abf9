#!/usr/bin/env bash
# The one table of `make bench` (issue #16): what the benchmark scripts
# printed, side by side for runc, runsc, skiff (template, pool, cold) and
# the floor. Reads their outputs from DIR (bench.txt, bench-more.txt,
# bench-density.txt, as `make bench` saves them); a figure a script did not
# print is n/a.
#   scripts/bench-table.sh DIR
set -euo pipefail

DIR=${1:?usage: bench-table.sh DIR}
B=$DIR/bench.txt M=$DIR/bench-more.txt D=$DIR/bench-density.txt
for f in "$B" "$M" "$D"; do [[ -f $f ]] || : >"$f"; done

# col FILE PREFIX N: field N (1 = the label) of the first table row whose
# label starts with PREFIX, trimmed; n/a if none.
col() {
	awk -F'|' -v p="$2" -v n="$3" '
		index($2, " " p) == 1 {v = $(n + 1); gsub(/^ +| +$/, "", v); print v; found = 1; exit}
		END {if (!found) print "n/a"}' "$1"
}
# rowat FILE PREFIX K N: field N of the K-th row whose label starts with PREFIX.
rowat() {
	awk -F'|' -v p="$2" -v k="$3" -v n="$4" '
		index($2, " " p) == 1 && ++seen == k {v = $(n + 1); gsub(/^ +| +$/, "", v); print v; found = 1; exit}
		END {if (!found) print "n/a"}' "$1"
}
# rate FILE PREFIX RT: RT's "N MiB/s" in a bench-more throughput row.
rate() {
	awk -F'|' -v p="$2" -v rt="$3" '
		index($2, " " p) == 1 {
			for (i = 3; i <= NF; i++) {
				v = $i; gsub(/^ +| +$/, "", v)
				if (index(v, rt " ") == 1 && v ~ /MiB\/s/) {sub(rt " ", "", v); sub(/ \(.*/, "", v); print v; found = 1; exit}
			}
		}
		END {if (!found) print "n/a"}' "$1"
}
secs() { if [[ $1 == n/a ]]; then echo n/a; else echo "$1 s"; fi; }

tmpl=$(col "$B" "skiff run, stock kernel, restored from a VM template" 2)
pool=$(col "$B" "skiff run, stock kernel, from the pool" 2)
cold=$(col "$B" "skiff run, stock kernel, cold boot" 2)
floor=$(col "$B" "floor (raw QEMU, same kernel/machine" 2)
runc=$(col "$B" "runc run" 2)
runsc=$(col "$B" "runsc run" 2)
ratio() {
	if [[ $1 == n/a || $2 == n/a ]]; then echo n/a; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; fi
}

# Density rows: the first of each runtime is one alone, the second N at once.
s1m=$(rowat "$D" "skiff (template clones)" 1 3) s1c=$(rowat "$D" "skiff (template clones)" 1 4)
snm=$(rowat "$D" "skiff (template clones)" 2 3) snc=$(rowat "$D" "skiff (template clones)" 2 4)
n=$(rowat "$D" "skiff (template clones)" 2 2)
r1m=$(rowat "$D" "runsc --network=none" 1 3) r1c=$(rowat "$D" "runsc --network=none" 1 4)
rnm=$(rowat "$D" "runsc --network=none" 2 3) rnc=$(rowat "$D" "runsc --network=none" 2 4)
# Start under load: the rows with 7 fields.
load() { # LABEL: "failed, p50, p99 (p99/alone)"
	awk -F'|' -v p="$1" 'index($2, " " p) == 1 && NF == 8 {
		for (i = 3; i <= 7; i++) gsub(/^ +| +$/, "", $i)
		printf "%s failed, p50 %s, p99 %s (%s x alone)\n", $4, $5, $6, $7; found = 1; exit}
		END {if (!found) print "n/a"}' "$D"
}

echo "## skiff against its peers, $(date -u +%Y-%m-%d) ($(nproc) CPUs)"
echo
echo "| | runc | runsc | skiff template | skiff pool | skiff cold | floor (raw QEMU) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
echo "| \`run /bin/true\` (median) | $(secs "$runc") | $(secs "$runsc") | $(secs "$tmpl") | $(secs "$pool") | $(secs "$cold") | $(secs "$floor") |"
echo "| ... as a ratio to runsc (targets: pool <= 1, template <= 2) | $(ratio "$runc" "$runsc") | 1.00 | $(ratio "$tmpl" "$runsc") | $(ratio "$pool" "$runsc") | $(ratio "$cold" "$runsc") | $(ratio "$floor" "$runsc") |"
echo "| idle host memory, one sandbox alone (Pss of all its processes) | | $r1m | $s1m | | | |"
echo "| idle host memory each, $n at once | | $rnm | $snm | | | |"
echo "| idle CPU each, one alone / $n at once (% of a core) | | $r1c / $rnc | $s1c / $snc | | | |"
echo "| stdout (MiB/s, start included) | $(rate "$M" "stdout" runc) | $(rate "$M" "stdout" runsc) | $(rate "$M" "stdout" skiff) | | | |"
echo "| stdin (MiB/s, start included) | $(rate "$M" "stdin" runc) | $(rate "$M" "stdin" runsc) | $(rate "$M" "stdin" skiff) | | | |"
echo "| TCP container to host (MiB/s) | $(rate "$M" "TCP" runc) | $(rate "$M" "TCP" runsc) | $(rate "$M" "TCP" skiff) | | | |"
par=$(sed -n 's/^## Start under load: \([0-9]*\) .*/\1/p' "$D")
echo "| ${par:-n/a} \`run /bin/true\` at once | | $(load "runsc --network=none") | $(load "skiff (template)") | | | |"
