#!/usr/bin/env bash
# Runs irq-affinity.sh against a fake /proc and /sys tree (a 16-core box with a 4-queue
# PCI NIC, a virtio NIC and a NIC-less interface) and checks what it writes: the plan in
# --dry-run changes nothing, a real run writes it, a second run writes nothing, and it
# refuses when irqbalance runs or the interface is missing. Needs no root and touches
# nothing outside a temp dir.
#
#   tuning/irq-affinity-test.sh
set -euo pipefail

SCRIPT="$(cd "$(dirname "$0")" && pwd)/irq-affinity.sh"
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
export SLUICE_IRQ_SYSFS_ROOT="$ROOT"
PASSED=0

fail() {
    printf 'FAIL: %s\n' "$1" >&2
    exit 1
}

check() { # DESCRIPTION FILE WANTED
    local got
    got=$(tr -d '\n' <"$ROOT$2")
    [ "$got" = "$3" ] || fail "$1: $2 is '$got', wanted '$3'"
    PASSED=$((PASSED + 1))
}

put() { # PATH TEXT
    mkdir -p "$(dirname "$ROOT$1")"
    printf '%s\n' "$2" >"$ROOT$1"
}

# 16 cores; a PCI NIC eth0 with 4 rx/tx queues on MSI vectors 40-44 (44 is its misc
# vector, named after the PCI address); a virtio NIC eth1 whose vectors sit on the PCI
# function above it; lo without a device.
put /sys/devices/system/cpu/online "0-15"
put /proc/sys/net/core/rps_sock_flow_entries "0"
{
    printf '           CPU0       CPU1\n'
    for q in 0 1 2 3; do printf ' %d:  1 1  PCI-MSIX-0000:3b:00.0 %d-edge  eth0-TxRx-%d\n' $((40 + q)) "$q" "$q"; done
    printf ' 44:  1 1  PCI-MSIX-0000:3b:00.0 4-edge  i40e-0000:3b:00.0:misc\n'
    printf ' 50:  1 1  PCI-MSIX-0000:00:03.0 0-edge  virtio2-config\n'
    printf ' 51:  1 1  PCI-MSIX-0000:00:03.0 1-edge  virtio2-input.0\n'
    printf ' 52:  1 1  PCI-MSIX-0000:00:03.0 2-edge  virtio2-output.0\n'
    printf ' 60:  1 1  IO-APIC 4-edge  ttyS0\n'
    printf 'LOC:  9 9  Local timer interrupts\n'
} >"$ROOT/proc/interrupts.tmp"
mkdir -p "$ROOT/proc"
mv "$ROOT/proc/interrupts.tmp" "$ROOT/proc/interrupts"
for irq in 40 41 42 43 44 50 51 52 60; do put "/proc/irq/$irq/smp_affinity_list" "0-15"; done
mkdir -p "$ROOT/sys/devices/pci0000:3a/0000:3b:00.0/msi_irqs" "$ROOT/sys/devices/pci0000:00/0000:00:03.0/msi_irqs/"{50,51,52}
mkdir -p "$ROOT/sys/devices/pci0000:00/0000:00:03.0/virtio2"
for irq in 40 41 42 43 44; do mkdir -p "$ROOT/sys/devices/pci0000:3a/0000:3b:00.0/msi_irqs/$irq"; done
mkdir -p "$ROOT/sys/class/net/eth0" "$ROOT/sys/class/net/eth1" "$ROOT/sys/class/net/lo"
ln -s ../../../devices/pci0000:3a/0000:3b:00.0 "$ROOT/sys/class/net/eth0/device"
ln -s ../../../devices/pci0000:00/0000:00:03.0/virtio2 "$ROOT/sys/class/net/eth1/device"
for iface in eth0 eth1 lo; do
    queues=4
    [ "$iface" = eth0 ] || queues=1
    for ((q = 0; q < queues; q++)); do
        put "/sys/class/net/$iface/queues/rx-$q/rps_cpus" "0000"
        put "/sys/class/net/$iface/queues/rx-$q/rps_flow_cnt" "0"
        [ "$queues" -gt 1 ] && put "/sys/class/net/$iface/queues/tx-$q/xps_cpus" "0000"
        mkdir -p "$ROOT/sys/class/net/$iface/queues/tx-$q"
    done
