#!/usr/bin/env bash
# Make sure the Redis and PostgreSQL server binaries exist, installing Debian's packages if not.
#
# Usage: tools/install-services.sh [redis] [postgres]     (both when no argument)
# Prints one KEY=VALUE line per binary on stdout, for services/reco/local/servers.py:
#   redis-server=/usr/bin/redis-server
#   redis-cli=/usr/bin/redis-cli          (creates the test suite's Redis Cluster)
#   pg-bindir=/usr/lib/postgresql/15/bin
# The test fixtures start their own servers on free ports; the system services that the
# packages would start are kept from starting (policy-rc.d) and are never used.
set -euo pipefail

want_redis=0
want_pg=0
if [[ $# -eq 0 ]]; then
    want_redis=1
    want_pg=1
fi
for arg in "$@"; do
    case "$arg" in
        redis) want_redis=1 ;;
        postgres | postgresql) want_pg=1 ;;
        *) echo "install-services: unknown component '$arg' (expected: redis, postgres)" >&2; exit 2 ;;
    esac
done

# find_redis_binary redis-server|redis-cli
find_redis_binary() {
    local found
    found="$(command -v "$1" 2>/dev/null || true)"
    [[ -z "$found" && -x "/usr/bin/$1" ]] && found="/usr/bin/$1"
    [[ -n "$found" ]] && echo "$found"
}

# Debian keeps the server binaries out of PATH, in /usr/lib/postgresql/<major>/bin.
find_pg_bindir() {
    local dir candidates=()
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -d "$dir" ]] && candidates+=("$dir")
    done
    if command -v initdb >/dev/null 2>&1; then
        candidates+=("$(dirname "$(readlink -f "$(command -v initdb)")")")
    fi
    if command -v pg_config >/dev/null 2>&1; then
        candidates+=("$(pg_config --bindir 2>/dev/null || true)")
    fi
    [[ ${#candidates[@]} -eq 0 ]] && return 1
    while read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]] \
            && "$dir/postgres" --version >/dev/null 2>&1; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' "${candidates[@]}" | sort -Vr -u)
    return 1
}

apt_install() {
    local packages=("$@")
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "install-services: missing ${packages[*]}; run as root: apt-get update && apt-get install -y ${packages[*]}" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-services: missing ${packages[*]} and no apt-get here; install the Redis server and redis-cli and the PostgreSQL server (initdb, pg_ctl, postgres) by hand" >&2
        exit 1
    fi
    local policy=/usr/sbin/policy-rc.d
    local own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    echo "install-services: installing ${packages[*]} with apt-get" >&2
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
    } >&2 || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        echo "install-services: apt-get install ${packages[*]} failed (exit $rc)" >&2
        exit 1
    fi
}

missing=()
if [[ $want_redis -eq 1 ]] && ! find_redis_binary redis-server >/dev/null; then
    missing+=(redis-server)
fi
# redis-cli is Debian's redis-tools, a dependency of redis-server, but a machine may have a
# server built by hand without it.
if [[ $want_redis -eq 1 ]] && ! find_redis_binary redis-cli >/dev/null; then
    missing+=(redis-tools)
fi
if [[ $want_pg -eq 1 ]] && ! find_pg_bindir >/dev/null; then
    missing+=(postgresql)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
fi

if [[ $want_redis -eq 1 ]]; then
    for binary in redis-server redis-cli; do
        found="$(find_redis_binary "$binary")" || { echo "install-services: $binary still not found after install" >&2; exit 1; }
        echo "$binary=$found"
    done
fi
if [[ $want_pg -eq 1 ]]; then
    bindir="$(find_pg_bindir)" || { echo "install-services: PostgreSQL initdb/pg_ctl/postgres still not found after install" >&2; exit 1; }
    echo "pg-bindir=$bindir"
fi
