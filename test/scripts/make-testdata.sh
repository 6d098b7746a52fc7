#!/usr/bin/env bash
# Builds the integration data set: pydicom's sample DICOM files (Debian python3-pydicom),
# relabelled with dcmtk's dcmodify so that patient 9434765919 has studies at two test trusts
# (ORA, ORB), one of them held by both with different instance sets, and patient 9449306052 has
# studies at ORA only. Prints the path of manifest.json, which names every UID and which file
# goes to which Orthanc. Builds are cached (keyed by the design and the source files) under
# $NIRPROXY_TESTDATA_DIR, default ${TMPDIR:-/tmp}/nirproxy-testdata; the Go tests build it
# themselves, so this script is for looking at the data or loading servers by hand.
#
# Usage: test/scripts/make-testdata.sh [-root DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./test/orthanc/cmd/maketestdata "$@"
