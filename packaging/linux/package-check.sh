#!/bin/sh
# package-check: install the rekey .deb on this machine with dpkg, check its
# files, modes and unit (and print the unit's systemd-analyze security
# exposure), run the binary, then remove and purge it and check that state
# survives a remove and nothing survives a purge.
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

# The root service runs /opt/rekey/bin/rekey: that file and every folder above
# it must be root's and writable by nobody else, or a user could replace what
# root runs. /usr/bin/rekey is a link for people.
exe=/opt/rekey/bin/rekey
exe_dirs="/opt /opt/rekey /opt/rekey/bin"

# not_writable_by_others MODE-STRING (ls -l form) fails when group or others
# may write.
not_writable_by_others() {
	case "$1" in
	?????w???? | ????????w?) return 1 ;;
	esac
	return 0
}

echo "== package payload"
# dpkg-deb -c: mode owner/group size date time path [-> target]
listing=$(dpkg-deb -c "$deb")
for d in $exe_dirs; do
	entry=$(echo "$listing" | awk -v p=".$d/" '$6 == p {print $1, $2}')
	[ -n "$entry" ] || fail "$deb: no folder $d in the payload"
	[ "${entry#* }" = root/root ] || fail "$deb: folder $d is owned by ${entry#* }, want root/root"
	not_writable_by_others "${entry%% *}" || fail "$deb: folder $d is ${entry%% *}, writable by group or others"
	echo "ok   payload $d $entry"
done
entry=$(echo "$listing" | awk -v p=".$exe" '$6 == p {print $1, $2}')
[ "$entry" = "-rwxr-xr-x root/root" ] || fail "$deb: $exe is '$entry', want '-rwxr-xr-x root/root'"
echo "ok   payload $exe $entry"
entry=$(echo "$listing" | awk '$6 == "./usr/bin/rekey" {print $1, $7, $8}')
case "$entry" in
l*" -> $exe") echo "ok   payload /usr/bin/rekey -> $exe" ;;
*) fail "$deb: /usr/bin/rekey is '$entry', want a link to $exe" ;;
esac

echo "== install $deb"
dpkg -i "$deb"

expect_mode "$exe" "755 root:root regular file"
for d in $exe_dirs; do
	expect_mode "$d" "755 root:root directory"
done
expect_mode /usr/bin/rekey "777 root:root symbolic link"
[ "$(readlink /usr/bin/rekey)" = "$exe" ] || fail "/usr/bin/rekey leads to '$(readlink /usr/bin/rekey)', want $exe"
echo "ok   /usr/bin/rekey -> $exe"
expect_mode /lib/systemd/system/rekey.service "644 root:root regular file"
expect_mode /etc/rekey "755 root:root directory"
expect_mode /etc/rekey/managed "755 root:root directory"
expect_mode /var/lib/rekey "700 root:root directory"

echo "== unit"
unit=/lib/systemd/system/rekey.service
grep -qx "ExecStart=$exe run" "$unit" || fail "$unit: ExecStart is not '$exe run'"
grep -qx 'RuntimeDirectory=rekey' "$unit" || fail "$unit: no RuntimeDirectory=rekey (the socket folder /run/rekey)"
echo "ok   ExecStart=$exe run, RuntimeDirectory=rekey"
if grep -q '^ReadWritePaths=' "$unit"; then
	fail "$unit: $(grep '^ReadWritePaths=' "$unit"): the packaged unit writes only its state and runtime folders"
fi
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

echo "== systemd-analyze security (exposure must stay at or below 2.0)"
# --offline reads the unit file without asking a running systemd (v250+).
out="systemd-analyze not found"
if command -v systemd-analyze >/dev/null 2>&1 &&
	out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1); then
	level=$(echo "$out" | sed -n 's/.*Overall exposure level for rekey.service: \([0-9.]*\).*/\1/p')
	[ -n "$level" ] || fail "systemd-analyze security printed no exposure level: $out"
	echo "$out" | grep -v '^✓' || true
	awk -v l="$level" 'BEGIN { exit !(l + 0 <= 2.0) }' || fail "exposure $level is above 2.0; harden $unit again"
	echo "ok   exposure $level"
else
	echo "note systemd-analyze security not available here (it needs systemd 250 or later): $(echo "$out" | head -n 1); exposure not measured"
fi

echo "== run"
out=$(/usr/bin/rekey version) || fail "rekey version exited $?"
case "$out" in
rekey\ *) echo "ok   $out" ;;
*) fail "rekey version printed '$out'" ;;
esac
# doctor applies the same owner/mode rule to the running binary and its
# folders; run through the link, it must name the real path and find it sound.
# Other checks (no agent running here) may fail: only this one counts.
out=$(/usr/bin/rekey doctor --json 2>&1) || true
finding=$(echo "$out" | tr -d '\n' | sed -n 's/.*\({[^{}]*"check": "executable"[^{}]*}\).*/\1/p')
case "$finding" in
*'"level": "ok"'*"$exe"*) echo "ok   rekey doctor: executable $exe and its folders" ;;
*) fail "rekey doctor's executable check: '$finding' in: $out" ;;
esac

echo "== remove keeps state"
echo marker >/var/lib/rekey/package-check.marker
dpkg -r rekey
expect_gone /usr/bin/rekey
expect_gone "$exe"
expect_gone /opt/rekey
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
		for want in "$exe 0100755 root root" "/opt/rekey/bin 040755 root root" "/opt/rekey 040755 root root" \
			"/usr/lib/systemd/system/rekey.service 0100644 root root" \
			"/etc/rekey/managed 040755 root root" "/var/lib/rekey 040700 root root"; do
			echo "$listing" | awk '{print $1, $5, $6, $7}' | grep -qx "$want" || fail "$rpm: no '$want' in: $listing"
			echo "ok   rpm $want"
		done
		echo "$listing" | awk '{print $1, $5, $11}' | grep -qx "/usr/bin/rekey 0120000 $exe" ||
			fail "$rpm: /usr/bin/rekey is not a link to $exe: $listing"
		echo "ok   rpm /usr/bin/rekey -> $exe"
	else
		echo "note rpm not found; $rpm checked for presence only"
	fi
fi
echo "package-check: all good"
