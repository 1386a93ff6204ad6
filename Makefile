# jetflow — durable workflows and sagas on NATS JetStream.
# `make help` lists the targets.

GO      ?= go
BIN     := bin/jetflow
PKGS    := ./...
DEMO    ?= 50

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/jetflow
	$(GO) build -o $(BIN) ./cmd/jetflow

.PHONY: run
run: build ## run jetflow: embedded NATS, orchestrator, participants and $(DEMO) demo orders
	./$(BIN) dev --demo $(DEMO)

.PHONY: run-auth
run-auth: build ## make run, every part on its own role's nkey under the permissions of deploy/nats-server.conf
	./$(BIN) dev --auth --demo $(DEMO)

.PHONY: auth-config
auth-config: ## regenerate deploy/nats-server.conf from internal/natsauth
	$(GO) run ./cmd/jetflow auth config --out deploy

.PHONY: test
test: ## run every test with the race detector (real embedded nats-server)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: bench
bench: ## measure: 5000 reference orders end to end (docs/BENCHMARKS.md), then the Go micro-benchmarks
	$(GO) run ./cmd/jetflow bench --orders 5000
	$(GO) test -run '^$$' -bench . -benchmem ./orchestrator/workflow/ ./streams/ ./internal/bench/

.PHONY: lint
lint: ## gofmt, go vet, and go mod tidy must change nothing
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff

.PHONY: clean
clean: ## remove the binary and the data of `make run`
	rm -rf bin .jetflow

.PHONY: chaos
chaos: ## fault-injection soak, prints a table: make chaos DURATION=30m [SEED=n] [CLUSTER=1] [FAULTS=a,b] [RATE=20]
	JETFLOW_SOAK_DURATION=$(or $(DURATION),30m) JETFLOW_SOAK_SEED=$(SEED) JETFLOW_SOAK_CLUSTER=$(CLUSTER) \
	JETFLOW_SOAK_FAULTS=$(FAULTS) JETFLOW_SOAK_RATE=$(RATE) \
		$(GO) test -count=1 -v -timeout 0 -run '^TestSoak$$' ./test/chaos/
