/* sandbox.c — run untrusted programs with namespaces, rlimits and seccomp
 * (qw/sandbox.h).
 *
 * The parent (any thread) prepares everything the child needs — paths,
 * argv, environment, the seccomp program — before fork/clone, so that the
 * child only makes system calls (no malloc, no stdio, raw set*id calls:
 * glibc's wrappers would signal threads the child does not have) and then
 * execs the interpreter.  The child reports a failure to set itself up as
 * "stage errno" on a close-on-exec pipe; a clean exec closes it empty. */
#define _GNU_SOURCE
#include "qw/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <time.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"

#define NOBODY 65534
#define MAX_ENTRIES 16

/* ---- state decided by the probe ---- */

typedef struct {
    char path[PATH_MAX];      /* absolute path on the host and in the sandbox */
    char link[PATH_MAX];      /* a symbolic link's target ("" for a bind mount) */
    unsigned long flags;      /* the source mount's flags to keep (MS_NOSUID …) */
} root_entry;

static struct {
    int probed, mode;
    char python[PATH_MAX];
    root_entry ent[MAX_ENTRIES];
    int n_ent;
    struct sock_filter *bpf;
    unsigned short bpf_len;
    int as_root;
} S;

void qw_sandbox_defaults(qw_sandbox_opts *o)
{
    memset(o, 0, sizeof *o);
    o->wall_s = 10;
    o->cpu_s = 10;
    o->mem_bytes = (size_t)1 << 30;
    o->file_bytes = (size_t)64 << 20;
    o->procs = 64;
    o->out_cap = 16 << 10;
}

const char *qw_sandbox_mode_name(qw_sandbox_mode mode)
{
    return mode == QW_SANDBOX_NAMESPACES
               ? "user, mount, PID, network, IPC and UTS namespaces, a read-only root, rlimits and seccomp"
               : "rlimits, seccomp and a process group, without namespaces";
}

/* ---- the seccomp filter, built once with libseccomp and kept as BPF ---- */

static int build_filter(void)
{
    static const char *const deny[] = {
        "socket", "connect", "bind", "listen", "accept", "accept4", "ptrace", "process_vm_readv",
        "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "setsid",
        "setpgid", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "kexec_load",
        "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
        "name_to_handle_at", "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "iopl", "ioperm",
        "fsopen", "fsmount", "move_mount", "open_tree", "mount_setattr", NULL,
    };
    static const unsigned long ns_flags[] = { CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                                              CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP, 0 };
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return qw_error(QW_EXIT_FAIL, "seccomp_init failed");
    int rc = 0;
    for (int i = 0; deny[i] && !rc; i++) {
        int nr = seccomp_syscall_resolve_name(deny[i]);
        if (nr == __NR_SCMP_ERROR) continue;   /* not on this architecture */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    for (int i = 0; ns_flags[i] && !rc; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    int nr3 = seccomp_syscall_resolve_name("clone3");
    if (!rc && nr3 != __NR_SCMP_ERROR) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr3, 0);
    int fd = -1;
    if (!rc) {
        fd = memfd_create("qw-seccomp", MFD_CLOEXEC);
        if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0) rc = -1;
    }
    seccomp_release(ctx);
    if (rc) {
        if (fd >= 0) close(fd);
        return qw_error(QW_EXIT_FAIL, "cannot build the seccomp filter (libseccomp: %s)", strerror(rc < 0 ? -rc : EINVAL));
    }
    off_t n = lseek(fd, 0, SEEK_END);
    S.bpf = qw_malloc(n > 0 ? (size_t)n : 1);
    if (n <= 0 || pread(fd, S.bpf, (size_t)n, 0) != n) {
        close(fd);
        return qw_error(QW_EXIT_FAIL, "cannot read back the seccomp filter");
    }
    close(fd);
    S.bpf_len = (unsigned short)(n / sizeof *S.bpf);
    return 0;
}

/* ---- the root's entries (namespace mode) ---- */

static unsigned long mount_flags_of(const char *path)
{
    struct statvfs f;
    unsigned long fl = 0;
    if (statvfs(path, &f) == 0) {
        if (f.f_flag & ST_NOSUID) fl |= MS_NOSUID;
        if (f.f_flag & ST_NODEV) fl |= MS_NODEV;
        if (f.f_flag & ST_NOEXEC) fl |= MS_NOEXEC;
        if (f.f_flag & ST_NOATIME) fl |= MS_NOATIME;
        if (f.f_flag & ST_NODIRATIME) fl |= MS_NODIRATIME;
        if (f.f_flag & ST_RELATIME) fl |= MS_RELATIME;
    }
    return fl;
}

