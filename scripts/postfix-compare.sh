#!/bin/sh
# Measure fanmail and Debian's Postfix side by side with fanmail-bench, on
# loopback, interleaving runs so both see the same machine load.
#
#   sudo scripts/postfix-compare.sh OUTDIR [RUNS]
#
# ALIAS_MASS_RUNS=N adds N rounds of the mass workload with Postfix also
# expanding a one-member alias per post, as fanmail expands a list: the
# like-for-like version of mass (slow on Postfix: about 5 minutes a run).
#
# WORLD_RUNS=N adds N rounds of one post delivered into the emulated
# Internet (fanmail-bench --world internet: throttling giants, greylisting,
# tarpits, black holes), WORLD_MEMBERS (100000) members over WORLD_DOMAINS
# (2000) domains, fanmail then Postfix, each run capped at WORLD_TIMEOUT
# (15m: Postfix retries deferred mail every 5 minutes and may not finish;
# the report says what it reached). WORLD_ARGS adds fanmail-bench flags
# to both, e.g. "--seed 2 --greylist-delay 5m". Reports are
# world-MEMBERS-{fanmail,postfix}-N.json; world-MEMBERS-postfix-N.queued
# counts the messages Postfix still had queued at the cutoff. For the
# world alone: sudo WORLD_RUNS=1 WORLD_MEMBERS=1000000 postfix-compare.sh OUT 0.
# Postfix's queue is
# emptied after each of its runs, since greylisted and black-holed mail
# would otherwise still be in it for the next.
#
# Needs root: it writes /etc/postfix/main.cf (Postfix installed with
# "No configuration"), turns chroot off in master.cf, starts Postfix on
# 127.0.0.1:25, and for each Postfix run points /etc/resolv.conf first at
# the tool's DNS server on 127.0.0.1:53 (which refuses names outside
# bench.test, so the usual server still answers everything else). All of
# /etc is restored on exit. Sinks listen on port 25 of 127.1.x.y for both
# targets, and fanmail uses the same DNS server, so both do the same work.
set -eu
out=${1:?usage: postfix-compare.sh OUTDIR [RUNS]}
runs=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
save=$(mktemp -d)
cp -a /etc/resolv.conf /etc/postfix/master.cf "$save/"
[ -e /etc/postfix/main.cf ] && cp -a /etc/postfix/main.cf "$save/"
restore() {
	postfix stop >/dev/null 2>&1 || true
	cat "$save/resolv.conf" >/etc/resolv.conf
	cp -a "$save/master.cf" /etc/postfix/master.cf
	if [ -e "$save/main.cf" ]; then cp -a "$save/main.cf" /etc/postfix/main.cf; else rm -f /etc/postfix/main.cf; fi
	rm -f /etc/postfix/bench-aliases /etc/postfix/bench-aliases.db /etc/postfix/*.members
}
trap restore EXIT INT TERM
resolver=$(awk '$1 == "nameserver" { print $2; exit }' "$save/resolv.conf")

(cd "$here" && go build -o "$out/fanmail" ./cmd/fanmail && go build -o "$out/fanmail-bench" ./cmd/fanmail-bench)

cat >/etc/postfix/main.cf <<'CF'
# Written by fanmail's scripts/postfix-compare.sh; removed afterwards.
compatibility_level = 3.6
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination = lists.bench.test, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps = hash:/etc/postfix/bench-aliases
alias_database = hash:/etc/postfix/bench-aliases
maillog_file = /var/log/postfix-bench.log
smtputf8_enable = no
biff = no
CF
# POSTFIX_MAIN adds main.cf lines, e.g. for a 1,000,000-member alias,
# whose expanded queue file (recipients included) is far past the
# default message_size_limit of 10,240,000 bytes:
#   POSTFIX_MAIN="message_size_limit = 1073741824
#   mailbox_size_limit = 0"
[ -n "${POSTFIX_MAIN:-}" ] && printf '%s\n' "$POSTFIX_MAIN" >>/etc/postfix/main.cf
postconf -F '*/*/chroot = n'
printf 'postmaster: root\n' >/etc/postfix/bench-aliases
postalias /etc/postfix/bench-aliases
postfix stop >/dev/null 2>&1 || true
postfix start
sleep 2

common="--sink-port 25 --dns 127.0.0.1:53 --json --quiet"
pf="--target 127.0.0.1:25 --target-pidfile /var/spool/postfix/pid/master.pid"
with_resolver() {
	printf 'nameserver 127.0.0.1\nnameserver %s\noptions timeout:1\n' "$resolver" >/etc/resolv.conf
	"$@" || true
	cat "$save/resolv.conf" >/etc/resolv.conf
}
i=1
while [ "$i" -le "$runs" ]; do
	"$out/fanmail-bench" fanout --members 100000 --domains 1000 $common --fanmail-bin "$out/fanmail" >"$out/fanout-fanmail-$i.json" || true
	with_resolver "$out/fanmail-bench" fanout --members 100000 --domains 1000 $common $pf \
		--aliases /etc/postfix/bench-aliases --prepare-cmd "postalias /etc/postfix/bench-aliases" >"$out/fanout-postfix-$i.json"
	"$out/fanmail-bench" mass --messages 20000 --clients 20 --domains 1000 $common --fanmail-bin "$out/fanmail" >"$out/mass-fanmail-$i.json" || true
	with_resolver "$out/fanmail-bench" mass --messages 20000 --clients 20 --domains 1000 --direct $common $pf >"$out/mass-postfix-$i.json"
	i=$((i + 1))
done
i=1
while [ "$i" -le "${ALIAS_MASS_RUNS:-0}" ]; do
	"$out/fanmail-bench" mass --messages 20000 --clients 20 --domains 1000 $common --fanmail-bin "$out/fanmail" >"$out/mass-aliases-fanmail-$i.json" || true
	with_resolver "$out/fanmail-bench" mass --messages 20000 --clients 20 --domains 1000 $common $pf \
		--aliases /etc/postfix/bench-aliases --prepare-cmd "postalias /etc/postfix/bench-aliases" >"$out/mass-aliases-postfix-$i.json"
	i=$((i + 1))
done
wm=${WORLD_MEMBERS:-100000}
world="--world internet --members $wm --domains ${WORLD_DOMAINS:-2000} --timeout ${WORLD_TIMEOUT:-15m} ${WORLD_ARGS:-}"
# Reports are named by member count, so runs at 100,000 and 1,000,000
# members can share OUTDIR.
i=1
while [ "$i" -le "${WORLD_RUNS:-0}" ]; do
	"$out/fanmail-bench" fanout $world $common --fanmail-bin "$out/fanmail" >"$out/world-$wm-fanmail-$i.json" || true
	with_resolver "$out/fanmail-bench" fanout $world $common $pf \
		--aliases /etc/postfix/bench-aliases --prepare-cmd "postalias /etc/postfix/bench-aliases" >"$out/world-$wm-postfix-$i.json"
	# What Postfix still held when the run was cut off, for the report.
	postqueue -j 2>/dev/null | wc -l >"$out/world-$wm-postfix-$i.queued" || true
	postsuper -d ALL >/dev/null 2>&1 || true
	i=$((i + 1))
done
