#!/usr/bin/env bash
# Build a Debian 12 root filesystem with Python 3.11 as a tarball, cached outside the repo:
# the stand-in for the official python image, which these machines cannot pull (no
# container registry is reachable). The images tier (tests/images) imports it into podman
# under the name the Dockerfiles' FROM uses, so the Dockerfiles users build are the ones
# tested.
#
# Usage: tools/build-base-image.sh          (as root: debootstrap needs it)
# The last line of stdout is the tarball's path. A marker written only after a complete
# build (holding a stamp of what went in) makes a second run a no-op.
#
# What differs from the official image: Debian's Python (3.11.2, /usr/bin/python3, venv
# from python3-venv) instead of a compiled 3.11.x in /usr/local; the Dockerfiles are
# written to work over both. The host's CA bundle replaces Debian's, so that pip inside a
# build trusts what the host's pip trusts on the way to PyPI.
set -euo pipefail

suite=bookworm
packages=python3,python3-venv,ca-certificates
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
cache_root="${RECO_CACHE:-$HOME/.cache/reco-engine}"
dest="$cache_root/base-python-$suite"
tarball="$dest/rootfs.tar"
marker="$dest/.complete"

if ! command -v debootstrap >/dev/null 2>&1 && [[ ! -x /usr/sbin/debootstrap ]]; then
    echo "build-base-image: debootstrap not found; run tools/install-podman.sh as root" >&2
    exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "build-base-image: debootstrap needs root" >&2
    exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"

stamp="$(
    {
        debootstrap --version
        echo "$suite $packages $mirror"
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
        [[ -f "$ca_bundle" ]] && sha256sum "$ca_bundle" | cut -d' ' -f1
    } | sha256sum | cut -d' ' -f1
)"

mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9

if [[ -f "$marker" && "$(cat "$marker")" == "$stamp" && -s "$tarball" ]]; then
    echo "$tarball"
    exit 0
fi

echo "build-base-image: debootstrap $suite ($packages) from $mirror" >&2
rm -f "$marker" "$tarball"
root="$dest/root"
rm -rf "$root"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
if [[ -f "$ca_bundle" ]]; then
    cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
fi
# What an image does not need: downloaded packages and index files.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
rm -rf "$root"
echo "$stamp" >"$marker"
echo "$tarball"
