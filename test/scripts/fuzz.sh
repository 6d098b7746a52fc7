#!/usr/bin/env bash
# Runs every native Go fuzz test of the module (func FuzzXxx(f *testing.F)) for FUZZTIME each,
# one after another, and writes what ran to FUZZ_REPORT.
#
#   FUZZTIME=10m bash test/scripts/fuzz.sh      # the length docs/security.md reports
#   FUZZTIME=5s  bash test/scripts/fuzz.sh      # what `make test` (and so CI) runs
#   FUZZ_ONLY='Accept|Reader' ...               # only targets whose name matches
#
# A crash makes `go test` write the input to the package's testdata/fuzz/FuzzXxx/ and fail;
# this script then prints the failure, goes on with the other targets, and exits 1 at the end.
# Commit that file with the fix: it becomes a regression case every `go test` runs.
# Packages under test/ are left out: their TestMain starts real servers and they hold no fuzzers.
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10m}
PARALLEL=${FUZZ_PARALLEL:-$(nproc)}
REPORT=${FUZZ_REPORT:-test/.cache/fuzz-report.md}
ONLY=${FUZZ_ONLY:-.}
mkdir -p "$(dirname "$REPORT")"

pkgs=$($GO list ./... | grep -v '/test/')
# `go test -list` prints a package's matching names, then "ok <package> ...".
targets=()
while read -r first second _; do
	case $first in
	Fuzz*) pending+=("$first") ;;
	ok) for t in "${pending[@]:-}"; do [ -n "$t" ] && targets+=("$second $t"); done; pending=() ;;
	esac
done < <(pending=(); $GO test -list '^Fuzz' $pkgs)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

{
	echo "# Fuzz run $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo
	echo "FUZZTIME=$FUZZTIME, -parallel=$PARALLEL, $($GO version | cut -d' ' -f3), $(nproc) cores"
	echo
	echo "| package | target | ran for | executions | new corpus entries | result |"
	echo "|---|---|---|---|---|---|"
} >"$REPORT"

# deadline_race reports whether a failed fuzz run's log shows only go.dev/issue/75804: the
# target's sole failure is "context deadline exceeded" after fuzzing for its whole time, with
# no failing input.
deadline_race() {
	grep -qE '^--- FAIL: Fuzz' "$1" &&
		[ "$(grep -cE '^    ' "$1")" = 1 ] &&
		grep -qE '^    context deadline exceeded$' "$1" &&
		! grep -q 'Failing input written to' "$1"
}

failed=0
for entry in "${targets[@]}"; do
	read -r pkg name <<<"$entry"
	[[ $name =~ $ONLY ]] || continue
	log=$(mktemp)
	start=$(date +%s)
	echo "fuzz: $pkg $name for $FUZZTIME"
	corpus="$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name"
	before=$(ls "$corpus" 2>/dev/null | sort || true)
	if $GO test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -parallel="$PARALLEL" "$pkg" >"$log" 2>&1; then
		result=ok
	elif deadline_race "$log" && [ "$(ls "$corpus" 2>/dev/null | sort || true)" = "$before" ]; then
		# go1.26's fuzz coordinator can report its own -fuzztime deadline as a failure
		# (go.dev/issue/75804, fixed in go1.27): the target ran its time, no input failed and
		# none was written. Said as such in the report, never as a plain ok.
		result="ok (ran its time; go#75804 reported the deadline, no failing input)"
		echo "fuzz: $name: go reported its own fuzztime deadline (go.dev/issue/75804); no failing input was written"
	else
		result=FAILED
		failed=1
		cat "$log"
	fi
	secs=$(($(date +%s) - start))
	# The last progress line: "fuzz: elapsed: 10m0s, execs: 123456 (205/sec), new interesting: 12 (total: 40)".
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -1 || true)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	newc=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	elapsed=$(sed -nE 's/^fuzz: elapsed: ([^,]+),.*/\1/p' <<<"$last")
	echo "| ${pkg#github.com/nirproxy/nirproxy/} | $name | ${elapsed:-${secs}s} | ${execs:-?} | ${newc:-?} | $result |" >>"$REPORT"
	rm -f "$log"
done

echo "fuzz: report in $REPORT"
cat "$REPORT"
exit $failed
