#!/usr/bin/env bash
# Runs nirproxy's benchmarks and writes the figures into docs/performance.md (between its
# bench markers; the rest of the file is kept):
#   1. Go benchmarks of the hot paths (merge and sort of search answers, the whole search
#      answer path, per-instance metadata rewriting, the pass-through copy of retrieves);
#   2. test/bench/cmd/loadbench: three real Orthancs, nirproxy, nginx and Redis on loopback,
#      loaded side by side in one run (QIDO through the proxy vs straight to Orthanc, one upstream vs
#      three; whole-study retrieve through the proxy vs direct vs nginx; the proxy's peak memory
#      for a small and a large study), plus CPU profiles of the proxy; and issue 3's phase: the
#      search through proxies over 1, 5, 10 and 20 stand-ins for distant trusts answering after
#      50 ms, and over 10 of which one hangs (every answer against its deadline, the Warning
#      naming it, the median once its circuit breaker is open); and issue 4's phase: a repeated
#      search answered from the cache in Redis and in process, against Orthanc direct and nginx
#      serving the same answer as a static file, all loaded with wrk (checked first to be cache
#      hits that never reach Orthanc); and issue 11's item 8, the cached search with
#      authentication on versus off, from the Go benchmark BenchmarkCachedSearchAuth run in
#      rounds (BENCH_AUTH_ROUNDS, default 5); and issue 12's item 7, searches and retrieves with
#      the audit record on versus off, from the Go benchmark BenchmarkAudit run in rounds
#      (BENCH_AUDIT_ROUNDS, default 5; its spool is on the disk of $TMPDIR, or test/.cache
#      when that is tmpfs).
# Every proxy loadbench starts trusts a development token issuer (test/devaccess), and every
# request to its data routes carries the clinician persona's token.
# Every server (Orthanc, nirproxy, nginx, redis-server) is started by loadbench and stopped
# before it exits, also on Ctrl-C.
# It takes about 7 minutes on 2 cores. `make bench` runs `make deps` first; run
# test/scripts/install-deps.sh yourself when calling this script directly.
#
# Usage: test/scripts/bench.sh [loadbench flags...]
#   e.g. test/scripts/bench.sh -search-time 3s -retrieve-time 3s -rounds 1   (a quick look)
#        test/scripts/bench.sh -out /tmp/perf.md                            (leave the doc alone)
#        BENCH_GO=0 test/scripts/bench.sh -phases sources -out /tmp/perf.md (issue 3's phase alone, ~1 min)
#        BENCH_GO=0 test/scripts/bench.sh -phases cache -out /tmp/perf.md   (issue 4's phase alone, ~1.5 min)
#        test/scripts/bench.sh -phases gobench -out /tmp/perf.md            (the Go benchmarks alone, no server, ~4 min)
# BENCH_GO=0 skips the Go benchmarks (and so the figures of issue 11's item 8 and issue 12's
# item 7).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

work="$(mktemp -d "${TMPDIR:-/tmp}/nirproxy-bench-run-XXXXXX")"
driver_pid=""
cleanup() {
	if [[ -n "$driver_pid" ]] && kill -0 "$driver_pid" 2>/dev/null; then
		# loadbench stops its servers on SIGTERM.
		kill -TERM "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gobench="$work/gobench.txt"
: >"$gobench"
if [[ "${BENCH_GO:-1}" != "0" ]]; then
	echo "bench: Go benchmarks of the hot paths"
	# name=package:pattern; each pattern must match at least one benchmark.
	runs=(
		"./dicomweb/:^(BenchmarkSearchMergeSort|BenchmarkSearchAnswer|BenchmarkMetadataInstance)$:1s"
		"./dicomweb/media/:^BenchmarkPassThrough$:20x"
	)
	for r in "${runs[@]}"; do
		IFS=: read -r pkg pattern benchtime <<<"$r"
		out="$work/one.txt"
		go test -run '^$' -bench "$pattern" -benchmem -benchtime "$benchtime" -count 1 "$pkg" | tee "$out"
		if ! grep -q '^Benchmark' "$out"; then
			echo "bench: no benchmark of $pkg matched $pattern" >&2
			exit 1
		fi
		grep -E '^(Benchmark|goos|goarch|pkg|cpu)' "$out" >>"$gobench"
	done
	# rounds N BENCHTIME BENCHMARK CHECK: runs BENCHMARK of ./dicomweb/ N times, each run's
	# output needing a line matching CHECK, and hands its lines to loadbench, which takes the
	# median of the rounds.
	rounds() {
		local n="$1" benchtime="$2" benchmark="$3" check="$4" out="$work/one.txt" i
		for ((i = 1; i <= n; i++)); do
			go test -run '^$' -bench "^$benchmark\$" -benchmem -benchtime "$benchtime" -count 1 ./dicomweb/ | tee "$out"
			if ! grep -q "$check" "$out"; then
				echo "bench: $benchmark gave no line matching $check" >&2
				exit 1
			fi
			grep -E '^Benchmark' "$out" >>"$gobench"
		done
	}
	# Issue 11, item 8: the cached search with authentication off, on, on with a token not yet
	# verified, and off and on side by side (whose on/off ratio loadbench judges).
	auth_rounds="${BENCH_AUTH_ROUNDS:-5}"
	echo "bench: cached search with authentication on versus off ($auth_rounds rounds)"
	rounds "$auth_rounds" 1s BenchmarkCachedSearchAuth '^BenchmarkCachedSearchAuth/auth=off+on.*on/off'
	# Issue 12, item 7: searches and retrieves with the audit record off and on, side by side at
	# one client and at several (the cached search's on/off ratio at 128 clients, where both keep
	# the cores busy, is judged).
	audit_rounds="${BENCH_AUDIT_ROUNDS:-5}"
	echo "bench: searches and retrieves with the audit on versus off ($audit_rounds rounds)"
	rounds "$audit_rounds" 2s BenchmarkAudit '^BenchmarkAudit/search/clients=128.*on/off'
fi

echo "bench: load comparison against real servers (loadbench)"
go build -o "$work/loadbench" ./test/bench/cmd/loadbench
"$work/loadbench" -gobench "$gobench" "$@" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=""
exit "$status"
