#!/bin/sh
# rekey postremove: the state folder /var/lib/rekey holds every credential
# and tenant record, so it stays unless the package is purged (dpkg --purge;
# rpm has no purge: remove /var/lib/rekey by hand).
# deb calls it with "remove", "purge", "upgrade", ...; rpm with 0 or 1.
set -e

case "$1" in
purge)
	rm -rf /var/lib/rekey
	# systemd removes /run/rekey when the unit stops; an agent started by
	# hand leaves it behind.
	rm -f /run/rekey/rekey.sock
	rmdir /run/rekey 2>/dev/null || true
	rmdir /etc/rekey/managed /etc/rekey 2>/dev/null || true
	;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