static void add_entry(const char *path)
{
    struct stat st;
    if (S.n_ent == MAX_ENTRIES || lstat(path, &st)) return;
    for (int i = 0; i < S.n_ent; i++) if (!strcmp(S.ent[i].path, path)) return;
    root_entry *e = &S.ent[S.n_ent];
    memset(e, 0, sizeof *e);
    snprintf(e->path, sizeof e->path, "%s", path);
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(path, e->link, sizeof e->link - 1);
        if (n <= 0) return;
        e->link[n] = 0;
    } else if (S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode)) {
        e->flags = mount_flags_of(path);
    } else {
        return;
    }
    S.n_ent++;
}

static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '/' || !path[n]);
}

static void plan_root(void)
{
    static const char *const dirs[] = { "/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin", NULL };
    for (int i = 0; dirs[i]; i++) add_entry(dirs[i]);
    /* the interpreter's prefix when it lies elsewhere (e.g. /opt/py/bin/python3 → /opt/py) */
    char real[PATH_MAX];
    if (realpath(S.python, real)) {
        int inside = 0;
        for (int i = 0; dirs[i]; i++) if (under(real, dirs[i])) inside = 1;
        if (!inside) {
            char *slash = strrchr(real, '/');
            if (slash && slash != real) *slash = 0;        /* PREFIX/bin */
            slash = strrchr(real, '/');
            if (slash && slash != real) *slash = 0;        /* PREFIX */
            add_entry(real);
        }
    }
    static const char *const devs[] = { "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", NULL };
    for (int i = 0; devs[i]; i++) add_entry(devs[i]);
}

/* ---- the child ---- */

typedef struct {
    int ns;                   /* namespace mode */
    int sync_r, err_w, prog_fd, out_w, mark_w, marker_fd;
    char root[PATH_MAX + 16];      /* TMP/root (namespace mode) */
    char work[PATH_MAX + 16];      /* the working directory as the child sees it */
    char size_opt[64];        /* "size=…,mode=0755" for /work */
    char *argv[4];
    char *envp[8];
    char env_buf[2][PATH_MAX + 32];
    struct rlimit lim_cpu, lim_as, lim_nproc, lim_fsize, lim_nofile, lim_core;
    int drop_to_nobody;       /* rlimits mode as root */
    int setgroups_ok;         /* namespace mode as root: the map was written by a privileged parent */
} child_args;

static void child_fail(const child_args *a, int stage)
{
    int e = errno;
    char msg[32];
    int n = snprintf(msg, sizeof msg, "%d %d", stage, e);
    if (write(a->err_w, msg, (size_t)n) < 0) { /* nothing more to do */ }
    _exit(127);
}

/* Move fd to a number >= 300 (above the marker's range), close-on-exec. */
static int lift(int fd) { return fd < 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 300); }

static void close_others(int keep1, int keep2)
{
    int lo = keep1 < keep2 ? keep1 : keep2, hi = keep1 < keep2 ? keep2 : keep1;
    if (lo > 3) syscall(SYS_close_range, 3, lo - 1, 0);
    if (hi > lo + 1) syscall(SYS_close_range, lo + 1, hi - 1, 0);
    syscall(SYS_close_range, hi + 1, ~0U, 0);
}

static void join(char *dst, size_t n, const char *a, const char *b)
{
    if (snprintf(dst, n, "%s%s", a, b) >= (int)n) dst[0] = 0;   /* too long: the mount fails, reported */
}

/* The new root, in two steps.  enter_root, still as the creating user
 * (whose own directories, such as a private $TMPDIR, it may traverse):
 * a tmpfs on TMP/root, entered.  fill_root, as the namespace's root
 * (uid/gid 65534 outside when qw runs as root), through paths relative to
 * it: the read-only binds, /dev's nodes, /work, then pivot_root. */
