# walhook: the two commands a newcomer needs are `make run` (the embedded demo) and `make test`.
GO        ?= go
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 25m
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# run: where `make run` puts the binary it runs, and flags for `walhook dev` (e.g. DEVFLAGS=--fresh).
BIN       ?= bin/walhook
DEVFLAGS  ?=

# The packages whose tests talk to Kafka: `make test-kafka` runs them against Apache Kafka.
KAFKA_PKGS ?= ./avro ./cdc ./pipeline ./sinks/... ./internal/status ./internal/kafkaconn ./internal/api ./cmd/walhook

.PHONY: run run-kafka test test-kafka bench chaos e2e lint build clean

## run: the embedded demo — PostgreSQL, a Kafka-protocol broker and every stage in one process.
## It builds the binary and execs it rather than `go run`, which exits 1 on Ctrl-C whatever the
## program does, so that Ctrl-C ends `make run` cleanly (exit 0).
run:
	@echo "building $(BIN) (the first build compiles walhook and its dependencies, a minute or two; later ones reuse Go's build cache)"
	@$(GO) build -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/walhook
	@exec $(BIN) dev $(DEVFLAGS)

## run-kafka: the embedded demo on a real Apache Kafka node instead of kfake (needs Java 17+ and Maven; keeps
## its data in .walhook-apache, so it does not mix with `make run`'s).
run-kafka:
	@$(GO) build -ldflags '-X main.version=$(VERSION)' -o $(BIN) ./cmd/walhook
	@exec $(BIN) dev --kafka apache --dir .walhook-apache $(DEVFLAGS)

## test: the whole hermetic test suite, as CI runs it.
test:
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-kafka: the Kafka-facing suites against Apache Kafka (KRaft, from Maven Central: needs Java 17+ and Maven),
## one node per test binary; then the whole-system test on three nodes with broker kills and pauses, on the
## classic and on the KIP-848 consumer-group protocol.
test-kafka:
	WALHOOK_TEST_KAFKA=apache $(GO) test $(TESTFLAGS) $(KAFKA_PKGS)
	WALHOOK_TEST_KAFKA=apache3 WALHOOK_E2E_KILL=all WALHOOK_E2E_DURATION=$${WALHOOK_E2E_DURATION:-45s} $(GO) test $(TESTFLAGS) -v -run '^TestWholeSystem$$' ./internal/e2e
	WALHOOK_TEST_KAFKA=apache3 WALHOOK_E2E_GROUP_PROTOCOL=consumer WALHOOK_E2E_KILL=all WALHOOK_E2E_DURATION=$${WALHOOK_E2E_DURATION:-45s} $(GO) test $(TESTFLAGS) -v -run '^TestWholeSystem$$' ./internal/e2e

## bench: throughput, latency and memory figures against baselines measured in the same run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)
	$(GO) run ./internal/bench/cdcbench -rows 1000000 -runs 2
	$(GO) run ./internal/bench/refbench -sessions 5000000 $(if $(REFBENCH_BASELINE),-alt $(REFBENCH_BASELINE))

## chaos: long kill-and-restart runs, kept out of `make test`.
chaos:
	WALHOOK_CHAOS=1 $(GO) test -count=1 -timeout 60m -run 'Chaos|Kill|RootAtomic' $(PKGS)
	$(GO) test -count=10 -timeout 30m -run 'TestSnapshot' ./cdc

## e2e: the whole-system proof: every stage a process, seeded workload, kill-and-restart nemesis on all stages and,
## on the default three-node Apache Kafka cluster, on the brokers (WALHOOK_TEST_KAFKA=kfake runs it on kfake).
e2e:
	WALHOOK_TEST_KAFKA=$${WALHOOK_TEST_KAFKA:-apache3} WALHOOK_E2E_DURATION=$${WALHOOK_E2E_DURATION:-5m} WALHOOK_E2E_KILL=$${WALHOOK_E2E_KILL:-all} $(GO) test -count=1 -timeout 40m -v -run '^TestWholeSystem$$' ./internal/e2e

## lint: formatting and vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## build: a static binary in bin/walhook.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags nodev -ldflags '$(LDFLAGS)' -o bin/walhook ./cmd/walhook

clean:
	rm -rf bin .walhook
