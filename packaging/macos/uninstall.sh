#!/bin/sh
# uninstall.sh: remove rekey from a Mac. Stops the launchd daemon and removes
# the binary, its link, the plist and the log rotation entry; the state
# folder (credentials, tenant data) stays unless --purge is given.
#   sudo /usr/local/share/rekey/uninstall.sh [--purge]
# As a Jamf policy script, Jamf passes the target volume, the computer name
# and the user as $1 $2 $3 and the policy's parameters from $4 on: put
# --purge in parameter 4. Empty parameters are ignored.
set -eu

label=com.github.rekeyd.rekey
state="/Library/Application Support/rekey"
exe=/usr/local/rekey/bin/rekey
link=/usr/local/bin/rekey
usage="usage: uninstall.sh [--purge] (from Jamf: --purge as parameter 4)"

# Jamf's $1 is the target volume, always "/"; options start at $4.
if [ "${1:-}" = / ]; then
	shift $(($# < 3 ? $# : 3))
fi
purge=no
for arg in "$@"; do
	case "$arg" in
	"") ;;
	--purge) purge=yes ;;
	*)
		echo "$usage" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "uninstall.sh needs root: run it with sudo" >&2
	exit 1
fi

# bootout can fail while launchd is busy stopping the job: try again, and go
# on as soon as launchctl print no longer finds the service. If it is still
# loaded after 5 tries, remove the files anyway (it will not start again
# after a reboot) and exit 1 at the end.
stuck=no
tries=0
while launchctl print "system/$label" >/dev/null 2>&1; do
	if launchctl bootout "system/$label"; then
		break
	fi
	tries=$((tries + 1))
	if [ "$tries" -ge 5 ]; then
		stuck=yes
		break
	fi
	sleep 1
done
rm -f "/Library/LaunchDaemons/$label.plist" /var/run/rekey.sock "/etc/newsyslog.d/$label.conf"
rm -rf /usr/local/rekey
# The link is ours only if it still leads to our binary.
if [ -L "$link" ] && [ "$(readlink "$link")" = "$exe" ]; then
	rm -f "$link"
fi
pkgutil --forget "$label.pkg" >/dev/null 2>&1 || true

if [ "$purge" = yes ]; then
	rm -rf "$state" /Library/Logs/rekey
	echo "rekey removed, with its state folder and logs"
else
	echo "rekey removed; state kept in $state (run with --purge to delete it)"
fi
rm -rf /usr/local/share/rekey
if [ "$stuck" = yes ]; then
	echo "launchctl bootout system/$label failed $tries times: the daemon may still run until the next reboot (or: sudo launchctl bootout system/$label)" >&2
	exit 1
fi