static void enter_root(child_args *a)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) child_fail(a, 10);
    if (mount("tmpfs", a->root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755,uid=0,gid=0")) child_fail(a, 11);
    if (chdir(a->root)) child_fail(a, 20);
}

static void fill_root(child_args *a)
{
    char p[PATH_MAX + 16];
    if (mkdir("dev", 0755)) child_fail(a, 12);
    for (int i = 0; i < S.n_ent; i++) {
        const root_entry *e = &S.ent[i];
        join(p, sizeof p, ".", e->path);
        if (e->link[0]) {
            if (symlink(e->link, p)) child_fail(a, 13);
            continue;
        }
        /* make the mount point, with its parents */
        for (char *s = p + 2; *s; s++) {
            if (*s != '/') continue;
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) child_fail(a, 14);
            *s = '/';
        }
        struct stat st;
        if (stat(e->path, &st)) child_fail(a, 15);
        if (S_ISDIR(st.st_mode)) {
            if (mkdir(p, 0755) && errno != EEXIST) child_fail(a, 14);
        } else {
            int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0) child_fail(a, 14);
            close(fd);
        }
        if (mount(e->path, p, NULL, MS_BIND | MS_REC, NULL)) child_fail(a, 16);
        if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | e->flags, NULL)) child_fail(a, 17);
    }
    if (mkdir("work", 0755)) child_fail(a, 18);
    if (mount("tmpfs", "work", "tmpfs", MS_NOSUID | MS_NODEV, a->size_opt)) child_fail(a, 19);
    if (syscall(SYS_pivot_root, ".", ".")) child_fail(a, 21);
    if (umount2(".", MNT_DETACH)) child_fail(a, 22);
    if (chdir("/")) child_fail(a, 23);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)) child_fail(a, 24);
}

static void drop_caps(child_args *a)
{
    for (int c = 0; c <= 63; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) child_fail(a, 30);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d)) child_fail(a, 31);
}

/* The interpreter's process: its own session, the limits, the filter, exec. */
static void exec_python(child_args *a)
{
    if (setsid() < 0) child_fail(a, 6);
    if (setrlimit(RLIMIT_CPU, &a->lim_cpu) || setrlimit(RLIMIT_AS, &a->lim_as) ||
        setrlimit(RLIMIT_NPROC, &a->lim_nproc) || setrlimit(RLIMIT_FSIZE, &a->lim_fsize) ||
        setrlimit(RLIMIT_NOFILE, &a->lim_nofile) || setrlimit(RLIMIT_CORE, &a->lim_core))
        child_fail(a, 7);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) child_fail(a, 8);
    struct sock_fprog prog_bpf = { S.bpf_len, S.bpf };
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog_bpf)) child_fail(a, 9);
    execve(a->argv[0], a->argv, a->envp);
    child_fail(a, 40);
}

/* Namespace mode: this process is PID 1 of the new PID namespace.  The
 * kernel ignores signals to PID 1 that it has no handler for, even the
 * CPU limit's SIGXCPU and SIGKILL, so the interpreter runs as PID 2 and
 * PID 1 only reaps: when the interpreter ends, it reports the wait status
 * and CPU time ("S status ms") on the error pipe and exits, and the kernel
 * kills whatever else is left in the namespace. */
static void run_init(child_args *a)
{
    pid_t py = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);   /* fork, without glibc's handlers */
    if (py < 0) child_fail(a, 32);
    if (py == 0) exec_python(a);
    close(0), close(1), close(2), close(a->marker_fd);   /* so the pipes end with the interpreter's processes */
    for (;;) {
        int st;
        struct rusage ru;
        pid_t w = (pid_t)syscall(SYS_wait4, -1, &st, 0, &ru);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) _exit(127);
        if (w == py) {
            char msg[64];
            long ms = ru.ru_utime.tv_sec * 1000L + ru.ru_utime.tv_usec / 1000 + ru.ru_stime.tv_sec * 1000L +
                      ru.ru_stime.tv_usec / 1000;
            int n = snprintf(msg, sizeof msg, "S %d %ld", st, ms);
            if (write(a->err_w, msg, (size_t)n) < 0) _exit(127);
            _exit(0);
        }
    }
}

