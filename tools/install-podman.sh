#!/usr/bin/env bash
# Make sure podman (with the runc runtime) and debootstrap exist, installing Debian's packages
# if not. The images tier (tests/images) builds the project's Dockerfiles with them; there is
# no Docker engine on these machines.
#
# Usage: tools/install-podman.sh
# Prints one KEY=VALUE line per tool on stdout:
#   podman=/usr/bin/podman
#   runc=/usr/sbin/runc
#   debootstrap=/usr/sbin/debootstrap
# Exits 0 without installing when everything is there (the common, fast case). Where the
# tools are missing and cannot be installed (not root, no apt-get) it says so on stderr and
# exits 0 all the same: the images tier then reports itself as not run, with this reason,
# and every other tier still runs.
set -euo pipefail

# runc, not crun: crun refuses the hybrid cgroup layout of these machines.
tools=(podman runc debootstrap)
packages=(podman runc debootstrap)

find_tool() {
    local found
    found="$(command -v "$1" 2>/dev/null || true)"
    [[ -z "$found" && -x "/usr/sbin/$1" ]] && found="/usr/sbin/$1"
    [[ -n "$found" ]] && echo "$found"
}

missing=()
for i in "${!tools[@]}"; do
    find_tool "${tools[$i]}" >/dev/null || missing+=("${packages[$i]}")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "install-podman: missing ${missing[*]}; run as root: apt-get update && apt-get install -y ${missing[*]} (the images tier is not run without them)" >&2
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-podman: missing ${missing[*]} and no apt-get here; install podman, runc and debootstrap by hand (the images tier is not run without them)" >&2
        exit 0
    fi
    echo "install-podman: installing ${missing[*]} with apt-get" >&2
    rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    } >&2 || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "install-podman: apt-get install ${missing[*]} failed (exit $rc); the images tier is not run" >&2
        exit 0
    fi
fi

for tool in "${tools[@]}"; do
    path="$(find_tool "$tool")" || { echo "install-podman: $tool still not found after install" >&2; exit 0; }
    echo "$tool=$path"
done
