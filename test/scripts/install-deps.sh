#!/usr/bin/env bash
# Installs what the real-server tests need, and nothing when it is all there already:
#   Debian packages: orthanc orthanc-dicomweb orthanc-gdcm (real PACS), python3-pydicom (sample
#   DICOM files), dcmtk (dcmodify), redis-server, nginx, wrk, curl (the demo's printed commands),
#   rsyslog and rsyslog-gnutls (the ATNA syslog receiver over TLS, test/rsyslogserver);
#   npm packages of test/conformance (dicomweb-client, xhr2), from its package-lock.json.
#
# apt-get update runs only when a missing package cannot be found. If another apt or dpkg is
# running (say an install started at boot), this waits for its lock.
#
# With NIRPROXY_REQUIRE_REAL_SERVERS=1 (which .ci/run sets), or its alias CI=true, any failure
# exits non-zero; otherwise failures are reported loudly and the script exits 0, so that
# `make test` goes on and the real-server tests skip with a message (listed at the end of the
# run's summary).
#
# Usage: test/scripts/install-deps.sh
set -uo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
packages=(orthanc orthanc-dicomweb orthanc-gdcm python3-pydicom dcmtk redis-server nginx wrk curl rsyslog
	rsyslog-gnutls)
lock_wait=600 # seconds to wait for another apt or dpkg to finish

# strict_reason names the setting that makes a failure fatal, or prints nothing: the same rule
# as the Go tests' orthanc.Strict.
strict_reason() {
	if [[ "${NIRPROXY_REQUIRE_REAL_SERVERS:-}" == "1" ]]; then
		echo "NIRPROXY_REQUIRE_REAL_SERVERS=1"
	elif [[ "${CI:-}" == "true" ]]; then
		echo "CI=true"
	fi
}

fail() {
	echo "install-deps: ERROR: $*" >&2
	local why
	why=$(strict_reason)
	if [[ -n "$why" ]]; then
		echo "install-deps: $why, so this is fatal." >&2
		exit 1
	fi
	echo "install-deps: continuing; tests that need this will be skipped" \
		"(they fail when NIRPROXY_REQUIRE_REAL_SERVERS=1)." >&2
	failed=1
}
failed=0

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo -n "$@"
	else
		echo "install-deps: not root and no sudo to run: $*" >&2
		return 1
	fi
}

# apt_run runs apt-get with the given arguments, waiting for other apt or dpkg processes.
apt_run() {
	local deadline=$((SECONDS + lock_wait)) out rc
	while :; do
		out=$(as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
			-o DPkg::Lock::Timeout="$lock_wait" "$@" 2>&1)
		rc=$?
		if [[ $rc -eq 0 ]]; then
			return 0
		fi
		if grep -qiE 'could not get lock|unable to lock|is another process using it' <<<"$out" &&
			((SECONDS < deadline)); then
			echo "install-deps: waiting for another apt/dpkg to finish..." >&2
			sleep 5
			continue
		fi
		echo "$out" | tail -n 20 >&2
		return "$rc"
	done
}

missing_packages() {
	local p status
	for p in "${packages[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
		[[ "$status" == "installed" ]] || echo "$p"
	done
}

install_debian_packages() {
	local missing
	mapfile -t missing < <(missing_packages)
	if [[ ${#missing[@]} -eq 0 ]]; then
		echo "install-deps: Debian packages present: ${packages[*]}"
		return 0
	fi
	if ! command -v apt-get >/dev/null; then
		fail "apt-get not found; install by hand: ${missing[*]}"
		return
	fi
	echo "install-deps: installing ${missing[*]}"
	# Update the package lists only when apt does not know a missing package (or knows no
	# installable version of it).
	local p need_update=0
	for p in "${missing[@]}"; do
		if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
			need_update=1
		fi
	done
	if [[ $need_update -eq 1 ]]; then
		echo "install-deps: apt-get update"
		apt_run update || {
			fail "apt-get update failed"
			return
		}
	fi
	if ! apt_run install --no-install-recommends "${missing[@]}"; then
		# The lists may be stale (a version removed from the mirror): update once and retry.
		echo "install-deps: install failed; updating the package lists and retrying" >&2
		apt_run update && apt_run install --no-install-recommends "${missing[@]}" || {
			fail "apt-get install ${missing[*]} failed"
			return
		}
	fi
	mapfile -t missing < <(missing_packages)
	[[ ${#missing[@]} -eq 0 ]] || fail "still missing after install: ${missing[*]}"
}

check_files() {
	local f
	for f in /usr/sbin/Orthanc \
		/usr/share/orthanc/plugins/libOrthancDicomWeb.so \
		/usr/share/orthanc/plugins/libOrthancGdcm.so \
		/usr/bin/dcmodify \
		/usr/sbin/rsyslogd \
		/usr/lib/python3/dist-packages/pydicom/data/test_files/CT_small.dcm; do
		[[ -e "$f" ]] || fail "expected $f after installing the Debian packages"
	done
	# rsyslog's TLS driver lives under the architecture's library directory.
	compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null ||
		fail "expected rsyslog's gtls driver (lmnsd_gtls.so) after installing rsyslog-gnutls"
}

install_npm_packages() {
	local dir="$repo/test/conformance"
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		echo "install-deps: node/npm missing; installing Debian's nodejs and npm" >&2
		apt_run install --no-install-recommends nodejs npm || {
			fail "node and npm are missing and could not be installed"
			return
		}
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
	if ((major < 18)); then
		fail "node $(node --version 2>/dev/null) is too old for node --test (need 18 or later; 20 expected)"
		return
	fi
	# After a successful npm ci, node_modules/.installed-lock.sha256 records the hash of the
	# lock file it installed; a match (and both packages present) means nothing to do.
	local want stamp="$dir/node_modules/.installed-lock.sha256"
	want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" &&
		-f "$dir/node_modules/dicomweb-client/package.json" &&
		-f "$dir/node_modules/xhr2/package.json" ]]; then
		echo "install-deps: npm packages present in test/conformance"
		return 0
	fi
	echo "install-deps: npm ci in test/conformance"
	if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
		echo "$want" >"$stamp"
	else
		fail "npm ci in $dir failed"
	fi
}

install_debian_packages
check_files
install_npm_packages

if [[ $failed -ne 0 ]]; then
	echo "install-deps: finished WITH ERRORS (see above)" >&2
	exit 0
fi
echo "install-deps: all dependencies present"