static int child_main(void *arg)
{
    child_args *a = arg;
    /* our descriptors above the marker's range, then into place */
    a->err_w = lift(a->err_w);
    int prog = lift(a->prog_fd), out = lift(a->out_w), mark = lift(a->mark_w), sync_r = lift(a->sync_r);
    if (a->err_w < 0 || prog < 0 || out < 0 || mark < 0) _exit(127);
    if (dup2(prog, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 || dup2(mark, a->marker_fd) < 0) child_fail(a, 1);
    if (a->ns) {
        char c;
        if (read(sync_r, &c, 1) != 1) _exit(127);   /* the parent gave up */
    }
    close_others(a->marker_fd, a->err_w);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) child_fail(a, 2);
    if (a->ns) {
        enter_root(a);
        if (a->setgroups_ok && syscall(SYS_setgroups, 0, NULL)) child_fail(a, 3);
        if (syscall(SYS_setresgid, 0, 0, 0) || syscall(SYS_setresuid, 0, 0, 0)) child_fail(a, 4);
        fill_root(a);
        if (chdir(a->work)) child_fail(a, 5);
        drop_caps(a);
        run_init(a);
    }
    if (chdir(a->work)) child_fail(a, 5);   /* first: its parents may be closed to nobody */
    if (a->drop_to_nobody) {
        if (syscall(SYS_setgroups, 0, NULL)) child_fail(a, 3);
        if (syscall(SYS_setresgid, NOBODY, NOBODY, NOBODY) || syscall(SYS_setresuid, NOBODY, NOBODY, NOBODY))
            child_fail(a, 4);
    }
    exec_python(a);
    return 127;
}

/* ---- the parent ---- */

static const char *stage_name(int stage)
{
    if (stage >= 10 && stage < 30) return "setting up the root";
    switch (stage) {
    case 1: return "arranging descriptors";
    case 3: case 4: return "changing user";
    case 5: return "entering the working directory";
    case 6: return "starting a session";
    case 7: return "setting limits";
    case 8: case 9: return "loading the seccomp filter";
    case 30: case 31: return "dropping capabilities";
    case 40: return "executing the interpreter";
    default: return "starting";
    }
}

/* Remove a tree the program may have made unreadable. */
static void remove_tree_at(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) return;
    if (S_ISDIR(st.st_mode)) {
        fchmodat(dfd, name, 0700, 0);
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            DIR *d = fdopendir(fd);
            if (d) {
                struct dirent *e;
                while ((e = readdir(d)))
                    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove_tree_at(dirfd(d), e->d_name);
                closedir(d);
            } else {
                close(fd);
            }
        }
        unlinkat(dfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dfd, name, 0);
    }
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Tasks (threads count) that belong to real uid `uid` now. */
static long tasks_of(uid_t uid)
{
    DIR *d = opendir("/proc");
    long n = 0;
    if (!d) return 0;
    struct dirent *e;
    char path[300], line[256];
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        long u = -1, th = 1;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "Uid:", 4)) u = strtol(line + 4, NULL, 10);
            else if (!strncmp(line, "Threads:", 8)) th = strtol(line + 8, NULL, 10);
        }
        fclose(f);
        if (u == (long)uid) n += th;
    }
    closedir(d);
    return n;
}

static void kill_run(pid_t pid, int ns)
{
    if (ns) kill(pid, SIGKILL);   /* PID 1 of its namespace: the kernel kills the rest */
    else kill(-pid, SIGKILL);     /* the process group it cannot leave */
}

static double cpu_seconds(const struct rusage *ru)
{
    return ru->ru_utime.tv_sec + ru->ru_utime.tv_usec * 1e-6 + ru->ru_stime.tv_sec + ru->ru_stime.tv_usec * 1e-6;
}

