#!/usr/bin/env bash
# Starts real Orthanc servers (default two: ORA and ORB) on loopback ports, loaded with the
# integration data set, and keeps them running until interrupted (Ctrl-C). For trying the proxy
# by hand against real PACS:
#
#   test/scripts/orthancs.sh -config /tmp/nirproxy.yaml
#   # once it says ready, in another shell (paste the export lines it printed first):
#   go run ./cmd/nirproxy serve --config /tmp/nirproxy.yaml
#   curl -H "Authorization: Bearer $NIR_TOKEN" 'http://127.0.0.1:8080/dicom-web/studies?PatientID=9434765919'
#
# With -config it also starts the development token issuer that serve requires
# (test/devaccess/cmd/devaccess, loopback only, tokens valid while this script runs), and writes
# FILE whole: the servers as sources, the issuer as auth, its registry as onboarding. It prints
# every persona's token as an `export NIR_TOKEN...=` line (the clinician's is NIR_TOKEN).
#
# Options: -n N (2 to 9 servers), -config FILE, -listen ADDR (written into FILE), -empty.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Find -config FILE (or -config=FILE, --config ...); every other argument goes to testtrusts.
config=""
args=()
while (($# > 0)); do
	case "$1" in
	-config | --config)
		config="${2:?orthancs: -config needs a file}"
		shift 2
		;;
	-config=* | --config=*)
		config="${1#*=}"
		shift
		;;
	*)
		args+=("$1")
		shift
		;;
	esac
done
if [[ -z "$config" ]]; then
	exec go run ./test/orthanc/cmd/testtrusts "${args[@]}"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/nirproxy-orthancs-XXXXXX")"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$work/devaccess" ./test/devaccess/cmd/devaccess
go build -o "$work/testtrusts" ./test/orthanc/cmd/testtrusts

# waitready LOG PID WHAT: waits until the program PID logging to LOG says it is ready.
waitready() {
	until grep -q '^ready' "$1"; do
		if ! kill -0 "$2" 2>/dev/null; then
			cat "$1" >&2
			echo "orthancs: $3 stopped before it was ready" >&2
			exit 1
		fi
		sleep 0.2
	done
}

"$work/devaccess" -dir "$work/access" >"$work/devaccess.log" 2>&1 &
pids+=($!)
waitready "$work/devaccess.log" "${pids[-1]}" "the development token issuer"

echo "orthancs: starting the Orthanc servers and loading the data set (a minute or two)"
"$work/testtrusts" -config "$work/sources.yaml" "${args[@]}" >"$work/testtrusts.log" 2>&1 &
pids+=($!)
waitready "$work/testtrusts.log" "${pids[-1]}" "testtrusts"

# The servers as sources, then the issuer's sections; written whole, then moved into place.
cat "$work/sources.yaml" "$work/access/access.yaml" >"$config.tmp"
mv "$config.tmp" "$config"

grep -v -e '^ready' -e '^config ' "$work/testtrusts.log"
grep -v -e '^ready' -e '^config ' "$work/devaccess.log"
echo "config $config"
echo "ready: go run ./cmd/nirproxy serve --config $config; interrupt to stop"
wait -n "${pids[@]}" || true
echo "orthancs: a server or the token issuer stopped; stopping the rest" >&2
exit 1
