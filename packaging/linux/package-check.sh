#!/bin/sh
# package-check: install the rekey .deb on this machine with dpkg, check its
# files, modes and unit, run the binary, then remove and purge it and check
# that state survives a remove and nothing survives a purge.
# Usage (as root): packaging/linux/package-check.sh dist/rekey_X_ARCH.deb [dist/rekey-X.ARCH.rpm]
set -eu

deb=${1:?usage: package-check.sh PACKAGE.deb [PACKAGE.rpm]}
rpm=${2:-}

fail() {
	echo "package-check: FAIL: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "dpkg needs root: run with sudo"
command -v dpkg >/dev/null 2>&1 || fail "dpkg not found: package-check runs on Debian or Ubuntu"
[ -f "$deb" ] || fail "$deb not found: run make package first"
if dpkg -s rekey >/dev/null 2>&1; then
	fail "rekey is already installed on this machine; remove it first (dpkg --purge rekey)"
fi

cleanup() {
	dpkg --purge rekey >/dev/null 2>&1 || true
}
trap cleanup EXIT

# mode_of PATH prints "octal-mode owner:group type".
mode_of() {
	stat -c '%a %U:%G %F' "$1" 2>/dev/null || echo missing
}

expect_mode() {
	got=$(mode_of "$1")
	[ "$got" = "$2" ] || fail "$1: got '$got', want '$2'"
	echo "ok   $1 $2"
}

expect_gone() {
	[ ! -e "$1" ] || fail "$1 still exists"
	echo "ok   $1 gone"
}

echo "== install $deb"
dpkg -i "$deb"

expect_mode /usr/bin/rekey "755 root:root regular file"
expect_mode /lib/systemd/system/rekey.service "644 root:root regular file"
expect_mode /etc/rekey "755 root:root directory"
expect_mode /etc/rekey/managed "755 root:root directory"
expect_mode /var/lib/rekey "700 root:root directory"

echo "== unit"
unit=/lib/systemd/system/rekey.service
grep -qx 'ExecStart=/usr/bin/rekey run' "$unit" || fail "$unit: ExecStart is not '/usr/bin/rekey run'"
for section in '\[Unit\]' '\[Service\]' '\[Install\]'; do
	grep -qx "$section" "$unit" || fail "$unit: no $section section"
done
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify prints warnings (unknown keys, bad values) and still exits 0.
	out=$(systemd-analyze verify --man=no "$unit" 2>&1) || fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
	echo "ok   systemd-analyze verify"
else
	echo "note systemd-analyze not found; unit checked by grep only"
fi

echo "== run"
out=$(/usr/bin/rekey version) || fail "rekey version exited $?"
case "$out" in
rekey\ *) echo "ok   $out" ;;
*) fail "rekey version printed '$out'" ;;
esac

echo "== remove keeps state"
echo marker >/var/lib/rekey/package-check.marker
dpkg -r rekey
expect_gone /usr/bin/rekey
expect_gone /lib/systemd/system/rekey.service
[ -f /var/lib/rekey/package-check.marker ] || fail "dpkg -r removed /var/lib/rekey"
echo "ok   /var/lib/rekey kept"

echo "== purge removes everything"
dpkg --purge rekey
expect_gone /var/lib/rekey
expect_gone /etc/rekey
if dpkg -s rekey >/dev/null 2>&1; then
	fail "dpkg still knows rekey after purge"
fi
echo "ok   dpkg forgot rekey"

echo "== maintainer scripts with systemd running"
# A private mount namespace shows the scripts a /run/systemd/system and a
# fake systemctl that records its calls; the real machine is not touched.
if unshare --mount --propagation private true 2>/dev/null; then
	fake=$(mktemp -d)
	cat >"$fake/systemctl" <<'EOS'
#!/bin/sh
echo "$*" >>"$REKEY_FAKE_SYSTEMCTL_LOG"
EOS
	chmod 0755 "$fake/systemctl"
	# shellcheck disable=SC2016 # $1 expands in the inner shell, on purpose
	REKEY_FAKE_SYSTEMCTL_LOG="$fake/calls" PATH="$fake:$PATH" \
		unshare --mount --propagation private sh -c '
			set -e
			mkdir -p /run/systemd
			mount -t tmpfs rekey-check /run/systemd
			mkdir /run/systemd/system
			dpkg -i "$1" >/dev/null
			dpkg --purge rekey >/dev/null' sh "$deb" || fail "install and purge with systemd running"
	want="daemon-reload
enable rekey.service
restart rekey.service
disable --now rekey.service
daemon-reload
daemon-reload"
	got=$(cat "$fake/calls")
	rm -rf "$fake"
	[ "$got" = "$want" ] || fail "systemctl calls: got
$got
want
$want"
	echo "ok   install enables and starts, removal stops and disables, purge reloads"
	expect_gone /var/lib/rekey
else
	echo "note unshare --mount not permitted here; the systemd branch of the scripts is not exercised"
fi

if [ -n "$rpm" ]; then
	echo "== rpm contents"
	[ -s "$rpm" ] || fail "$rpm missing or empty"
	if command -v rpm >/dev/null 2>&1; then
		# --dump: path size mtime digest mode owner group ...
		listing=$(rpm -qp --dump "$rpm")
		for want in "/usr/bin/rekey 0100755" "/usr/lib/systemd/system/rekey.service 0100644" \
			"/etc/rekey/managed 040755" "/var/lib/rekey 040700"; do
			echo "$listing" | awk '{print $1, $5}' | grep -qx "$want" || fail "$rpm: no '$want' in: $listing"
			echo "ok   rpm $want"
		done
	else
		echo "note rpm not found; $rpm checked for presence only"
	fi
fi
echo "package-check: all good"
