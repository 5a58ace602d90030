#!/usr/bin/env bash
# Static checks of the systemd files, runnable in CI without systemd as PID 1:
#   1. `systemd-analyze verify` on the unit, with ExecStart=/ExecReload= pointed at a
#      real binary (verify insists the executables exist); any warning fails;
#   2. `systemd-analyze security --offline=yes`: the exposure score must stay at or below
#      SECURITY_THRESHOLD, in tenths (default 20 = 2.0; the unit scores 1.4 with systemd 252);
#   3. the seccomp allow-list still contains io_uring_setup/enter/register, seccomp (the
#      io_uring lockdown) and every call in the built-in list of check-syscalls.sh (no
#      trace needed);
#   4. sluice.sysusers and sluice.tmpfiles applied into a temporary root
#      (systemd-sysusers/-tmpfiles --root), and the resulting owners and modes checked;
#   5. shellcheck on the scripts here, when shellcheck is installed.
#
#   systemd/verify.sh [BINARY]
# BINARY defaults to $CARGO_TARGET_DIR/release/sluice, then target/{release,debug}/sluice;
# without one, /bin/true stands in (verify only checks that the path is executable).
# Without systemd-analyze it prints SKIP and exits 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
threshold=${SECURITY_THRESHOLD:-20}

if ! command -v systemd-analyze >/dev/null; then
    echo "verify: SKIP: systemd-analyze is not installed (apt-get install systemd)"
    exit 0
fi
echo "verify: $(systemd-analyze --version | head -1)"

binary=${1:-}
if [[ -z $binary ]]; then
    for candidate in "${CARGO_TARGET_DIR:-$repo/target}/release/sluice" "$repo/target/release/sluice" "$repo/target/debug/sluice"; do
        [[ -x $candidate ]] && { binary=$candidate; break; }
    done
fi
if [[ -z $binary ]]; then
    binary=/bin/true
    echo "verify: no sluice binary built: /bin/true stands in for /usr/local/bin/sluice"
fi
binary=$(realpath "$binary")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
fail() { echo "verify: FAIL: $*"; failed=1; }

# 1. systemd-analyze verify, on a copy whose executable paths exist here.
sed "s#/usr/local/bin/sluice#$binary#g" "$here/sluice.service" >"$work/sluice.service"
if systemd-analyze verify "$work/sluice.service" >"$work/verify.out" 2>&1 && [[ ! -s $work/verify.out ]]; then
    echo "verify: ok: systemd-analyze verify sluice.service (ExecStart=$binary)"
else
    fail "systemd-analyze verify sluice.service:"
    sed 's/^/    /' "$work/verify.out"
fi

# 2. The exposure score.
if systemd-analyze security --offline=yes --threshold="$threshold" --no-pager "$work/sluice.service" >"$work/security.out" 2>&1; then
    echo "verify: ok: $(grep -o 'Overall exposure level.*' "$work/security.out") (threshold $threshold tenths)"
else
    fail "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/security.out" || tail -3 "$work/security.out") (threshold $threshold tenths)"
fi

# 3. The allow-list keeps io_uring and what sluice needs (names only; the traced run is
#    systemd/trace-syscalls.sh + check-syscalls.sh, or trace-syscalls.sh --seccomp).
"$here/check-syscalls.sh" --unit "$here/sluice.service" --print-allowed >"$work/allowed"
missing=""
for call in io_uring_setup io_uring_enter io_uring_register seccomp; do
    grep -qx "$call" "$work/allowed" || missing+=" $call"
done
if [[ -z $missing ]] && : >"$work/empty.strace" && "$here/check-syscalls.sh" --quiet "$work/empty.strace" >"$work/check.out"; then
    echo "verify: ok: the filter permits io_uring, seccomp (the lockdown) and the built-in list ($(wc -l <"$work/allowed") calls allowed)"
else
    fail "the filter does not permit:${missing}"
    sed 's/^/    /' "$work/check.out" 2>/dev/null || true
fi

# 4. sysusers + tmpfiles into a temporary root.
root=$work/root
mkdir -p "$root/etc"
if systemd-sysusers --root="$root" "$here/sluice.sysusers" >"$work/sysusers.out" 2>&1 &&
    systemd-tmpfiles --create --root="$root" "$here/sluice.tmpfiles" >"$work/tmpfiles.out" 2>&1; then
    uid=$(awk -F: '$1 == "sluice" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "sluice" { print $3 }' "$root/etc/group")
    entry=$(grep '^sluice:' "$root/etc/passwd")
    problems=""
    [[ $entry == "sluice:x:$uid:$gid:"*":/var/lib/sluice:/usr/sbin/nologin" ]] || problems+=" passwd entry '$entry';"
    check() { # path mode uid gid
        local got
        got=$(stat -c '%a %u %g' "$root$1" 2>/dev/null || echo missing)
        [[ $got == "$2 $3 $4" ]] || problems+=" $1 is '$got', want '$2 $3 $4';"
    }
    check /var/lib/sluice 750 "$uid" "$gid"
    check /etc/sluice 750 0 "$gid"
    check /etc/sluice/tls 750 0 "$gid"
    # The z lines fix an existing key ring / config / env file.
    for file in keys.toml sluice.toml sluice.env; do install -m 0600 /dev/null "$root/etc/sluice/$file"; done
    systemd-tmpfiles --create --root="$root" "$here/sluice.tmpfiles" >>"$work/tmpfiles.out" 2>&1
    for file in keys.toml sluice.toml sluice.env; do check "/etc/sluice/$file" 640 0 "$gid"; done
    if [[ -z $problems ]]; then
        echo "verify: ok: sysusers (sluice uid $uid, nologin, home /var/lib/sluice) and tmpfiles (owners, modes) in a temporary root"
    else
        fail "sysusers/tmpfiles:$problems"
    fi
else
    fail "systemd-sysusers/systemd-tmpfiles --root:"
    cat "$work/sysusers.out" "$work/tmpfiles.out" 2>/dev/null | sed 's/^/    /'
fi

# 5. shellcheck.
if command -v shellcheck >/dev/null; then
    if shellcheck "$here"/*.sh; then echo "verify: ok: shellcheck systemd/*.sh"; else fail "shellcheck"; fi
else
    echo "verify: skip: shellcheck is not installed"
fi

if ((failed)); then echo "verify: FAILED"; exit 1; fi
echo "verify: all checks passed"
