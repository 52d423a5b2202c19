#!/bin/sh
# build-pkg.sh: build the macOS installer package for rekey (universal binary,
# launchd daemon, pre/postinstall scripts) with pkgbuild and productbuild.
# Runs on macOS only. From the repository root:
#
#   packaging/macos/build-pkg.sh                      # unsigned dist/rekey-VERSION.pkg
#   REKEY_SIGN_APP="Developer ID Application: Org (TEAMID)" \
#   REKEY_SIGN_INSTALLER="Developer ID Installer: Org (TEAMID)" \
#   REKEY_NOTARY_PROFILE=notary packaging/macos/build-pkg.sh
#
# Environment: VERSION (default: last git tag without "v", else 0.1.0),
# REKEY_SIGN_APP (codesign identity for the binary, hardened runtime),
# REKEY_SIGN_INSTALLER (productbuild signing identity), REKEY_NOTARY_PROFILE
# (xcrun notarytool keychain profile; needs REKEY_SIGN_INSTALLER).
set -eu

if [ "$(uname -s)" != Darwin ]; then
	echo "build-pkg.sh: pkgbuild and productbuild exist only on macOS; on Linux use 'make package' for .deb and .rpm" >&2
	exit 1
fi
for tool in go pkgbuild productbuild lipo; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "build-pkg.sh: $tool not found; install Xcode command line tools and Go" >&2
		exit 1
	}
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
label=com.github.rekeyd.rekey
tag=$(git -C "$repo" describe --tags --abbrev=0 2>/dev/null || true)
tag=${tag#v}
VERSION=${VERSION:-${tag:-0.1.0}}
build=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo "$VERSION")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
# The daemon runs /usr/local/rekey/bin/rekey: a folder only root may write
# (on Intel Macs Homebrew gives /usr/local/bin to a user, who could then
# replace what root runs). /usr/local/bin/rekey is a link for people.
mkdir -p "$root/usr/local/rekey/bin" "$root/usr/local/bin" "$root/Library/LaunchDaemons" "$root/usr/local/share/rekey" "$repo/dist"
exe="$root/usr/local/rekey/bin/rekey"

echo "== build universal binary ($build)"
for arch in arm64 amd64; do
	(cd "$repo" && CGO_ENABLED=0 GOOS=darwin GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$build" -o "$work/rekey-$arch" ./cmd/rekey)
done
lipo -create -output "$exe" "$work/rekey-arm64" "$work/rekey-amd64"
chmod 0755 "$exe" "$root/usr/local/rekey" "$root/usr/local/rekey/bin"
ln -s /usr/local/rekey/bin/rekey "$root/usr/local/bin/rekey"
if [ -n "${REKEY_SIGN_APP:-}" ]; then
	codesign --force --options runtime --timestamp --identifier "$label" \
		--sign "$REKEY_SIGN_APP" "$exe"
fi

install -m 0644 "$here/$label.plist" "$root/Library/LaunchDaemons/$label.plist"
install -m 0755 "$here/uninstall.sh" "$root/usr/local/share/rekey/uninstall.sh"

echo "== pkgbuild"
pkgbuild --root "$root" --scripts "$here/scripts" --identifier "$label.pkg" \
	--version "$VERSION" --install-location / --ownership recommended \
	"$work/rekey-component.pkg"

echo "== productbuild"
out="$repo/dist/rekey-$VERSION.pkg"
if [ -n "${REKEY_SIGN_INSTALLER:-}" ]; then
	productbuild --package "$work/rekey-component.pkg" --identifier "$label.product" \
		--version "$VERSION" --sign "$REKEY_SIGN_INSTALLER" "$out"
else
	productbuild --package "$work/rekey-component.pkg" --identifier "$label.product" \
		--version "$VERSION" "$out"
	echo "note: unsigned package; MDMs deploying it need it signed with a Developer ID Installer identity (REKEY_SIGN_INSTALLER)"
fi

if [ -n "${REKEY_NOTARY_PROFILE:-}" ]; then
	[ -n "${REKEY_SIGN_INSTALLER:-}" ] || {
		echo "build-pkg.sh: notarization needs a signed package; set REKEY_SIGN_INSTALLER" >&2
		exit 1
	}
	xcrun notarytool submit "$out" --keychain-profile "$REKEY_NOTARY_PROFILE" --wait
	xcrun stapler staple "$out"
fi
echo "built $out"
