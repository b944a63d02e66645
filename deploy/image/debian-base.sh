#!/usr/bin/env bash
# The image's base where no container registry is reachable: Debian's minimal system made
# by debootstrap from Debian's own mirror, trimmed the way the registry's
# debian:<suite>-slim is, and imported into podman's local storage.
#   deploy/image/debian-base.sh [SUITE [TAG]]    (defaults: trixie, localhost/debian:trixie-slim)
# With a registry, skip this: `make image BASE_IMAGE=docker.io/library/debian:trixie-slim`.
set -euo pipefail

suite=${1:-trixie}
tag=${2:-localhost/debian:${suite}-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
podman=${PODMAN:-podman}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase "$suite" "$root" "$mirror"

# What the slim images leave out, now and in every later apt-get install.
cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
find "$root/usr/share/doc" -type f ! -name copyright -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Security and point-release updates, as the registry's images have them.
cat > "$root/etc/apt/sources.list" <<LIST
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $suite-security main
LIST
cat > "$root/etc/apt/apt.conf.d/slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CFG
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
	"$root"/var/log/* "$root"/tmp/* "$root"/root/.cache

tar --numeric-owner --xattrs -C "$root" -c . | $podman import --change 'CMD ["bash"]' - "$tag"
echo "made $tag from Debian $suite ($mirror)"
