# firstboot — see README.md. `make demo` and `make test` first bring the
# machine to what they need (scripts/provision.sh: quick when nothing is
# missing); the other targets assume it.
GO        ?= go
# The machine image's Go, also under sudo (whose PATH lacks /usr/local/go/bin).
export PATH := $(PATH):/usr/local/go/bin
BIN       := bin/firstboot
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 5s

.PHONY: build test unit fuzz bench pgo demo lint provision clean

# Static binaries (no cgo): firstboot-guest runs inside the test guest, and a
# static firstboot runs on any lab host.
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/firstboot
	# No version stamp in the agent: it is inside the image, whose sha256 must
	# not change with every commit.
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "-s -w" -o bin/firstboot-guest ./cmd/firstboot-guest

# The README's test command: provisioning, lint, every test with the race
# detector (these include the real-VM and real-client tests, so run as root),
# then each fuzz target briefly. A sub-make, so the machine is ready before
# anything starts, also under make -j.
test: provision
	@$(MAKE) --no-print-directory lint unit fuzz

# Packages that drive the lab's one libvirtd run one at a time (-p 1) after the
# others, so one package's lab teardown never pulls the daemon from another's.
# cmd/firstboot includes the desktop tests (GUI runs under TCG: ~15 min on a
# quiet machine, twice that on a busy one).
LAB_PKGS := ./lab/libvirt ./cmd/firstboot
unit:
	$(GO) test -race -count=1 -timeout 40m $$($(GO) list ./... | grep -v -e '/lab/libvirt$$' -e '/cmd/firstboot$$')
	$(GO) test -race -count=1 -timeout 70m -p 1 $(LAB_PKGS)

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench: build
	scripts/bench.sh
	scripts/bench-campaign.sh

# Profile-guided optimisation: `go build` uses cmd/firstboot/default.pgo (about
# 5% faster analysis). Regenerate it after large analyzer changes, from the
# bench capture (make bench creates it) or BENCH_PCAP.
BENCH_PCAP ?= $(HOME)/.cache/firstboot-bench/trafficgen-100MB.pcap
pgo:
	@# Without the capture the benchmark skips and the profile would be empty.
	@test -s "$(BENCH_PCAP)" || { echo "pgo: $(BENCH_PCAP) missing: run make bench (as root) or set BENCH_PCAP" >&2; exit 1; }
	FIRSTBOOT_PROFILE_PCAP=$(BENCH_PCAP) $(GO) test -run '^$$' -bench CaptureWithOutputs \
	  -benchtime 10x -cpu 1 -cpuprofile cmd/firstboot/default.pgo -o /dev/null ./analyzer

# The main job on a fresh machine: provisioning, build, test guest, one run.
demo: provision
	@$(MAKE) --no-print-directory build
	scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# go.mod says which modules the code imports directly: keep it tidy.
	@$(GO) mod tidy -diff || { echo "lint: go.mod/go.sum are not tidy (diff above): run go mod tidy" >&2; exit 1; }

provision:
	@scripts/provision.sh

clean:
	rm -rf bin