done

# A dry run prints the plan and changes nothing.
out=$("$SCRIPT" --iface eth0 --shard-cores 2-15 --dry-run)
grep -q 'would run  irq 40 (eth0-TxRx-0) *echo 0-1 > /proc/irq/40/smp_affinity_list' <<<"$out" || fail "dry run plan: $out"
grep -q '18 writes would be made' <<<"$out" || fail "dry run count: $out"
check "dry run" /proc/irq/40/smp_affinity_list "0-15"
check "dry run" /proc/sys/net/core/rps_sock_flow_entries "0"

# A real run: the NIC's five vectors move to 0-1, the serial port's stays; RPS to the shard
# cores (2-15 = 0xfffc) with 32768 / 4 flows per queue; XPS core i -> queue i mod 4.
"$SCRIPT" --iface eth0 --shard-cores 2-15 >/dev/null
for irq in 40 41 42 43 44; do check "eth0 irq" "/proc/irq/$irq/smp_affinity_list" "0-1"; done
check "other irq" /proc/irq/60/smp_affinity_list "0-15"
check "virtio irq of another NIC" /proc/irq/51/smp_affinity_list "0-15"
check "rfs table" /proc/sys/net/core/rps_sock_flow_entries "32768"
for q in 0 1 2 3; do
    check "rps" "/sys/class/net/eth0/queues/rx-$q/rps_cpus" "fffc"
    check "rfs" "/sys/class/net/eth0/queues/rx-$q/rps_flow_cnt" "8192"
done
check "xps" /sys/class/net/eth0/queues/tx-0/xps_cpus "1111"
check "xps" /sys/class/net/eth0/queues/tx-3/xps_cpus "8888"

# Idempotent: a second run writes nothing.
out=$("$SCRIPT" --iface eth0 --shard-cores 2-15)
grep -q ': 0 written, 0 failed' <<<"$out" || fail "second run wrote: $out"
PASSED=$((PASSED + 1))

# virtio: only the vectors named after its virtio device, on the PCI function above it.
"$SCRIPT" --iface eth1 --shard-cores 1-15 --irq-cores 0 >/dev/null
for irq in 50 51 52; do check "virtio irq" "/proc/irq/$irq/smp_affinity_list" "0"; done
check "eth0 untouched" /proc/irq/40/smp_affinity_list "0-1"

# lo: no interrupts of its own, not an error.
out=$("$SCRIPT" --iface lo --shard-cores 2-15 --no-rps --dry-run)
grep -q 'no IRQs' <<<"$out" || fail "lo: $out"
PASSED=$((PASSED + 1))

# Refusals: a missing interface (2), overlapping cores (2), irqbalance running (1, but a
# dry run still shows the plan).
status=0; "$SCRIPT" --iface eth9 --shard-cores 2-15 >/dev/null 2>&1 || status=$?
[ "$status" = 2 ] || fail "missing interface exited $status"
status=0; "$SCRIPT" --iface eth0 --shard-cores 2-15 --irq-cores 1-2 >/dev/null 2>&1 || status=$?
[ "$status" = 2 ] || fail "overlapping cores exited $status"
put /proc/4242/comm "irqbalance"
status=0; err=$("$SCRIPT" --iface eth0 --shard-cores 2-15 2>&1 >/dev/null) || status=$?
[ "$status" = 1 ] || fail "irqbalance running: exited $status"
grep -q 'systemctl disable --now irqbalance' <<<"$err" || fail "irqbalance: no advice in: $err"
"$SCRIPT" --iface eth0 --shard-cores 2-15 --dry-run >/dev/null 2>&1 || fail "dry run with irqbalance running"
PASSED=$((PASSED + 4))

printf 'irq-affinity-test: %d checks passed\n' "$PASSED"
