# shellcheck shell=bash
# Helpers shared by the guest scripts (sourced, not executed).

# apt_ensure COMMAND PACKAGE: make sure COMMAND exists, installing PACKAGE
# from the machine's configured archive when it does not.  Tolerates another
# apt/dpkg holding the lock (waits, retries) and missing or stale package
# lists (runs apt-get update after a failed install).
apt_ensure() {
    local cmd=$1 pkg=$2 attempt rc
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "error: '$cmd' not found and not root, so cannot 'apt-get install $pkg'; install it first" >&2
        return 1
    fi
    command -v apt-get >/dev/null 2>&1 || {
        echo "error: '$cmd' not found and no apt-get to install package '$pkg'" >&2
        return 1
    }
    for attempt in 1 2 3 4 5; do
        echo "installing Debian package '$pkg' (for '$cmd'), attempt $attempt" >&2
        rc=0
        DEBIAN_FRONTEND=noninteractive timeout 1200 \
            apt-get install -y -q --no-install-recommends -oDPkg::Lock::Timeout=300 "$pkg" \
            </dev/null >&2 || rc=$?
        if [ "$rc" = 0 ] && command -v "$cmd" >/dev/null 2>&1; then
            return 0
        fi
        echo "apt-get install $pkg failed (exit $rc); running apt-get update and retrying" >&2
        DEBIAN_FRONTEND=noninteractive timeout 600 \
            apt-get update -q -oDPkg::Lock::Timeout=300 </dev/null >&2 ||
            echo "apt-get update failed (exit $?; another apt may hold the lock)" >&2
        sleep $((attempt * 3))
    done
    echo "error: could not install Debian package '$pkg' (needed for '$cmd')" >&2
    return 1
}

# now: seconds since the epoch with millisecond precision.
now() { date +%s.%3N; }
# elapsed START: seconds since START (from now), one decimal.
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