static int run_mode(int mode, const qw_sandbox_opts *o, const char *program, size_t len, int marker_fd,
                    qw_sandbox_result *r)
{
    memset(r, 0, sizeof *r);
    r->end = QW_RUN_ERROR;
    int ns = mode == QW_SANDBOX_NAMESPACES;
    double t0 = qw_now();
    const char *tmpdir = getenv("TMPDIR");
    char tmpl[PATH_MAX], path[PATH_MAX + 32];
    snprintf(tmpl, sizeof tmpl, "%s/qw-sandbox-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(tmpl)) {
        snprintf(r->error, sizeof r->error, "cannot make a temporary directory '%.300s': %s", tmpl, strerror(errno));
        return 0;
    }
    child_args *a = qw_calloc(1, sizeof *a);
    a->ns = ns;
    a->marker_fd = marker_fd >= 3 && marker_fd < 256 ? marker_fd : 255;
    int pipes[4][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };   /* out, marker, err, sync */
    int prog_fd = -1;
    pid_t pid = -1;
    void *stack = NULL;
    size_t stack_size = 256 << 10;
    char why[512] = "";

    snprintf(path, sizeof path, "%s/prog.py", tmpl);
    int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (wfd < 0 || write(wfd, program, len) != (ssize_t)len || close(wfd)) {
        snprintf(why, sizeof why, "cannot write '%.300s': %s", path, strerror(errno));
        goto done;
    }
    prog_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (prog_fd < 0) {
        snprintf(why, sizeof why, "cannot open '%.300s': %s", path, strerror(errno));
        goto done;
    }
    for (int i = 0; i < 4; i++)
        if ((i < 3 || ns) && pipe2(pipes[i], O_CLOEXEC)) {
            snprintf(why, sizeof why, "pipe: %s", strerror(errno));
            goto done;
        }
    if (ns) {
        snprintf(a->root, sizeof a->root, "%s/root", tmpl);
        if (mkdir(a->root, 0755)) {
            snprintf(why, sizeof why, "cannot make '%.300s': %s", a->root, strerror(errno));
            goto done;
        }
        snprintf(a->work, sizeof a->work, "/work");
    } else {
        snprintf(a->work, sizeof a->work, "%s/work", tmpl);
        if (mkdir(a->work, 0700) || (S.as_root && chown(a->work, NOBODY, NOBODY))) {
            snprintf(why, sizeof why, "cannot make '%.300s': %s", a->work, strerror(errno));
            goto done;
        }
    }
    snprintf(a->size_opt, sizeof a->size_opt, "size=%zu,mode=0755", o->file_bytes);
    a->argv[0] = S.python, a->argv[1] = "-B", a->argv[2] = "-", a->argv[3] = NULL;
    if (snprintf(a->env_buf[0], sizeof a->env_buf[0], "HOME=%s", a->work) >= (int)sizeof a->env_buf[0] ||
        snprintf(a->env_buf[1], sizeof a->env_buf[1], "TMPDIR=%s", a->work) >= (int)sizeof a->env_buf[1]) {
        snprintf(why, sizeof why, "the temporary directory's name is too long");
        goto done;
    }
    a->envp[0] = "PATH=/usr/local/bin:/usr/bin:/bin";
    a->envp[1] = a->env_buf[0];
    a->envp[2] = a->env_buf[1];
    a->envp[3] = "LANG=C.UTF-8";
    a->envp[4] = "PYTHONDONTWRITEBYTECODE=1";
    a->envp[5] = NULL;
    rlim_t cpu = (rlim_t)(o->cpu_s + 0.999);
    if (cpu < 1) cpu = 1;
    a->lim_cpu = (struct rlimit){ cpu, cpu + 1 };
    a->lim_as = (struct rlimit){ o->mem_bytes, o->mem_bytes };
    rlim_t nproc = (rlim_t)o->procs;
    if (!ns) nproc += (rlim_t)tasks_of(S.as_root ? NOBODY : getuid());
    a->lim_nproc = (struct rlimit){ nproc, nproc };
    a->lim_fsize = (struct rlimit){ o->file_bytes, o->file_bytes };
    a->lim_nofile = (struct rlimit){ 256, 256 };
    a->lim_core = (struct rlimit){ 0, 0 };
    a->drop_to_nobody = !ns && S.as_root;
    a->setgroups_ok = ns && S.as_root;
    a->prog_fd = prog_fd, a->out_w = pipes[0][1], a->mark_w = pipes[1][1], a->err_w = pipes[2][1];
    a->sync_r = ns ? pipes[3][0] : -1;

    if (ns) {
        stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            stack = NULL;
            snprintf(why, sizeof why, "mmap: %s", strerror(errno));
            goto done;
        }
        pid = clone(child_main, (char *)stack + stack_size,
                    CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD, a);
    } else {
        pid = fork();
        if (pid == 0) child_main(a);
    }
    if (pid < 0) {
        snprintf(why, sizeof why, "%s: %s", ns ? "clone with new namespaces" : "fork", strerror(errno));
        goto done;
    }
    close(pipes[0][1]), close(pipes[1][1]), close(pipes[2][1]);
    pipes[0][1] = pipes[1][1] = pipes[2][1] = -1;
    if (ns) {
        close(pipes[3][0]);
        pipes[3][0] = -1;
        char map[64], file[64];
        int bad = 0;
        uid_t ou = S.as_root ? NOBODY : getuid();
        gid_t og = S.as_root ? NOBODY : getgid();
        snprintf(file, sizeof file, "/proc/%d/setgroups", (int)pid);
        if (!S.as_root && write_file(file, "deny")) bad = 1;
        snprintf(file, sizeof file, "/proc/%d/uid_map", (int)pid);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)ou);
        if (!bad && write_file(file, map)) bad = 1;
        snprintf(file, sizeof file, "/proc/%d/gid_map", (int)pid);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)og);
        if (!bad && write_file(file, map)) bad = 1;
        if (bad) {
            snprintf(why, sizeof why, "cannot write '%s': %s", file, strerror(errno));
            kill(pid, SIGKILL);
        } else if (write(pipes[3][1], "g", 1) != 1) {
            snprintf(why, sizeof why, "sync: %s", strerror(errno));
            kill(pid, SIGKILL);
        }
        close(pipes[3][1]);
        pipes[3][1] = -1;
    }

    /* collect output and the marker until the interpreter ends and every writer is gone */
    qw_buf out = {0}, mark = {0};
    int open_out = 1, open_mark = 1, exited = 0, status = 0, killed = 0, timed_out = 0, cancelled = 0;
    double end_at = t0 + o->wall_s, drain_until = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (!exited || open_out || open_mark) {
        if (!exited) {
            pid_t w = wait4(pid, &status, WNOHANG, &ru);
            if (w == pid) {
                exited = 1;
                if (!ns) kill(-pid, SIGKILL);   /* whatever it left behind */
                drain_until = qw_now() + 2;
            }
        }
        double now = qw_now();
        if (!exited && !killed) {
            if (now >= end_at) timed_out = 1;
            else if (o->cancelled && o->cancelled()) cancelled = 1;
            if (timed_out || cancelled) {
                kill_run(pid, ns);
                killed = 1;
            }
        }
        if (exited && (now > drain_until || (!open_out && !open_mark))) break;   /* done, or a writer outlived it */
        /* wake for output, for the marker, and (through a pidfd, where the kernel has them) for the exit */
        struct pollfd pf[3] = { { open_out ? pipes[0][0] : -1, POLLIN, 0 }, { open_mark ? pipes[1][0] : -1, POLLIN, 0 },
                                { exited ? -1 : pidfd, POLLIN, 0 } };
        if (poll(pf, 3, pidfd >= 0 ? 100 : 10) < 0 && errno != EINTR) break;
        char buf[65536];
        for (int i = 0; i < 2; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(pf[i].fd, buf, sizeof buf);
            if (n <= 0) {
                if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    if (i == 0) open_out = 0; else open_mark = 0;
                }
                continue;
            }
            if (i == 0) {
                r->out_total += (size_t)n;
                size_t keep = out.n < o->out_cap ? o->out_cap - out.n : 0;
                qw_buf_add(&out, buf, (size_t)n < keep ? (size_t)n : keep);
            } else if (mark.n < 255) {
                size_t keep = 255 - mark.n;
                qw_buf_add(&mark, buf, (size_t)n < keep ? (size_t)n : keep);
            }
        }
    }
    if (!exited) waitpid(pid, &status, 0);
    if (pidfd >= 0) close(pidfd);
    if (!ns) {   /* the group's stragglers (ours to reap: qw is their subreaper), until none is left */
        for (int i = 0; i < 200 && kill(-pid, SIGKILL) == 0; i++) {
            while (waitpid(-pid, NULL, WNOHANG) > 0) {}
            usleep(5000);
        }
    }
    r->wall = qw_now() - t0;
    r->out_len = out.n;
    r->out = qw_strdup(qw_buf_cstr(&out));
    r->marker = qw_strdup(qw_buf_cstr(&mark));
    qw_buf_free(&out);
    qw_buf_free(&mark);

    char eb[128];
    ssize_t en = read(pipes[2][0], eb, sizeof eb - 1);
    eb[en > 0 ? en : 0] = 0;
    long cpu_ms = -1;
    if (eb[0] == 'S') {   /* namespace mode: PID 1's report of the interpreter's end */
        sscanf(eb, "S %d %ld", &status, &cpu_ms);
    } else if (eb[0]) {
        int stage = 0, e = 0;
        sscanf(eb, "%d %d", &stage, &e);
        snprintf(why, sizeof why, "%s: %s", stage_name(stage), strerror(e));
    }
    if (!ns) cpu_ms = (long)(cpu_seconds(&ru) * 1000);
    if (why[0]) {
    } else if (cancelled) {
        r->end = QW_RUN_CANCELLED;
    } else if (timed_out) {
        r->end = QW_RUN_TIMEOUT;
    } else if (ns && cpu_ms < 0) {
        snprintf(why, sizeof why, "the sandbox's init ended without a report (status %d)", status);
    } else {
        r->end = QW_RUN_EXITED;
        if (WIFEXITED(status)) {
            r->exit_status = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            r->term_signal = WTERMSIG(status);
            if (r->term_signal == SIGXCPU || (r->term_signal == SIGKILL && cpu_ms >= (long)(o->cpu_s * 1000)))
                r->end = QW_RUN_TIMEOUT;
        }
    }

