#!/bin/sh
# rekey postinstall: fix folder modes, then enable and (re)start the service
# when systemd is the running init system (not in containers or chroots).
# deb calls it with "configure"; rpm with 1 (install) or 2 (upgrade).
set -e

install -d -m 0700 -o root -g root /var/lib/rekey
install -d -m 0755 -o root -g root /etc/rekey /etc/rekey/managed

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable rekey.service
	# restart, not start: an upgrade must run the new binary.
	if ! systemctl restart rekey.service; then
		echo "rekey: rekey.service did not start; see: journalctl -u rekey" >&2
	fi
fi
exit 0
