# jetflow — durable workflows and sagas on NATS JetStream.
# `make help` lists the targets.

GO      ?= go
BIN     := bin/jetflow
PKGS    := ./...
DEMO    ?= 50
# LOG_LEVEL of `make run`: warn keeps the progress lines in view; info or
# debug shows every step.
LOG_LEVEL ?= warn
FUZZTIME ?= 1m
# FUZZ lists every fuzz target, package:Target: one per decoder of input
# from outside the process (-fuzz takes one target per run).
FUZZ    := ./schema/:FuzzDecode ./schema/:FuzzDecodeToJSON \
	./orchestrator/fulfillment/:FuzzDecodeOrder ./orchestrator/:FuzzDecodeSignalPayload \
	./participants/:FuzzDecodeCommand

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST) | \
		sed -e 's/$$(DEMO)/$(DEMO)/g' -e 's/$$(LOG_LEVEL)/$(LOG_LEVEL)/g'
	@echo "Variables: DEMO=$(DEMO) LOG_LEVEL=$(LOG_LEVEL) FUZZTIME=$(FUZZTIME)"

.PHONY: build
build: ## build bin/jetflow
	$(GO) build -o $(BIN) ./cmd/jetflow

.PHONY: run
run: build ## run jetflow: embedded NATS, orchestrator, participants and $(DEMO) demo orders; logs at $(LOG_LEVEL)
	./$(BIN) dev --demo $(DEMO) --log-level $(LOG_LEVEL)

.PHONY: run-auth
run-auth: build ## make run, every part on its own role's nkey under the permissions of deploy/nats-server.conf
	./$(BIN) dev --auth --demo $(DEMO) --log-level $(LOG_LEVEL)

.PHONY: auth-config
auth-config: ## regenerate deploy/nats-server.conf from internal/natsauth
	$(GO) run ./cmd/jetflow auth config --out deploy

.PHONY: test
# The three parts run side by side: the end-to-end tests wait on servers,
# timers and backoffs far more than they compute (a whole make test keeps
# about one of two cores busy on average), so the partitioned selection,
# the examples and the fuzz targets fill the idle core.
test: ## run every test with the race detector (real embedded nats-server), a selection again over a partitioned history, the examples module's, then each fuzz target for 5000 inputs
	@$(MAKE) --no-print-directory -j3 test-packages test-partitioned-selection test-examples-fuzz

# -p 3: the three end-to-end packages (cmd/jetflow, test, test/chaos) wait on
# servers and timers far more than they compute, so on 2 cores they overlap.
.PHONY: test-packages test-partitioned-selection test-examples-fuzz
test-packages:
	$(GO) test -race -count=1 -p 3 -timeout 15m $(PKGS)
test-partitioned-selection:
	$(PARTITIONED) $(GO) test -race -count=1 -timeout 10m -run '^($(PARTITIONED_TESTS))$$' ./test/
test-examples-fuzz:
	cd examples && $(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

# The end-to-end tests run against a history partitioned over four streams
# (docs/ARCHITECTURE.md, "Partitioned history"): a test binary holds one
# layout, so they run again in a binary of their own. make test runs this
# selection; make test-partitioned runs them all.
PARTITIONED := JETFLOW_TEST_HISTORY_PARTITIONS=4
PARTITIONED_TESTS := TestPartitionedHistory|TestPartitionedHistoryIsRefusedOverASingleStream|TestAuthPipeline|TestAuthParticipantCannotActAsAnother|TestAuthPushConsumerCannotWriteHistory|TestAuthContinueAsNew|TestAuthQueriesAndUpdates|TestArchivalRemovesTheSignalsItRecorded|TestUnknownCommandAndStrayResult|TestJunkOnAFiredSubject|TestCancelledInFlightStepIsSettled|TestVerbsWithRolePermissions

.PHONY: test-partitioned
test-partitioned: ## run the end-to-end tests of ./test/ against a history partitioned over four streams
	$(PARTITIONED) $(GO) test -race -count=1 -timeout 20m ./test/

# A run that ends on "context deadline exceeded" without writing a failing
# input is Go's fuzz coordinator racing its own -fuzztime deadline
# (go.dev/issue/75804, fixed in Go 1.27), not a finding: it is reported and
# passed over. Counts (FUZZTIME=5000x) have no deadline to race.
.PHONY: fuzz
fuzz: ## fuzz every decoder of outside input, each for FUZZTIME: make fuzz [FUZZTIME=1m | FUZZTIME=100000x]
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for f in $(FUZZ); do pkg=$${f%%:*}; fn=$${f##*:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$fn\$$' -fuzztime $(FUZZTIME) $$pkg"; \
		rc=0; $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1 || rc=$$?; \
		tail -n 3 $$out; \
		if [ $$rc -ne 0 ]; then \
			if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
				echo "  (go.dev/issue/75804: the coordinator's deadline race, no failing input)"; \
			else cat $$out; exit 1; fi; \
		fi; \
	done

.PHONY: bench
bench: ## measure: 5000 reference orders end to end (docs/BENCHMARKS.md), then the Go micro-benchmarks
	$(GO) run ./cmd/jetflow bench --orders 5000
	$(GO) test -run '^$$' -bench . -benchmem ./orchestrator/workflow/ ./streams/ ./internal/bench/

.PHONY: lint
lint: ## gofmt, go vet, and go mod tidy must change nothing
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	cd examples && $(GO) vet ./... && $(GO) mod tidy -diff

.PHONY: clean
clean: ## remove the binary and the data of `make run`
	rm -rf bin .jetflow

.PHONY: chaos
chaos: ## fault-injection soak, prints a table: make chaos DURATION=30m [SEED=n] [CLUSTER=1] [FAULTS=a,b] [RATE=20]
	JETFLOW_SOAK_DURATION=$(or $(DURATION),30m) JETFLOW_SOAK_SEED=$(SEED) JETFLOW_SOAK_CLUSTER=$(CLUSTER) \
	JETFLOW_SOAK_FAULTS=$(FAULTS) JETFLOW_SOAK_RATE=$(RATE) \
		$(GO) test -count=1 -v -timeout 0 -run '^TestSoak$$' ./test/chaos/
