#!/usr/bin/env bash
# Pins a NIC's interrupts to cores of their own, away from sluice's shard cores, and sets
# the receive (RPS/RFS) and transmit (XPS) steering masks of its queues. Why, and when to
# choose otherwise: tuning/IRQ.md.
#
#   tuning/irq-affinity.sh --iface eth0 --shard-cores 2-15 [--irq-cores 0-1] [--dry-run]
#
# Idempotent: a value already in place is reported as unchanged and not written again.
# Nothing here survives a reboot or a driver reload: run it from a oneshot unit before
# sluice (tuning/IRQ.md has one). Exit status: 0 done (or nothing to do), 1 a write
# failed or the box is not ready (irqbalance running, not root), 2 bad usage.
set -euo pipefail

PROG=${0##*/}
SYS=${SLUICE_IRQ_SYSFS_ROOT:-}   # tests only: a fake tree standing in for / (see tuning/IRQ.md)
RFS_FLOW_ENTRIES_DEFAULT=32768   # kernel docs' suggestion for a moderately loaded server
CPUS_MAX=8192                    # the kernel's NR_CPUS ceiling

usage() {
    cat <<EOF
usage: $PROG --iface IFACE --shard-cores LIST [--irq-cores LIST] [--rps-cores LIST | --no-rps]
            [--rfs-entries N] [--dry-run]

  --iface IFACE        the NIC that carries sluice's traffic (see: ip route get <client ip>)
  --shard-cores LIST   cores the shards run on (CPU list: 2-15 or 2-7,10-15); no NIC
                       interrupt is left on them
  --irq-cores LIST     cores that take the NIC's interrupts (default: every online core
                       that is not a shard core)
  --rps-cores LIST     cores RPS may hand received packets to (default: the shard cores,
                       with RFS steering each flow to the shard that reads it)
  --no-rps             clear RPS/RFS on the queues instead: all receive processing stays
                       on the interrupt cores
  --rfs-entries N      net.core.rps_sock_flow_entries (default $RFS_FLOW_ENTRIES_DEFAULT; only raised)
  --dry-run            print every write with the value in place now; change nothing

Exit status: 0 done, 1 a write failed or the box is not ready, 2 bad usage.
EOF
}

die_usage() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    printf "Try '%s --help'.\n" "$PROG" >&2
    exit 2
}

die() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    exit 1
}

# --- CPU lists and masks ------------------------------------------------------------