done:
    if (why[0]) {
        r->end = QW_RUN_ERROR;
        snprintf(r->error, sizeof r->error, "%s", why);
    }
    if (!r->out) r->out = qw_strdup("");
    if (!r->marker) r->marker = qw_strdup("");
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) if (pipes[i][j] >= 0) close(pipes[i][j]);
    if (prog_fd >= 0) close(prog_fd);
    if (stack) munmap(stack, stack_size);
    free(a);
    remove_tree_at(AT_FDCWD, tmpl);
    return 0;
}

int qw_sandbox_run(const qw_sandbox_opts *o, const char *program, size_t len, int marker_fd, qw_sandbox_result *r)
{
    return run_mode(S.mode, o, program, len, marker_fd, r);
}

void qw_sandbox_result_free(qw_sandbox_result *r)
{
    free(r->out);
    free(r->marker);
    r->out = r->marker = NULL;
}

/* The interpreter: /usr/bin/python3 when it is there, else python3 on PATH. */
static int find_python(void)
{
    if (S.python[0]) {
        if (access(S.python, X_OK)) return qw_error(QW_EXIT_FAIL, "'%s': %s", S.python, strerror(errno));
        return 0;
    }
    if (!access("/usr/bin/python3", X_OK)) {
        snprintf(S.python, sizeof S.python, "/usr/bin/python3");
        return 0;
    }
    const char *path = getenv("PATH");
    char dir[PATH_MAX];
    for (const char *p = path ? path : ""; *p;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        snprintf(dir, sizeof dir, "%.*s/python3", (int)n, p);
        if (n && !access(dir, X_OK)) {
            if (!realpath(dir, S.python)) snprintf(S.python, sizeof S.python, "%s", dir);
            return 0;
        }
        p += n + (c != NULL);
    }
    return qw_error(QW_EXIT_FAIL, "python3 is not found (neither /usr/bin/python3 nor on PATH)");
}

