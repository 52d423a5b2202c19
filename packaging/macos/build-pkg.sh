#!/bin/sh
# build-pkg.sh: build the macOS installer package for rekey (universal binary,
# launchd daemon, log rotation entry, pre/postinstall scripts) with pkgbuild
# and productbuild. Runs on macOS only. From the repository root:
#
#   packaging/macos/build-pkg.sh                      # unsigned dist/rekey-VERSION.pkg
#   REKEY_SIGN_APP="Developer ID Application: Org (TEAMID)" \
#   REKEY_SIGN_INSTALLER="Developer ID Installer: Org (TEAMID)" \
#   REKEY_NOTARY_PROFILE=notary packaging/macos/build-pkg.sh
#
# Environment: VERSION (default: last git tag without "v", else 0.1.0),
# REKEY_DIST (output folder, default dist/), REKEY_SIGN_APP (codesign
# identity for the binary: hardened runtime, secure timestamp),
# REKEY_SIGN_INSTALLER (productsign identity for the package),
# REKEY_NOTARY_PROFILE (xcrun notarytool keychain profile).
#
# Notarising needs both identities: Apple refuses a package whose binary is
# unsigned, so the build stops before it starts rather than half-succeed.
# The package reaches REKEY_DIST only after every step passed: signing
# checked (codesign --verify, pkgutil --check-signature), notarytool's
# verdict read from its JSON (its --wait exits 0 on "Invalid" too) and the
# ticket stapled.
set -eu

die() {
	echo "build-pkg.sh: $*" >&2
	exit 1
}

if [ "$(uname -s)" != Darwin ]; then
	die "pkgbuild and productbuild exist only on macOS; on Linux use 'make package' for .deb and .rpm"
fi
app=${REKEY_SIGN_APP:-}
installer=${REKEY_SIGN_INSTALLER:-}
notary=${REKEY_NOTARY_PROFILE:-}
if [ -n "$notary" ]; then
	[ -n "$app" ] || die "notarization needs a signed binary: set REKEY_SIGN_APP (Developer ID Application) as well as REKEY_SIGN_INSTALLER"
	[ -n "$installer" ] || die "notarization needs a signed package: set REKEY_SIGN_INSTALLER (Developer ID Installer)"
fi
tools="go pkgbuild productbuild lipo"
[ -z "$app" ] || tools="$tools codesign"
[ -z "$installer" ] || tools="$tools productsign pkgutil"
[ -z "$notary" ] || tools="$tools xcrun"
for tool in $tools; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install Xcode command line tools and Go"
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
label=com.github.rekeyd.rekey
tag=$(git -C "$repo" describe --tags --abbrev=0 2>/dev/null || true)
tag=${tag#v}
VERSION=${VERSION:-${tag:-0.1.0}}
build=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo "$VERSION")
dist=${REKEY_DIST:-$repo/dist}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
# The daemon runs /usr/local/rekey/bin/rekey: a folder only root may write
# (on Intel Macs Homebrew gives /usr/local/bin to a user, who could then
# replace what root runs). /usr/local/bin/rekey is a link for people.
# /etc is a link to /private/etc on macOS; packages install into the latter.
mkdir -p "$root/usr/local/rekey/bin" "$root/usr/local/bin" "$root/Library/LaunchDaemons" \
	"$root/usr/local/share/rekey" "$root/usr/local/share/man/man1" "$root/private/etc/newsyslog.d" "$dist"
exe="$root/usr/local/rekey/bin/rekey"

echo "== build universal binary ($build)"
for arch in arm64 amd64; do
	(cd "$repo" && CGO_ENABLED=0 GOOS=darwin GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$build" -o "$work/rekey-$arch" ./cmd/rekey)
done
lipo -create -output "$exe" "$work/rekey-arm64" "$work/rekey-amd64"
chmod 0755 "$exe" "$root/usr/local/rekey" "$root/usr/local/rekey/bin"
ln -s /usr/local/rekey/bin/rekey "$root/usr/local/bin/rekey"
if [ -n "$app" ]; then
	echo "== codesign (hardened runtime, timestamp)"
	codesign --force --options runtime --timestamp --identifier "$label" --sign "$app" "$exe"
	codesign --verify --strict --verbose=2 "$exe" || die "codesign --verify rejects the signed binary"
	codesign --display --verbose=2 "$exe" 2>&1 | grep -q 'flags=.*runtime' ||
		die "the signed binary lacks the hardened runtime flag, which notarization requires"
else
	echo "note: binary not signed (REKEY_SIGN_APP unset)"
fi

"$exe" man >"$work/rekey.1" # the man page, from the command table, with macOS defaults
install -m 0644 "$work/rekey.1" "$root/usr/local/share/man/man1/rekey.1"
install -m 0644 "$here/$label.plist" "$root/Library/LaunchDaemons/$label.plist"
install -m 0644 "$here/newsyslog.conf" "$root/private/etc/newsyslog.d/$label.conf"
install -m 0755 "$here/uninstall.sh" "$root/usr/local/share/rekey/uninstall.sh"

echo "== pkgbuild"
pkgbuild --root "$root" --scripts "$here/scripts" --identifier "$label.pkg" \
	--version "$VERSION" --install-location / --ownership recommended \
	"$work/rekey-component.pkg"

echo "== productbuild"
productbuild --package "$work/rekey-component.pkg" --identifier "$label.product" \
	--version "$VERSION" "$work/rekey-unsigned.pkg"
pkg="$work/rekey-$VERSION.pkg"
if [ -n "$installer" ]; then
	echo "== productsign"
	productsign --sign "$installer" --timestamp "$work/rekey-unsigned.pkg" "$pkg"
	pkgutil --check-signature "$pkg" || die "pkgutil --check-signature rejects the signed package"
else
	mv "$work/rekey-unsigned.pkg" "$pkg"
	echo "note: unsigned package; MDMs deploying it need it signed with a Developer ID Installer identity (REKEY_SIGN_INSTALLER)"
fi

if [ -n "$notary" ]; then
	echo "== notarize"
	result=$(xcrun notarytool submit "$pkg" --keychain-profile "$notary" --wait --output-format json) ||
		die "notarytool submit failed: $result"
	# One JSON object: {"id":"…","status":"Accepted|Invalid|Rejected|In Progress","message":"…"}
	status=$(printf '%s\n' "$result" | sed -n 's/.*"status"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
	id=$(printf '%s\n' "$result" | sed -n 's/.*"id"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
	if [ "$status" != Accepted ]; then
		echo "build-pkg.sh: notarization ended '${status:-unknown}' (submission ${id:-unknown}); Apple's log:" >&2
		[ -z "$id" ] || xcrun notarytool log "$id" --keychain-profile "$notary" >&2 || true
		exit 1
	fi
	xcrun stapler staple "$pkg"
	pkgutil --check-signature "$pkg" || die "pkgutil --check-signature rejects the stapled package"
fi

out="$dist/rekey-$VERSION.pkg"
mv -f "$pkg" "$out"
echo "built $out"