# "0-3,8" -> "0 1 2 3 8" (sorted, unique); fails on anything malformed.
expand_cpulist() {
    local list=$1 part first last cpu
    local -a expanded=()
    [ -n "$list" ] || return 1
    local IFS=,
    for part in $list; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            first=$((10#${BASH_REMATCH[1]})) last=$((10#${BASH_REMATCH[2]}))
        elif [[ $part =~ ^[0-9]+$ ]]; then
            first=$((10#$part)) last=$first
        else
            return 1
        fi
        [ "$first" -le "$last" ] && [ "$last" -lt "$CPUS_MAX" ] || return 1
        for ((cpu = first; cpu <= last; cpu++)); do expanded+=("$cpu"); done
    done
    printf '%s\n' "${expanded[@]}" | sort -n -u | tr '\n' ' ' | sed 's/ $//'
}

# "0 1 2 3 8" (sorted) -> "0-3,8"
compress_cpus() {
    local cpu first='' prev='' list=''
    for cpu in $1; do
        if [ -z "$first" ]; then
            first=$cpu
        elif [ "$cpu" -ne $((prev + 1)) ]; then
            list+="${list:+,}$first"; [ "$prev" -eq "$first" ] || list+="-$prev"
            first=$cpu
        fi
        prev=$cpu
    done
    if [ -n "$first" ]; then
        list+="${list:+,}$first"; [ "$prev" -eq "$first" ] || list+="-$prev"
    fi
    printf '%s' "$list"
}

# "0 1 33" -> "2,00000003": the comma-separated 32-bit hex words /sys masks use.
cpus_to_mask() {
    local cpu top=0 i mask=''
    local -a words=()
    for cpu in $1; do
        i=$((cpu / 32))
        [ "$i" -gt "$top" ] && top=$i
        words[i]=$(( ${words[i]:-0} | (1 << (cpu % 32)) ))
    done
    for ((i = top; i >= 0; i--)); do
        if [ "$i" -eq "$top" ]; then mask=$(printf '%x' "${words[i]:-0}"); else mask+=$(printf ',%08x' "${words[i]:-0}"); fi
    done
    printf '%s' "$mask"
}

# A mask as the kernel prints it -> one comparable form ("00000000,00000003" -> "3").
normalize_mask() {
    local mask
    mask=$(printf '%s' "$1" | tr -d ',\n' | tr 'A-F' 'a-f' | sed 's/^0*//')
    printf '%s' "${mask:-0}"
}

# The least power of two >= $1 (the kernel rounds RFS table sizes up to one; doing it here
# keeps a second run from seeing a difference).
pow2_at_least() {
    local n=1
    while [ "$n" -lt "$1" ]; do n=$((n * 2)); done
    printf '%s' "$n"
}

# CPUs in both lists (space-separated, sorted).
intersect() {
    comm -12 <(tr ' ' '\n' <<<"$1" | sort) <(tr ' ' '\n' <<<"$2" | sort) | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# CPUs of $1 not in $2.
subtract() {
    comm -23 <(tr ' ' '\n' <<<"$1" | sort) <(tr ' ' '\n' <<<"$2" | sort) | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# The last path components of the paths given that exist, space-separated.
names() {
    local path found=''
    for path in "$@"; do
        [ -e "$path" ] && found+="${found:+ }${path##*/}"
    done
    printf '%s' "$found"
}

# --- Writing --------------------------------------------------------------------------

FAILED=0
CHANGED=0

# set_value LABEL PATH WANTED NOW_COMPARABLE WANTED_COMPARABLE
set_value() {
    local label=$1 path=$2 wanted=$3 now=$4 want=$5 shown
    shown=$(tr -d '\n' <"$SYS$path" 2>/dev/null || true)
    if [ "$now" = "$want" ]; then
        printf 'unchanged  %-28s %s = %s\n' "$label" "$path" "$shown"
        return
    fi
    CHANGED=$((CHANGED + 1))
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would run  %-28s echo %s > %s   # now %s\n' "$label" "$wanted" "$path" "${shown:-?}"
        return
    fi
    printf 'write      %-28s echo %s > %s   # was %s\n' "$label" "$wanted" "$path" "${shown:-?}"
    if ! { printf '%s\n' "$wanted" >"$SYS$path"; } 2>/dev/null; then
        printf '%s: cannot write %s (a kernel-managed IRQ, or the driver refuses): left as %s\n' "$PROG" "$path" "${shown:-?}" >&2
        FAILED=$((FAILED + 1))
    fi
}

set_cpulist() { # LABEL PATH CPUS
    local now
    now=$(expand_cpulist "$(tr -d '\n' <"$SYS$2" 2>/dev/null || true)" || true)
    set_value "$1" "$2" "$(compress_cpus "$3")" "$now" "$3"
}

set_mask() { # LABEL PATH CPUS
    local mask now
    mask=$(cpus_to_mask "$3")
    now=$(normalize_mask "$(cat "$SYS$2" 2>/dev/null || true)")
    set_value "$1" "$2" "$mask" "$now" "$(normalize_mask "$mask")"
}

set_number() { # LABEL PATH N
    local now
    now=$(tr -d '\n ' <"$SYS$2" 2>/dev/null || true)
    set_value "$1" "$2" "$3" "$now" "$3"
}

# --- The NIC's interrupts ---------------------------------------------------------------

# The name /proc/interrupts gives IRQ $1 (its last column).
irq_name() {
    awk -v irq="$1:" '$1 == irq { print $NF; exit }' "$SYS/proc/interrupts"
}

# IRQ numbers of the NIC, one per line: the MSI vectors of its PCI function (for virtio
# the PCI function above the virtio device, whose vectors are named virtioN-...), else its
# legacy IRQ, plus any IRQ named after the interface (eth0-TxRx-0).
nic_irqs() {
    local device real irq name
    device="$SYS/sys/class/net/$IFACE/device"
    {
        if [ -e "$device" ]; then
            real=$(readlink -f "$device")
            if [ -d "$real/msi_irqs" ]; then
                ls "$real/msi_irqs"
            elif [[ ${real##*/} == virtio* ]] && [ -d "$real/../msi_irqs" ]; then
                for irq in "$real"/../msi_irqs/*; do
                    irq=${irq##*/}
                    name=$(irq_name "$irq")
                    [[ $name == "${real##*/}"-* ]] && echo "$irq"
                done
            elif [ -r "$real/irq" ] && [ "$(cat "$real/irq")" != 0 ]; then
                cat "$real/irq"
            fi
        fi
        awk -v iface="$IFACE" '$1 ~ /^[0-9]+:$/ && ($NF == iface || index($NF, iface "-") == 1) { sub(":", "", $1); print $1 }' \
            "$SYS/proc/interrupts"
    } | sort -n -u
}

# --- Arguments --------------------------------------------------------------------------

IFACE='' SHARD_LIST='' IRQ_LIST='' RPS_LIST='' NO_RPS=0 RFS_ENTRIES=$RFS_FLOW_ENTRIES_DEFAULT DRY_RUN=0
while [ $# -gt 0 ]; do
    case $1 in
        --iface) IFACE=${2:-}; shift 2 || die_usage "--iface needs a value" ;;
        --shard-cores) SHARD_LIST=${2:-}; shift 2 || die_usage "--shard-cores needs a value" ;;
        --irq-cores) IRQ_LIST=${2:-}; shift 2 || die_usage "--irq-cores needs a value" ;;
        --rps-cores) RPS_LIST=${2:-}; shift 2 || die_usage "--rps-cores needs a value" ;;
        --no-rps) NO_RPS=1; shift ;;
        --rfs-entries) RFS_ENTRIES=${2:-}; shift 2 || die_usage "--rfs-entries needs a value" ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done
[ -n "$IFACE" ] || die_usage "--iface is required"
[ -n "$SHARD_LIST" ] || die_usage "--shard-cores is required"
[[ $RFS_ENTRIES =~ ^[0-9]+$ ]] || die_usage "--rfs-entries takes a number, not $RFS_ENTRIES"
[ "$NO_RPS" = 0 ] || [ -z "$RPS_LIST" ] || die_usage "--rps-cores and --no-rps exclude each other"
[[ $IFACE =~ ^[A-Za-z0-9_.:@-]+$ ]] || die_usage "not an interface name: $IFACE"
if [ ! -e "$SYS/sys/class/net/$IFACE" ]; then
    die_usage "no interface $IFACE here (have: $(names "$SYS/sys/class/net"/*))"
fi

ONLINE=$(expand_cpulist "$(cat "$SYS/sys/devices/system/cpu/online")") || die "cannot read the online CPUs"
SHARDS=$(expand_cpulist "$SHARD_LIST") || die_usage "--shard-cores: not a CPU list: $SHARD_LIST"
[ "$(intersect "$SHARDS" "$ONLINE")" = "$SHARDS" ] || die_usage "--shard-cores $SHARD_LIST: not all online (online: $(compress_cpus "$ONLINE"))"
if [ -n "$IRQ_LIST" ]; then
    IRQ_CPUS=$(expand_cpulist "$IRQ_LIST") || die_usage "--irq-cores: not a CPU list: $IRQ_LIST"
    [ "$(intersect "$IRQ_CPUS" "$ONLINE")" = "$IRQ_CPUS" ] || die_usage "--irq-cores $IRQ_LIST: not all online"
    [ -z "$(intersect "$IRQ_CPUS" "$SHARDS")" ] || die_usage "--irq-cores and --shard-cores overlap on $(compress_cpus "$(intersect "$IRQ_CPUS" "$SHARDS")")"
else
    IRQ_CPUS=$(subtract "$ONLINE" "$SHARDS")
    [ -n "$IRQ_CPUS" ] || die_usage "--shard-cores takes every online core; leave at least one for interrupts or give --irq-cores"
fi
if [ -n "$RPS_LIST" ]; then
    RPS_CPUS=$(expand_cpulist "$RPS_LIST") || die_usage "--rps-cores: not a CPU list: $RPS_LIST"
else
    RPS_CPUS=$SHARDS
fi

# irqbalance rewrites affinities every 10 s and would undo all of this.
IRQBALANCE=$(grep -lx irqbalance "$SYS"/proc/[0-9]*/comm 2>/dev/null | sed 's|.*/proc/||; s|/comm||' | tr '\n' ' ' || true)
if [ -n "$IRQBALANCE" ]; then
    HOW="stop it first: systemctl disable --now irqbalance (or ban the shard cores: IRQBALANCE_BANNED_CPULIST=$(compress_cpus "$SHARDS") in /etc/default/irqbalance and restart it, instead of running this script)"
    [ "$DRY_RUN" = 1 ] || die "irqbalance is running (pid ${IRQBALANCE% }) and would undo these settings; $HOW"
    printf '%s: irqbalance is running (pid %s): a real run would refuse; %s\n' "$PROG" "${IRQBALANCE% }" "$HOW" >&2
fi
if [ "$DRY_RUN" = 0 ] && [ -z "$SYS" ] && [ "$(id -u)" -ne 0 ]; then
    die "writing /proc/irq and /sys needs root (try --dry-run to see the plan)"
fi

printf '%s: %s, shard cores %s, interrupt cores %s%s\n' "$PROG" "$IFACE" "$(compress_cpus "$SHARDS")" "$(compress_cpus "$IRQ_CPUS")" \
    "$([ "$DRY_RUN" = 1 ] && echo ', dry run: nothing is written')"

# --- Interrupts -------------------------------------------------------------------------

IRQS=$(nic_irqs)
if [ -z "$IRQS" ]; then
    printf 'no IRQs    %-28s %s has no interrupts of its own (virtual or loopback device): nothing to pin\n' "$IFACE" "$IFACE"
fi
for irq in $IRQS; do
    [ -e "$SYS/proc/irq/$irq/smp_affinity_list" ] || continue
    set_cpulist "irq $irq ($(irq_name "$irq"))" "/proc/irq/$irq/smp_affinity_list" "$IRQ_CPUS"
done

# --- Receive steering (RPS, RFS) --------------------------------------------------------

QUEUES="/sys/class/net/$IFACE/queues"
RX_QUEUES=$(names "$SYS$QUEUES"/rx-* | tr ' ' '\n' | sort -t- -k2 -n | tr '\n' ' ')
TX_QUEUES=$(names "$SYS$QUEUES"/tx-* | tr ' ' '\n' | sort -t- -k2 -n | tr '\n' ' ')
RX_COUNT=$(wc -w <<<"$RX_QUEUES")
if [ "$RX_COUNT" -gt 0 ]; then
    if [ "$NO_RPS" = 1 ]; then
        RPS_CPUS='' FLOWS=0
    else
        RFS_ENTRIES=$(pow2_at_least "$RFS_ENTRIES")
        FLOWS=$(pow2_at_least $(((RFS_ENTRIES + RX_COUNT - 1) / RX_COUNT)))
        # Only raised: another service may want a larger table.
        now=$(cat "$SYS/proc/sys/net/core/rps_sock_flow_entries" 2>/dev/null || echo 0)
        if [ "$now" -lt "$RFS_ENTRIES" ]; then
            set_number "rfs flow table" /proc/sys/net/core/rps_sock_flow_entries "$RFS_ENTRIES"
        else
            set_number "rfs flow table" /proc/sys/net/core/rps_sock_flow_entries "$now"
        fi
    fi
    for queue in $RX_QUEUES; do
        if [ -e "$SYS$QUEUES/$queue/rps_cpus" ]; then set_mask "$queue rps" "$QUEUES/$queue/rps_cpus" "$RPS_CPUS"; fi
        if [ -e "$SYS$QUEUES/$queue/rps_flow_cnt" ]; then set_number "$queue rfs flows" "$QUEUES/$queue/rps_flow_cnt" "$FLOWS"; fi
    done
fi

# --- Transmit steering (XPS) ------------------------------------------------------------

# Each online core sends on one queue (core i on queue i mod queues), so cores never
# contend for a queue lock. A single-queue device has no xps_cpus: nothing to steer.
TX_COUNT=$(wc -w <<<"$TX_QUEUES")
if [ "$TX_COUNT" -gt 1 ]; then
    index=0
    for queue in $TX_QUEUES; do
        cpus=''
        position=0
        for cpu in $ONLINE; do
            [ $((position % TX_COUNT)) -eq "$index" ] && cpus+="${cpus:+ }$cpu"
            position=$((position + 1))
        done
        if [ -e "$SYS$QUEUES/$queue/xps_cpus" ]; then set_mask "$queue xps" "$QUEUES/$queue/xps_cpus" "$cpus"; fi
        index=$((index + 1))
    done
else
    printf 'no XPS     %-28s %s has %s transmit queue: nothing to spread\n' "$IFACE" "$IFACE" "$TX_COUNT"
fi

if [ "$DRY_RUN" = 1 ]; then
    printf '%s: %d writes would be made\n' "$PROG" "$CHANGED"
else
    printf '%s: %d written, %d failed\n' "$PROG" "$((CHANGED - FAILED))" "$FAILED"
fi
[ "$FAILED" -eq 0 ]
