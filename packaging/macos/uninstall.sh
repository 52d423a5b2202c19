#!/bin/sh
# uninstall.sh: remove rekey from a Mac. Stops the launchd daemon and removes
# the binary and the plist; the state folder (credentials, tenant data) stays
# unless --purge is given.
#   sudo /usr/local/share/rekey/uninstall.sh [--purge]
set -eu

label=com.github.rekeyd.rekey
state="/Library/Application Support/rekey"
purge=no
case "${1:-}" in
"") ;;
--purge) purge=yes ;;
*)
	echo "usage: uninstall.sh [--purge]" >&2
	exit 2
	;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "uninstall.sh needs root: run it with sudo" >&2
	exit 1
fi

if launchctl print "system/$label" >/dev/null 2>&1; then
	launchctl bootout "system/$label"
fi
rm -f "/Library/LaunchDaemons/$label.plist" /usr/local/bin/rekey /var/run/rekey.sock
pkgutil --forget "$label.pkg" >/dev/null 2>&1 || true

if [ "$purge" = yes ]; then
	rm -rf "$state" /Library/Logs/rekey
	echo "rekey removed, with its state folder and logs"
else
	echo "rekey removed; state kept in $state (run with --purge to delete it)"
fi
rm -rf /usr/local/share/rekey
