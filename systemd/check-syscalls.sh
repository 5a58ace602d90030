#!/usr/bin/env bash
# Checks that every system call sluice makes is permitted by the unit's seccomp settings.
#
#   systemd/check-syscalls.sh [--unit FILE] [--no-expected] [--quiet] TRACE...
#   systemd/check-syscalls.sh [--unit FILE] --print-allowed
#
# TRACE is strace output: the raw form (`strace -f -o FILE`, also -ff files, with or
# without -tt) or the summary table (`strace -f -c`). systemd/trace-syscalls.sh makes one.
#
# The allowed set is computed the way systemd 252 builds it (config_parse_syscall_filter):
# the SystemCallFilter= lines of the unit in order; the first non-empty one decides
# allow-list (and then @default is added) or deny-list; later lines add to or take from
# the set; an empty assignment resets. Groups are expanded with
# `systemd-analyze syscall-filter`, so the sets are the installed systemd's own.
#
# From raw traces the arguments that other seccomp settings of the unit look at are
# checked too: RestrictAddressFamilies= (socket's family), MemoryDenyWriteExecute=
# (mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding PROT_EXEC),
# RestrictSUIDSGID= (chmod modes with S_ISUID/S_ISGID), RestrictNamespaces= (CLONE_NEW*,
# unshare, setns; clone3 is answered ENOSYS under it and glibc falls back to clone,
# which is checked as clone).
#
# Besides the trace, a built-in list of calls sluice makes on paths a short trace may not
# reach (each with its reason, below) is checked; --no-expected leaves it out.
#
# Prints one line per system call: calls, the group that permits it, and the verdict.
# Exit status: 0 all permitted, 1 something is not, 2 bad usage.
# Without systemd-analyze it prints a message and exits 0 (nothing can be checked).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unit=$here/sluice.service
expected=yes
print_allowed=no
quiet=no
traces=()
while (($#)); do
    case $1 in
        --unit) unit=${2:?--unit needs a file}; shift 2 ;;
        --no-expected) expected=no; shift ;;
        --print-allowed) print_allowed=yes; shift ;;
        --quiet) quiet=yes; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check-syscalls: unknown option $1" >&2; exit 2 ;;
        *) traces+=("$1"); shift ;;
    esac
