#!/bin/sh
# The developer tasks, shared by the Makefile, .ci/run and the README:
#
#   scripts/tasks.sh deps    install the Debian packages some tests use
#                            (they skip without them, naming the package)
#   scripts/tasks.sh test    the README's test command: go test -race ./...
#   scripts/tasks.sh check   gofmt, go vet and staticcheck (pinned below)
#   scripts/tasks.sh fuzz    every fuzz target for FUZZTIME each (default 30s)
#   scripts/tasks.sh bench   the Go benchmarks BENCHMARKS.md quotes, COUNT
#                            runs each (default 3); see BENCHMARKS.md for
#                            fanmail-bench
#   scripts/tasks.sh man     regenerate contrib/fanmail.8 from the command
#                            definitions (a test fails while it is stale)
#
# Everything comes through the go command and the module proxy; staticcheck
# runs with go run at a fixed version, so nothing needs installing.
set -eu
cd "$(dirname "$0")/.."

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Debian packages the tests use when present: python3-dkim verifies
# DKIM signatures independently of fanmail's own code; swaks posts over
# STARTTLS as a real client would (with libnet-ssleay-perl, its TLS);
# systemd brings systemd-analyze, which
# verifies contrib/fanmail.service (nothing runs systemd as init);
# postgresql brings initdb and pg_ctl, with which the tests of the
# shared list store start a throwaway cluster (internal/pgtest; as root
# they run it as the user postgres, which the package creates).
DEBS="python3-dkim swaks libnet-ssleay-perl systemd postgresql"

task=${1:-}
case $task in
deps)
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $DEBS
	;;
test)
	go test -race ./...
	;;
check)
	unformatted=$(gofmt -l .)
	if [ -n "$unformatted" ]; then
		echo "gofmt: these files need gofmt -w:" >&2
		echo "$unformatted" >&2
		exit 1
	fi
	go vet ./...
	go run "$STATICCHECK" ./...
	;;
fuzz)
	# Each Fuzz function of each package, one at a time (go test takes
	# one -fuzz target per run).
	grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
		pkg=./$(dirname "${file#./}")
		for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
			echo "fuzz $pkg $name"
			go test -run '^$' -fuzz "^$name\$" -fuzztime "${FUZZTIME:-30s}" "$pkg"
		done
	done
	;;
bench)
	count=${COUNT:-3}
	go test -run '^$' -bench 'Fdatasync|EnqueueParallel' -count "$count" ./queuegroups/
	go test -run '^$' -bench 'AcceptSmallPosts' -benchtime 5000x -count "$count" ./cmd/fanmail/
	go test -run '^$' -bench 'Fanout10k' -benchtime 1x -count "$count" ./cmd/fanmail/
	go test -run '^$' -bench . -benchtime 3x ./lists/
	go test -run '^$' -bench . -count "$count" ./unsubscribe/
	;;
man)
	go run ./cmd/fanmail man >contrib/fanmail.8
	;;
*)
	echo "usage: scripts/tasks.sh deps|test|check|fuzz|bench|man" >&2
	exit 2
	;;
esac
