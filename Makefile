# cotstream — two commands: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
CERTS_DIR ?= certs
TSX := node_modules/.bin/tsx
# apt-get needs root: use sudo when we are not root and it exists
SUDO := $(shell [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null && echo sudo)

.PHONY: run test deps system-deps dev-certs typecheck bench bench-parser bench-proto bench-redis clean-certs wasm wasm-check

# npm ci only when package-lock.json changed since the last install.
node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed

# The scan core (protocol/wasm/scan.ts, AssemblyScript) compiles to protocol/wasm/scan.wasm, which is
# committed so that every entry point (bin/cotstream.js, npm start, a bare mocha) finds it;
# asc output is deterministic, and `make test` checks the committed file is exactly what the
# source builds to (protocol/README.md "WebAssembly core").
WASM := protocol/wasm/scan.wasm
WASM_SRC := protocol/wasm/scan.ts protocol/wasm/asconfig.json
$(WASM): $(WASM_SRC) node_modules/.installed
	node_modules/.bin/asc --config protocol/wasm/asconfig.json

wasm: $(WASM)

wasm-check: deps
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	node_modules/.bin/asc --config protocol/wasm/asconfig.json -o "$$tmp/scan.wasm" && \
	cmp -s "$$tmp/scan.wasm" $(WASM) || { echo "$(WASM) is not what protocol/wasm/scan.ts builds to: run 'make wasm' and commit it"; exit 1; }

# Debian packages the test-suite drives for real: redis-server (scale-out tests), prometheus
# (scrapes a live server; its promtool checks /metrics and the alert rules) and haproxy (the TCP
# load balancer in front of nodes, sending PROXY protocol headers). apt-get update runs only when
# something is missing. (haproxy lives in /usr/sbin, outside a normal user's PATH.)
SYSTEM_PKGS := redis-server:redis-server prometheus:prometheus promtool:prometheus haproxy:haproxy
system-deps:
	@export PATH="$$PATH:/usr/sbin:/sbin"; missing=""; for pair in $(SYSTEM_PKGS); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null || case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Dev PKI: CA + server certificate + two client certificates, only when missing. The dev client
# passwords are kept in certs/clients/NAME.txt (mode 0600) so a developer can find them again.
dev-certs: deps
	@if [ ! -f $(CERTS_DIR)/ca.pem ]; then $(TSX) src/cli.ts certs init --certs-dir $(CERTS_DIR); fi
	@for c in alpha bravo; do \
	  if [ ! -f $(CERTS_DIR)/clients/$$c.p12 ]; then \
	    (umask 077; mkdir -p $(CERTS_DIR)/clients; $(TSX) src/cli.ts certs client $$c --certs-dir $(CERTS_DIR) --package | tee $(CERTS_DIR)/clients/$$c.txt) || exit 1; \
	    echo "(dev PKI: make run keeps this in $(CERTS_DIR)/clients/$$c.txt, mode 0600)"; \
	  fi; \
	done

run: deps $(WASM) dev-certs
	$(TSX) src/cli.ts start --certs-dir $(CERTS_DIR)

typecheck: deps
	node_modules/.bin/tsc --noEmit -p tsconfig.typecheck.json

test: deps system-deps wasm-check
	node_modules/.bin/tsc --noEmit -p tsconfig.typecheck.json
	node_modules/.bin/mocha

bench-parser: deps $(WASM)
	$(TSX) bench/parser.ts $(BENCH_ARGS)

# TAK protocol (protobuf) vs XML through the whole per-event path, no sockets (bench/takproto.ts)
bench-proto: deps $(WASM)
	$(TSX) bench/takproto.ts $(BENCH_ARGS)

bench: deps $(WASM)
	$(TSX) bench/run.ts $(BENCH_ARGS)

# two nodes on Redis vs one node in memory, same load, same run (needs redis-server)
bench-redis: deps system-deps $(WASM)
	$(TSX) bench/redis.ts $(BENCH_ARGS)