done
if [[ $print_allowed == no && ${#traces[@]} -eq 0 ]]; then
    echo "usage: check-syscalls.sh [--unit FILE] [--no-expected] [--quiet] TRACE...  (--help)" >&2
    exit 2
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "check-syscalls: SKIP: systemd-analyze is not installed, the filter sets cannot be computed" >&2
    exit 0
fi
[[ -r $unit ]] || { echo "check-syscalls: cannot read $unit" >&2; exit 2; }
for trace in "${traces[@]}"; do
    [[ -r $trace ]] || { echo "check-syscalls: cannot read $trace" >&2; exit 2; }
done

# System calls sluice makes on paths a short run may not reach. name<TAB>reason
expected_list() {
    cat <<'EOF'
socket	sd_notify: an AF_UNIX datagram socket to $NOTIFY_SOCKET
connect	sd_notify: libraries may connect the datagram socket first
sendto	sd_notify: the datagram itself
sendmsg	sd_notify: the datagram itself (sd_notify sends with sendmsg)
ioctl	--log-format auto: isatty(stderr) is ioctl(TCGETS)
tgkill	panic = "abort": abort() raises SIGABRT with tgkill
rt_sigprocmask	abort() unblocks SIGABRT
gettid	abort() names the thread to signal
readlink	RUST_BACKTRACE=1: a panic's backtrace finds the executable (/proc/self/exe)
clone	threads when clone3 is answered ENOSYS (RestrictNamespaces=)
mremap	glibc realloc of large (mmapped) buffers
pwrite64	recovery rewrites a torn segment header (write_all_at)
fallocate	recovery zeroes a torn tail (FALLOC_FL_ZERO_RANGE)
ftruncate	std::fs::File::set_len on short files
unlink	retention deletes expired segments and journals
setrlimit	raising RLIMIT_NOFILE on a libc without prlimit64
sched_setaffinity	pinning each shard to its core
prctl	PR_SET_NO_NEW_PRIVS before the io_uring lockdown filter (and thread names)
seccomp	the io_uring lockdown: SECCOMP_SET_MODE_FILTER with TSYNC once the shards run
exit_group	process exit
EOF
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
systemd-analyze syscall-filter --no-pager >"$tmp/groups"
# The SystemCallFilter= assignments in order, one per line ("" = reset), plus the other
# settings the argument checks need.
sed -n 's/^[[:space:]]*SystemCallFilter=\(.*\)$/F \1/p; s/^[[:space:]]*RestrictAddressFamilies=\(.*\)$/A \1/p;
        s/^[[:space:]]*MemoryDenyWriteExecute=\(.*\)$/M \1/p; s/^[[:space:]]*RestrictSUIDSGID=\(.*\)$/S \1/p;
        s/^[[:space:]]*RestrictNamespaces=\(.*\)$/N \1/p' "$unit" >"$tmp/settings"
if [[ $expected == yes ]]; then expected_list >"$tmp/expected"; else : >"$tmp/expected"; fi

# awk inputs, told apart by FILENAME: groups, settings, expected, then the traces.
awk -v print_allowed="$print_allowed" -v quiet="$quiet" \
    -v groups="$tmp/groups" -v settings="$tmp/settings" -v expected="$tmp/expected" '
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
# Adds (sign = 1) or removes (sign = -1) a syscall or a whole group in set `allowed`.
function apply(item, sign,    n, parts, i) {
    sub(/:.*/, "", item)                         # name:errno
    if (item == "") return
    if (substr(item, 1, 1) == "@") {
        if (!(item in members)) { print "check-syscalls: unknown group " item > "/dev/stderr"; bad_usage = 1; return }
        n = split(members[item], parts, " ")
        for (i = 1; i <= n; i++) apply(parts[i], sign)
        return
    }
    if (sign > 0) allowed[item] = 1
    else delete allowed[item]
}
# The smallest named group holding a syscall, for the report.
function group_of(name,    g, best, best_n, n, parts) {
    best = ""; best_n = 1e9
    for (g in members) {
        if (g == "@known" || g == "@system-service" || g == "@privileged") continue
        if ((" " leaf[g] " ") ~ (" " name " ")) { n = split(leaf[g], parts, " "); if (n < best_n) { best = g; best_n = n } }
    }
    if (best == "" && (" " members["@system-service"] " ") ~ (" " name " ")) best = "@system-service"
    return best
}
function expand_leaf(g,    n, parts, i, out) {
    if (g in leaf) return leaf[g]
    out = ""; n = split(members[g], parts, " ")
    for (i = 1; i <= n; i++) out = out " " (substr(parts[i], 1, 1) == "@" ? expand_leaf(parts[i]) : parts[i])
    leaf[g] = out
    return out
}
function note_arg_problem(name, line) {
    if (!(name SUBSEP line in seen_problem)) { seen_problem[name SUBSEP line] = 1; problems[++nproblems] = name ": " line }
}
FILENAME == groups {
    if ($0 ~ /^@/) { group = $1; members[group] = ""; next }
    if ($0 ~ /^$/ || $0 ~ /^#/) { group = ""; next }
    if (group != "" && $1 !~ /^#/) members[group] = members[group] " " $1
    next
}
FILENAME == settings {
    kind = $1; value = trim(substr($0, 3))
    if (kind == "F") {
        if (value == "") { mode = ""; for (s in allowed) delete allowed[s]; next }
        invert = 0
        if (substr(value, 1, 1) == "~") { invert = 1; value = substr(value, 2) }
        if (mode == "") {
            if (invert) { mode = "deny"; apply("@known", 1) }    # everything, but...
            else { mode = "allow"; apply("@default", 1) }       # systemd always adds @default
        }
        n = split(value, items, /[ \t]+/)
        # In both modes "~" takes calls out of the permitted set and a plain entry puts
        # them in (allow-list: adds; deny-list: un-denies).
        for (i = 1; i <= n; i++) apply(items[i], invert ? -1 : 1)
    } else if (kind == "A") {
        families = value                                   # the last assignment wins
    } else if (kind == "M") { mdwe = (value ~ /^(yes|true|on|1)$/) }
    else if (kind == "S") { suid = (value ~ /^(yes|true|on|1)$/) }
    else if (kind == "N") { restrict_ns = (value ~ /^(yes|true|on|1)$/) }
    next
}
FILENAME == expected {
    split($0, f, "\t"); expect[f[1]] = f[2]; next
}
# A trace. The summary table of strace -c ...
/^% time/ { summary = 1; next }
summary && /^-+/ { next }
summary {
    if ($NF == "total") { summary = 0; next }
    if ($NF ~ /^[a-z_][a-z0-9_]*$/ && $4 ~ /^[0-9]+$/) { calls[$NF] += $4; seen[$NF] = 1 }
    next
}
# ... or raw strace lines: [pid N] / N, optional timestamp, then name( or <... name resumed>
{
    line = $0
    sub(/^\[pid +[0-9]+\] /, "", line)
    sub(/^[0-9]+ +/, "", line)
    sub(/^[0-9:.]+ /, "", line)
    if (line ~ /^<\.\.\. [a-z_0-9]+ resumed>/) next      # the second half of a call
    if (!match(line, /^[a-z_][a-z0-9_]*\(/)) next        # +++ exited, --- SIG..., noise
    name = substr(line, 1, RLENGTH - 1)
    seen[name] = 1; calls[name]++; raw = 1
    if (name == "socket" && families != "") {
        fam = line; sub(/^socket\(/, "", fam); sub(/,.*/, "", fam)
        if ((" " families " ") !~ (" " fam " ")) note_arg_problem(name, "family " fam " not in RestrictAddressFamilies=" families)
    }
    if (mdwe && name == "mmap" && line ~ /PROT_WRITE/ && line ~ /PROT_EXEC/) note_arg_problem(name, "writable and executable mapping (MemoryDenyWriteExecute=)")
    if (mdwe && (name == "mprotect" || name == "pkey_mprotect") && line ~ /PROT_EXEC/) note_arg_problem(name, "PROT_EXEC (MemoryDenyWriteExecute=)")
    if (suid && name ~ /^(chmod|fchmod|fchmodat|fchmodat2)$/) {
        mode_arg = line; sub(/\).*/, "", mode_arg); sub(/.*, */, "", mode_arg)
        if (mode_arg ~ /^0?[2-7][0-7][0-7][0-7]$/ || mode_arg ~ /S_IS[UG]ID/) note_arg_problem(name, "mode " mode_arg " (RestrictSUIDSGID=)")
    }
    if (restrict_ns && (name == "clone" || name == "unshare") && line ~ /CLONE_NEW/) note_arg_problem(name, "namespace flags (RestrictNamespaces=)")
    if (restrict_ns && name == "setns") note_arg_problem(name, "setns (RestrictNamespaces=)")
    next
}
END {
    if (bad_usage) exit 2
    if (mode == "") { print "check-syscalls: the unit has no SystemCallFilter=: everything is permitted" ; mode = "none" }
    if (print_allowed == "yes") { for (s in allowed) print s; exit 0 }
    for (g in members) expand_leaf(g)
    for (s in expect) if (!(s in seen)) { seen[s] = 1; calls[s] = "-" }
    n = 0
    for (s in seen) names[++n] = s
    # insertion sort, n is small
    for (i = 2; i <= n; i++) { v = names[i]; for (j = i - 1; j >= 1 && names[j] > v; j--) names[j + 1] = names[j]; names[j + 1] = v }
    missing = 0
    if (quiet != "yes") printf "%-22s %9s  %-18s %-16s %s\n", "syscall", "calls", "group", "verdict", "note"
    for (i = 1; i <= n; i++) {
        s = names[i]
        ok = (mode == "none") || (s in allowed)
        if (s == "clone3" && restrict_ns) note = "ENOSYS under RestrictNamespaces=; glibc falls back to clone"
        else if (calls[s] == "-") note = "not traced: " expect[s]
        else note = ""
        verdict = ok ? "permitted" : "NOT PERMITTED"
        if (!ok) missing++
        g = group_of(s); if (g == "") g = "-"
        if (quiet != "yes" || !ok) printf "%-22s %9s  %-18s %-16s %s\n", s, calls[s], g, verdict, note
    }
    for (i = 1; i <= nproblems; i++) print "ARGUMENT: " problems[i]
    total = n
    printf "check-syscalls: %d system calls (%s), %d not permitted, %d argument problems\n", total, raw ? "raw trace, arguments checked" : "summary only, names checked", missing, nproblems
    exit (missing > 0 || nproblems > 0) ? 1 : 0
}
' "$tmp/groups" "$tmp/settings" "$tmp/expected" "${traces[@]}"
