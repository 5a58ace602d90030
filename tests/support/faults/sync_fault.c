/*
 * A fault injector for sluice's tests, loaded with LD_PRELOAD: it makes chosen
 * fdatasync/fsync calls fail with EIO, the way a disk that lost a write reports it.
 * Only calls through libc are seen (io_uring's fdatasync goes around it).
 *
 *   SLUICE_FAULT_SYNC_SUFFIX  only files whose path ends with this (default ".seg")
 *   SLUICE_FAULT_SYNC_SKIP    let this many matching calls succeed first (default 0)
 *   SLUICE_FAULT_SYNC_FAILS   then fail this many (default 1), then succeed again, as
 *                             Linux does once it has reported a writeback error
 *
 * And a full disk, while the file named by SLUICE_FAULT_DISK_FULL_FLAG exists:
 * fallocate fails with ENOSPC and statvfs reports no space available.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

static long counter_from_env(const char *name, long fallback) {
    const char *text = getenv(name);
    return text ? atol(text) : fallback;
}

static int should_fail(int fd) {
    static long seen = 0;
    char link[64], path[4096];
    const char *suffix = getenv("SLUICE_FAULT_SYNC_SUFFIX");
    if (!suffix) suffix = ".seg";
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len < 0) return 0;
    path[len] = 0;
    size_t suffix_len = strlen(suffix);
    if ((size_t)len < suffix_len || strcmp(path + len - suffix_len, suffix) != 0) return 0;
    long index = __atomic_fetch_add(&seen, 1, __ATOMIC_SEQ_CST);
    long skip = counter_from_env("SLUICE_FAULT_SYNC_SKIP", 0);
    long fails = counter_from_env("SLUICE_FAULT_SYNC_FAILS", 1);
    if (index >= skip && index < skip + fails) {
        fprintf(stderr, "sync_fault: failing sync #%ld of %s\n", index, path);
        return 1;
    }
    return 0;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

static int disk_full(void) {
    const char *flag = getenv("SLUICE_FAULT_DISK_FULL_FLAG");
    return flag && access(flag, F_OK) == 0;
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    static int (*real)(int, int, off_t, off_t);
    if (!real) real = (int (*)(int, int, off_t, off_t))dlsym(RTLD_NEXT, "fallocate");
    if (disk_full()) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len) {
    static int (*real)(int, int, off64_t, off64_t);
    if (!real) real = (int (*)(int, int, off64_t, off64_t))dlsym(RTLD_NEXT, "fallocate64");
    if (disk_full()) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, mode, offset, len);
}

int statvfs(const char *path, struct statvfs *buf) {
    static int (*real)(const char *, struct statvfs *);
    if (!real) real = (int (*)(const char *, struct statvfs *))dlsym(RTLD_NEXT, "statvfs");
    int result = real(path, buf);
    if (result == 0 && disk_full()) buf->f_bavail = 0;
    return result;
}

int statvfs64(const char *path, struct statvfs64 *buf) {
    static int (*real)(const char *, struct statvfs64 *);
    if (!real) real = (int (*)(const char *, struct statvfs64 *))dlsym(RTLD_NEXT, "statvfs64");
    int result = real(path, buf);
    if (result == 0 && disk_full()) buf->f_bavail = 0;
    return result;
}
