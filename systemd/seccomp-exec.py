#!/usr/bin/env python3
"""Runs a command under a seccomp filter equivalent to the unit's, without systemd.

    seccomp-exec.py --allow FILE [--families AF_INET,AF_INET6,AF_UNIX] [--mdwe]
                    [--clone3-enosys] [--default kill|eperm] -- COMMAND ARGS...

--allow FILE     the permitted system calls, one per line (check-syscalls.sh --print-allowed)
--families       socket() only for these address families (RestrictAddressFamilies=)
--mdwe           no W+X mmap, no mprotect/pkey_mprotect with PROT_EXEC (MemoryDenyWriteExecute=)
--clone3-enosys  clone3 answers ENOSYS, as systemd does under RestrictNamespaces=, so glibc
                 falls back to clone()
--default        what a call outside the set gets: kill (SIGSYS to the whole process, the
                 default here, so nothing can be refused quietly) or eperm (as the unit's
                 SystemCallErrorNumber=EPERM)

Like systemd it sets no_new_privs, allows the native architecture only and loads the
filter just before execve(), so the dynamic loader runs under it too. It uses the system's
libseccomp.so.2 through ctypes: nothing to build or install. trace-syscalls.sh --seccomp
runs the whole scenario this way.
"""
import argparse
import ctypes
import errno
import os
import socket
import sys

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000


def scmp_act_errno(code):
    return 0x00050000 | (code & 0xFFFF)


SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE = 0x2
PROT_EXEC = 0x4


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow", required=True)
    parser.add_argument("--families", default="")
    parser.add_argument("--mdwe", action="store_true")
    parser.add_argument("--clone3-enosys", action="store_true")
    parser.add_argument("--default", choices=["kill", "eperm"], default="kill")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")

    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]

    default = SCMP_ACT_KILL_PROCESS if args.default == "kill" else scmp_act_errno(errno.EPERM)
    ctx = lib.seccomp_init(default)
    if not ctx:
        sys.exit("seccomp-exec: seccomp_init failed")

    def rule(action, name, *conditions):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return False  # not a system call of this architecture (mmap2, _llseek...)
        array = (ArgCmp * len(conditions))(*conditions) if conditions else None
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
        if rc != 0:
            sys.exit(f"seccomp-exec: rule for {name}: {os.strerror(-rc)}")
        return True

    with open(args.allow) as file:
        allowed = {line.strip() for line in file if line.strip()}
    special = set()
    if args.families:
        special.add("socket")
        if "socket" in allowed:
            for family in args.families.split(","):
                number = getattr(socket, family.strip())
                rule(SCMP_ACT_ALLOW, "socket", ArgCmp(0, SCMP_CMP_EQ, int(number), 0))
    if args.mdwe:
        special.update({"mmap", "mprotect", "pkey_mprotect"})
        if "mmap" in allowed:  # allowed unless both PROT_WRITE and PROT_EXEC
            rule(SCMP_ACT_ALLOW, "mmap", ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))
            rule(SCMP_ACT_ALLOW, "mmap", ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_WRITE, 0))
        for name in ("mprotect", "pkey_mprotect"):
            if name in allowed:
                rule(SCMP_ACT_ALLOW, name, ArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))
    if args.clone3_enosys:
        special.add("clone3")
        rule(scmp_act_errno(errno.ENOSYS), "clone3")
    count = 0
    for name in sorted(allowed - special):
        count += rule(SCMP_ACT_ALLOW, name)
    # seccomp_load sets no_new_privs first (SCMP_FLTATR_CTL_NNP defaults to on).
    rc = lib.seccomp_load(ctx)
    if rc != 0:
        sys.exit(f"seccomp-exec: seccomp_load: {os.strerror(-rc)}")
    print(f"seccomp-exec: {count} system calls allowed, default {args.default}", file=sys.stderr, flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
