# nirproxy: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin/nirproxy
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Run everything under the race detector except the benchmarks.
GOTEST    := $(GO) test -race -count=1

.PHONY: run build test unit integration deps lint bench clean

## run: the demo: three sample trusts in one process and the proxy on 127.0.0.1:8080.
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/nirproxy demo

## build: the nirproxy binary in bin/.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nirproxy

## deps: install what the real-server tests need (Orthanc, dcmtk, pydicom's files, Node packages).
deps:
	bash test/scripts/install-deps.sh

## test: lint, unit tests, then integration and conformance tests against real Orthanc servers.
test: deps lint
	$(GOTEST) ./...

## unit: the fast tests only (no real servers).
unit:
	$(GOTEST) $$($(GO) list ./... | grep -v /test/)

## lint: gofmt and go vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: Go benchmarks and the load comparison; figures go to docs/performance.md.
bench: deps
	bash test/scripts/bench.sh

clean:
	rm -rf bin test/.cache
