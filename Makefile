# hits: a horizontally scaled page counter (app/) behind our own balancer (lb/).
# `make help` lists the targets.

SHELL := /bin/bash
GO    ?= go
BIN   ?= bin
export PATH := $(PATH):/usr/local/go/bin
# The app's version, shown on its page and sent as X-App-Version: the
# environment's, else .env's, else `git describe`, else "dev".
APP_VERSION ?= $(shell v=$$(sed -n 's/^APP_VERSION=//p' .env 2>/dev/null | tail -n1); \
	[ -n "$$v" ] && echo "$$v" || git describe --always --dirty 2>/dev/null || echo dev)
export APP_VERSION

.DEFAULT_GOAL := help
.PHONY: pebble help build test test-testkit test-h1 test-app test-lb lint fuzz bench bench-app bench-lb run up down rollout e2e e2e-rollout e2e-droplets images standins push swarm-test clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/app and bin/lb (static binaries)
	cd app && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(APP_VERSION)" -o ../$(BIN)/app .
	cd lb  && CGO_ENABLED=0 $(GO) build -trimpath -o ../$(BIN)/lb .

lint: ## gofmt and go vet over both programs, their shared HTTP/1.1 module and the test kit
	@out="$$(gofmt -l app lb h1 testkit e2e)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd app && $(GO) vet ./...
	cd lb  && $(GO) vet ./...
	cd h1  && $(GO) vet ./...
	cd testkit && $(GO) vet ./...
	cd e2e && $(GO) vet -tags e2e ./...

test: lint test-testkit test-h1 test-app test-lb ## vet, then every unit and integration test with -race (starts its own PostgreSQL and Redis)

test-testkit: ## the shared test kit's own tests (testkit/, joined by go.work)
	cd testkit && $(GO) test -race -count=1 ./...

test-h1: ## the shared HTTP/1.1 module's tests (h1/: wire format and the front server app and lb serve with)
	cd h1 && $(GO) test -race -count=1 ./...

test-app: ## the app's tests (real PostgreSQL and Redis on free loopback ports)
	cd app && $(GO) test -race -count=1 ./...

PEBBLE_VERSION := v2.10.3
pebble: ## build Let's Encrypt's test ACME server (pebble + challtestsrv) into out/tools for lb's ACME tests
	GOBIN=$(CURDIR)/out/tools/pebble-$(PEBBLE_VERSION) CGO_ENABLED=0 $(GO) install \
	  github.com/letsencrypt/pebble/v2/cmd/pebble@$(PEBBLE_VERSION) \
	  github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$(PEBBLE_VERSION)

test-lb: ## the balancer's tests (real HTTP backends on loopback)
	cd lb && $(GO) test -race -count=1 ./...

# Each target runs on its own (go test -fuzz takes one at a time); the seed
# corpora (*/testdata/fuzz) also run with every `make test`.
FUZZTIME ?= 30s
H1_FUZZ  := .:FuzzReadRequest .:FuzzReadResponse .:FuzzChunkedDecode .:FuzzChunkedEncode
LB_FUZZ  := internal/balancer:FuzzStickyCookie internal/tlsfront:FuzzRedirect
APP_FUZZ := internal/web:FuzzPageJSON

fuzz: ## fuzz lb's HTTP/1.1 parsers (against net/http's) and sticky cookies, and the app's JSON page (against encoding/json), FUZZTIME (30s) each
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz h1 $(H1_FUZZ)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz lb $(LB_FUZZ)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz app $(APP_FUZZ)

bench: bench-app bench-lb ## both benchmarks; prints the tables the README quotes

bench-app: ## app: hits/s and p50/p99 at 0, 1M and 10M stored hits, beside the original's SQL
	./scripts/bench-app

bench-lb: ## lb beside nginx and HAProxy over 4 loopback backends (wrk)
	./scripts/bench-lb


.PHONY: bench-scale
bench-scale: ## the whole system at N = 1,2,4,8 replicas: native, 0.1-CPU budgets, compose; table + docs/bench-scale.svg (ARGS='-modes native -d 3s' for a quick look)
	./scripts/bench-scale $(ARGS)

run: ## run one app locally against DATABASE_URL / REDIS_URL (from the environment or ./.env)
	cd app && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(APP_VERSION)" -o ../$(BIN)/app .
	./$(BIN)/app

up: ## docker compose up --scale app=4 (detached)
	./scripts/compose up -d --build --scale app=$${SCALE:-4}

rollout: ## replace every app replica with a new build, start-first, no failed request (ROLLOUT_TIMEOUT=120s)
	./scripts/rollout

down: ## stop the compose system and remove its volumes
	./scripts/compose down -v

e2e: ## end-to-end: real engine, stand-in images, real browser; also the rollout and droplet tests
	./scripts/e2e

e2e-rollout: ## end-to-end: make rollout under load, and a rollout that must fail (part of make e2e)
	E2E_RUN=TestRollout ./scripts/e2e

e2e-droplets: ## end-to-end: deploy/'s role files as separate servers on one network (part of make e2e)
	E2E_RUN=TestDroplets ./scripts/e2e

standins: ## build the local stand-in base images (no registry needed)
	./scripts/standin-images

images: ## build the app and lb images and print their sizes (budget: app 20 MB, lb 8 MB)
	./scripts/compose build
	@for i in "$${APP_IMAGE:-hits-app:latest}" "$${LB_IMAGE:-hits-lb:latest}"; do \
	  docker image inspect -f '{{.Size}}' "$$i" | awk -v i="$$i" '{ printf "  %-28s %5.1f MB\n", i, $$1 / 1e6 }'; \
	done

push: ## tag and push the images: make push REGISTRY=registry.example.com/you
	./scripts/push

swarm-test: ## deploy/swarm.stack.yml on a throwaway single-node swarm under load: scale 2→4→2, service update (leaves the engine as found)
	./scripts/swarm-test

clean: ## remove build output
	rm -rf $(BIN) out
