#!/usr/bin/env bash
# Starts real Orthanc servers (default two: ORA and ORB) on loopback ports, loaded with the
# integration data set, writes a nirproxy configuration naming them, and keeps them running
# until interrupted (Ctrl-C). For trying the proxy by hand against real PACS:
#
#   test/scripts/orthancs.sh -config /tmp/nirproxy.yaml &
#   go run ./cmd/nirproxy serve --config /tmp/nirproxy.yaml
#
# Options: -n N (2 to 9 servers), -config FILE, -listen ADDR (written into FILE), -empty.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./test/orthanc/cmd/testtrusts "$@"
