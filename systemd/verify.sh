#!/usr/bin/env bash
# Static checks of the systemd files, runnable in CI without systemd as PID 1:
#   1. `systemd-analyze verify` on each unit (sluice.service, sluice-bridge.service), with
#      ExecStart=/ExecReload= pointed at a real binary (verify insists the executables
#      exist); any warning fails;
#   2. `systemd-analyze security --offline=yes` on each unit: the exposure score must stay
#      at or below SECURITY_THRESHOLD, in tenths (default 20 = 2.0; sluice.service scores
#      1.4 with systemd 252);
#   3. sluice.service's seccomp allow-list still contains io_uring_setup/enter/register,
#      seccomp (the io_uring lockdown) and every call in the built-in list of
#      check-syscalls.sh (no trace needed); sluice-bridge.service's permits what the
#      bridge needs (sd_notify, librdkafka's sockets, the metrics listener, reading the
#      logs) and refuses io_uring, seccomp and sched_setaffinity;
#   4. sluice-bridge.service keeps sluice.service's user and sandbox (the same value for
#      every hardening directive), reads the data dir only (ReadOnlyPaths=, no
#      StateDirectory=/ReadWritePaths=), is not tied to the server's restarts (no PartOf=,
#      BindsTo=, Requires=) and does not restart after exit 2 or 3;
#   5. sluice.sysusers and sluice.tmpfiles applied into a temporary root
#      (systemd-sysusers/-tmpfiles --root), and the resulting owners and modes checked;
#   6. shellcheck on the scripts here, when shellcheck is installed.
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

units=(sluice.service sluice-bridge.service)

# 1. systemd-analyze verify, on a copy whose executable paths exist here. (Both copies
#    sit in $work, so sluice-bridge.service's Wants=sluice.service finds its unit.)
for unit in "${units[@]}"; do
    sed "s#/usr/local/bin/sluice#$binary#g" "$here/$unit" >"$work/$unit"
done
for unit in "${units[@]}"; do
    if systemd-analyze verify "$work/$unit" >"$work/verify.out" 2>&1 && [[ ! -s $work/verify.out ]]; then
        echo "verify: ok: systemd-analyze verify $unit (ExecStart=$binary)"
    else
        fail "systemd-analyze verify $unit:"
        sed 's/^/    /' "$work/verify.out"
    fi
done

# 2. The exposure score.
for unit in "${units[@]}"; do
    if systemd-analyze security --offline=yes --threshold="$threshold" --no-pager "$work/$unit" >"$work/security.out" 2>&1; then
        echo "verify: ok: $unit: $(grep -o 'Overall exposure level.*' "$work/security.out") (threshold $threshold tenths)"
    else
        fail "systemd-analyze security $unit: $(grep -o 'Overall exposure level.*' "$work/security.out" || tail -3 "$work/security.out") (threshold $threshold tenths)"
    fi
done

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
# The bridge's filter: what it needs in, what only the server needs out. (No traced run
# of the bridge yet: trace-syscalls.sh drives `serve`.)
"$here/check-syscalls.sh" --unit "$here/sluice-bridge.service" --print-allowed >"$work/bridge-allowed"
missing="" extra=""
# sd_notify; librdkafka: sockets, wake-up pipes/eventfds, poll, threads; the metrics
# listener; reading segments; abort and exit.
for call in socket connect sendto sendmsg recvfrom recvmsg getsockopt setsockopt getsockname getpeername \
    bind listen accept4 poll ppoll pipe2 eventfd2 clone clone3 futex \
    openat read pread64 mmap munmap madvise lseek getdents64 statx newfstatat close \
    ioctl readlink getrandom clock_nanosleep prlimit64 tgkill exit_group; do
    grep -qx "$call" "$work/bridge-allowed" || missing+=" $call"
done
for call in io_uring_setup io_uring_enter io_uring_register seccomp sched_setaffinity setrlimit mlock; do
    grep -qx "$call" "$work/bridge-allowed" && extra+=" $call"
done
if [[ -z $missing$extra ]]; then
    echo "verify: ok: sluice-bridge.service's filter permits sd_notify, sockets, threads and reads, refuses io_uring, seccomp, sched_setaffinity ($(wc -l <"$work/bridge-allowed") calls allowed)"
else
    fail "sluice-bridge.service's filter:${missing:+ does not permit$missing;}${extra:+ permits$extra (from the server filter, not the bridge one)}"
fi

# 4. sluice-bridge.service against sluice.service. directive UNIT KEY: the values of KEY=
#    in UNIT, one per line, in order.
directive() { sed -n "s/^$2=//p" "$here/$1"; }
has() { grep -q "^$2=" "$here/$1"; } # has UNIT KEY: set at all (an empty value counts)
problems=""
for key in User Group Type NotifyAccess WatchdogSec KillSignal Restart StartLimitIntervalSec StartLimitBurst \
    ConfigurationDirectory ConfigurationDirectoryMode UMask ProtectSystem NoNewPrivileges \
    CapabilityBoundingSet AmbientCapabilities PrivateTmp PrivateMounts ProtectHome PrivateDevices \
    ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectClock \
    ProtectHostname ProtectProc ProcSubset RestrictAddressFamilies RestrictNamespaces LockPersonality \
    MemoryDenyWriteExecute RestrictRealtime RestrictSUIDSGID RemoveIPC SystemCallArchitectures \
    SystemCallErrorNumber WantedBy; do
    server=$(directive sluice.service "$key")
    bridge=$(directive sluice-bridge.service "$key")
    has sluice.service "$key" || problems+=" sluice.service has no $key=;"
    has sluice-bridge.service "$key" || problems+=" no $key=;"
    [[ $bridge == "$server" ]] || problems+=" $key='${bridge//$'\n'/|}', sluice.service has '${server//$'\n'/|}';"
done
for key in StateDirectory ReadWritePaths PartOf BindsTo Requires LimitMEMLOCK SupplementaryGroups IPAddressDeny; do
    ! has sluice-bridge.service "$key" || problems+=" has $key= (a reader of the data dir, not tied to the server);"
done
[[ $(directive sluice-bridge.service ReadOnlyPaths) == /var/lib/sluice ]] || problems+=" ReadOnlyPaths= is not /var/lib/sluice;"
[[ $(directive sluice-bridge.service ExecStart) == *" bridge kafka "* ]] || problems+=" ExecStart= does not run 'bridge kafka';"
for key in After Wants; do
    [[ " $(directive sluice-bridge.service "$key" | tr '\n' ' ') " == *" sluice.service "* ]] || problems+=" $key= lacks sluice.service;"
done
prevent=" $(directive sluice-bridge.service RestartPreventExitStatus | tr '\n' ' ') "
[[ $prevent == *" 2 "* && $prevent == *" 3 "* ]] || problems+=" RestartPreventExitStatus= lacks 2 or 3;"
if [[ -z $problems ]]; then
    echo "verify: ok: sluice-bridge.service has sluice.service's user and sandbox, reads /var/lib/sluice only, outlives server restarts, keeps exits 2 and 3 down"
else
    fail "sluice-bridge.service:$problems"
fi

# 5. sysusers + tmpfiles into a temporary root.
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

# 6. shellcheck.
if command -v shellcheck >/dev/null; then
    if shellcheck "$here"/*.sh; then echo "verify: ok: shellcheck systemd/*.sh"; else fail "shellcheck"; fi
else
    echo "verify: skip: shellcheck is not installed"
fi

if ((failed)); then echo "verify: FAILED"; exit 1; fi
echo "verify: all checks passed"
