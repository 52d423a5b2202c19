#!/bin/sh
# rekey preremove: stop and disable the service when the package is removed,
# not when it is upgraded (postinstall restarts it then).
# deb calls it with "remove", "upgrade", ...; rpm with 0 (erase) or 1 (upgrade).
set -e

case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now rekey.service || true
	fi
	;;
esac
exit 0
