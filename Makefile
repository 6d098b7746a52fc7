# nirproxy: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin/nirproxy
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Run everything under the race detector except the benchmarks.
GOTEST    := $(GO) test -race -count=1
# SUMMARY runs `go test -json` and prints the progress, every skipped test with its reason,
# and a closing line "tests: N passed, N failed, N skipped" (test/testsummary).
SUMMARY   := bin/testsummary

.PHONY: run build test unit integration deps lint bench fuzz clean $(SUMMARY)

## run: the demo: three sample trusts in one process and the proxy on 127.0.0.1:8080.
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/nirproxy demo

## build: the nirproxy binary in bin/.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nirproxy

## deps: install what the real-server tests need (Orthanc, dcmtk, pydicom's files, Node packages).
deps:
	bash test/scripts/install-deps.sh

## test: lint, unit tests, then integration and conformance tests against real Orthanc servers;
## ends with the skipped tests and why, and "tests: N passed, N failed, N skipped"; then every
## fuzz test briefly (FUZZTIME_CI each).
test: deps lint $(SUMMARY)
	$(SUMMARY) $(GOTEST) -json ./...
	FUZZTIME=$(FUZZTIME_CI) bash test/scripts/fuzz.sh

## unit: the fast tests only (no real servers), with the same summary.
unit: $(SUMMARY)
	$(SUMMARY) $(GOTEST) -json $$($(GO) list ./... | grep -v /test/) ./test/testsummary

# The summary program is rebuilt every time (go build's cache makes that quick).
$(SUMMARY):
	$(GO) build -o $(SUMMARY) ./test/testsummary

## lint: gofmt and go vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: every native Go fuzz test for FUZZTIME each (default 10m); report in test/.cache/fuzz-report.md.
FUZZTIME    ?= 10m
FUZZTIME_CI ?= 5s
fuzz:
	FUZZTIME=$(FUZZTIME) bash test/scripts/fuzz.sh

## bench: Go benchmarks and the load comparison; figures go to docs/performance.md.
bench: deps
	bash test/scripts/bench.sh

clean:
	rm -rf bin test/.cache