int qw_sandbox_probe(qw_sandbox_mode want, const char *python, qw_sandbox_mode *mode)
{
    if (S.probed) {
        *mode = S.mode;
        return 0;
    }
    if (python) snprintf(S.python, sizeof S.python, "%s", python);
    int rc = find_python();
    if (rc) return rc;
    if ((rc = build_filter())) return rc;
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    S.as_root = geteuid() == 0;
    plan_root();
    qw_sandbox_opts o;
    qw_sandbox_defaults(&o);
    static const char probe[] = "print('qw-sandbox-ok')\n";
    char why[2][300];
    const int modes[2] = { QW_SANDBOX_NAMESPACES, QW_SANDBOX_RLIMITS };
    for (int i = 0; i < 2; i++) {
        if (want && (int)want != modes[i]) {
            snprintf(why[i], sizeof why[i], "not tried");
            continue;
        }
        qw_sandbox_result r;
        run_mode(modes[i], &o, probe, sizeof probe - 1, 3, &r);
        int ok = r.end == QW_RUN_EXITED && r.exit_status == 0 && !strcmp(r.out, "qw-sandbox-ok\n");
        if (r.end == QW_RUN_ERROR) snprintf(why[i], sizeof why[i], "%.290s", r.error);
        else snprintf(why[i], sizeof why[i], "exit %d, signal %d, output '%.100s'", r.exit_status, r.term_signal, r.out);
        qw_sandbox_result_free(&r);
        if (ok) {
            S.mode = modes[i];
            S.probed = 1;
            /* the program may run as our user: keep it out of our memory (in
             * namespace mode it cannot see us, and a non-dumpable parent could
             * not write its child's uid_map) */
            if (S.mode == QW_SANDBOX_RLIMITS) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
            *mode = S.mode;
            return 0;
        }
    }
    return qw_error(QW_EXIT_FAIL, "cannot run '%s' in a sandbox: with namespaces: %s; without: %s", S.python, why[0],
                    why[1]);
}
