#!/bin/sh
# Writes the rekey passphrase file. $4: the passphrase (Jamf parameter 4).
set -eu
pass=${4:?passphrase parameter missing}
dir="/Library/Application Support/rekey"
umask 077
mkdir -p "$dir"
chown root:wheel "$dir"
chmod 0700 "$dir"
tmp=$(mktemp "$dir/.passphrase.XXXXXX")
printf '%s\n' "$pass" >"$tmp"
chown root:wheel "$tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$dir/passphrase"
