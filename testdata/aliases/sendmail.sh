#!/bin/sh
# Regenerates NN-name.sendmail from the real sendmail: for each NN-name.in
# (an aliases file whose first line is "# expand: ADDRESS..."), build the
# alias database with -bi and print `sendmail -bv ADDRESS...`.
# Usage: SENDMAIL_ROOT=/path/to/unpacked/debs sh sendmail.sh   (run as root,
# from this directory, with m4 installed; see README.md for how to unpack
# sendmail-bin and sendmail-cf).
set -eu
root=${SENDMAIL_ROOT:?set SENDMAIL_ROOT to the dpkg -x directory}
sm=$root/usr/libexec/sendmail/sendmail
export LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu
here=$(pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/q" "$dir/host_status"
printf 'hosts files\naliases files\npasswd files\n' > "$dir/service.switch"
m4 -DCFDIR="$root/usr/share/sendmail/cf" sendmail.mc | sed "s#@DIR@#$dir#g" > "$dir/sendmail.cf"
# "# options: merge" cases use the -A map flag: duplicate names are merged.
sed "s#^O AliasFile=#O AliasFile=hash:-A #" "$dir/sendmail.cf" > "$dir/sendmail-A.cf"
for in in [0-9][0-9]-*.in; do
	args=$(sed -n '1s/^# expand: //p' "$in")
	cf=$dir/sendmail.cf
	if grep -q '^# options: merge' "$in"; then cf=$dir/sendmail-A.cf; fi
	# sendmail resolves a relative :include: against its queue directory.
	sed "s#:include:\([^/]\)#:include:$here/\1#g" "$in" > "$dir/aliases"
	rm -f "$dir/aliases.db"
	# A private UTS namespace gives sendmail a qualified host name (so it
	# does not sleep waiting for DNS to qualify this machine's name), and
	# a private mount namespace gives it the users of ./passwd.
	unshare -u -m sh -c "hostname mail.example.org
		mount --bind '$here/passwd' /etc/passwd
		'$sm' -C '$cf' -bi >/dev/null 2>&1
		'$sm' -C '$cf' -bv $args" 2>&1 |
		grep -v 'World writable directory' > "${in%.in}.sendmail" || true
done
