/* qw/sandbox.h — run an untrusted program (python3 by default) with the
 * kernel's isolation, collect its output and its verdict, leave nothing
 * behind.
 *
 * One run: a fresh temporary directory is made under $TMPDIR (or /tmp);
 * the program text is written into it and given to the interpreter on its
 * standard input ("python3 -B -"); the process runs with a clean
 * environment, in its own session, with these limits:
 *
 *   rlimits     RLIMIT_CPU (cpu_s, then SIGKILL a second later),
 *               RLIMIT_AS (mem_bytes), RLIMIT_NPROC (procs),
 *               RLIMIT_FSIZE (file_bytes), RLIMIT_NOFILE (256), RLIMIT_CORE 0
 *   seccomp     a libseccomp filter, loaded last before execve, that makes
 *               these system calls fail with EPERM: socket, connect, bind,
 *               listen, accept, accept4, ptrace, process_vm_readv/writev,
 *               mount, umount2, pivot_root, chroot, unshare, setns,
 *               setsid, setpgid, clone with any namespace flag, clone3
 *               (ENOSYS, so the C library falls back to clone), bpf,
 *               perf_event_open, keyctl, add_key, request_key,
 *               userfaultfd, kexec_load, init/finit/delete_module,
 *               open_by_handle_at, name_to_handle_at, reboot, swapon/off,
 *               syslog, acct, quotactl, iopl, ioperm; and no_new_privs
 *   wall clock  wall_s: then every process of the run is killed
 *   output      standard output and error, merged, are kept up to
 *               out_cap bytes; the rest is read and counted, not kept
 *
 * and, in one of two modes, chosen once per process by a trial run
 * (qw_sandbox_probe):
 *
 *   QW_SANDBOX_NAMESPACES   new user, mount, PID, network, IPC and UTS
 *       namespaces.  The root is a read-only tmpfs holding read-only bind
 *       mounts of /usr, /bin, /lib, /lib64, /lib32, /libx32 and /sbin
 *       (symbolic links where the host has them), of the directory
 *       holding the interpreter when it lies elsewhere, /dev/null,
 *       /dev/zero, /dev/random and /dev/urandom; the working directory
 *       /work is a fresh tmpfs of file_bytes, the only writable place.
 *       No /etc, /home, /root, /proc, /tmp or /var: nothing else of the
 *       host is visible.  The network namespace has only a loopback
 *       interface, down.  The interpreter is PID 1 of its namespace: when
 *       it exits or is killed, the kernel kills every process it left.
 *       Inside, the program runs as root of its user namespace with no
 *       capabilities; outside, that is uid/gid 65534 (nobody) when qw runs
 *       as root, else qw's own uid and gid.
 *   QW_SANDBOX_RLIMITS      when the kernel or the container refuses
 *       unprivileged namespaces: the rlimits and the filter above, a
 *       process group of its own (setsid and setpgid are denied, so it
 *       cannot leave), SIGKILL to the whole group when the program ends or
 *       times out, and the temporary directory as working directory.  When
 *       qw runs as root the program runs as uid/gid 65534 with no
 *       supplementary groups; otherwise as qw's user, which means it can
 *       read what that user can read and write where that user can write
 *       (the filter only keeps it off the network and away from other
 *       processes' memory; it can still signal that user's processes).
 *       RLIMIT_NPROC then counts all of that user's processes (nobody's,
 *       when qw runs as root), so procs is added to the number the user
 *       has when the run starts, and programs that run at the same time
 *       share it: a fork bomb in one can make fork fail in another.
 *
 * In rlimits mode qw's own process is made non-dumpable (prctl
 * PR_SET_DUMPABLE 0) by the probe, so a program running as the same user
 * cannot read or write its memory through /proc.  qw becomes a child
 * subreaper (PR_SET_CHILD_SUBREAPER), so the processes a program leaves
 * are qw's to kill and reap.  In both modes the temporary directory is removed
 * after the run (directories made unreadable are made readable first).
 *
 * Thread safety: qw_sandbox_run may be called from several threads at
 * once, after qw_sandbox_probe returned.  No allocation happens between
 * fork and exec.
 */
#ifndef QW_SANDBOX_H
#define QW_SANDBOX_H

#include <stddef.h>

typedef enum {
    QW_SANDBOX_NAMESPACES = 1,
    QW_SANDBOX_RLIMITS = 2,
} qw_sandbox_mode;

typedef struct {
    double wall_s;            /* wall-clock limit, seconds (> 0) */
    double cpu_s;             /* CPU-time limit per process, seconds (> 0; rounded up) */
    size_t mem_bytes;         /* RLIMIT_AS per process */
    size_t file_bytes;        /* largest file; in namespace mode also the size of /work */
    int procs;                /* processes (and threads) the run may have at once */
    size_t out_cap;           /* bytes of output kept */
    int (*cancelled)(void);   /* polled about 10 times a second; non-zero kills the run (may be NULL) */
} qw_sandbox_opts;

/* Defaults: 10 s wall, 10 s CPU, 1 GiB address space, 64 MiB files,
 * 64 processes, 16 KiB of output. */
void qw_sandbox_defaults(qw_sandbox_opts *o);

typedef enum {
    QW_RUN_EXITED = 0,        /* exited by itself (status in exit_status, or signal in term_signal) */
    QW_RUN_TIMEOUT = 1,       /* killed at the wall limit, or by the CPU limit */
    QW_RUN_CANCELLED = 2,     /* killed because cancelled() said so */
    QW_RUN_ERROR = 3,         /* the sandbox could not start it (message in `error`) */
} qw_run_end;

typedef struct {
    qw_run_end end;
    int exit_status;          /* QW_RUN_EXITED and not signalled: the exit status */
    int term_signal;          /* the signal that ended the interpreter, 0 if none */
    char *out;                /* the first out_cap bytes of output, NUL-terminated (owned; free()) */
    size_t out_len;           /* bytes kept */
    size_t out_total;         /* bytes the program wrote in all */
    char *marker;             /* what the program wrote on the marker fd (at most 255 bytes; owned; free()) */
    double wall;              /* seconds from start to end */
    char error[512];          /* QW_RUN_ERROR: why */
} qw_sandbox_result;

/* Decide the mode once (later calls return the first answer): `want` 0
 * tries a run in namespaces and uses rlimits only when that cannot start;
 * QW_SANDBOX_NAMESPACES or QW_SANDBOX_RLIMITS insist on one.  `python` is
 * the interpreter (NULL: /usr/bin/python3 when it exists, else python3 on
 * PATH).  Returns 0 and *mode, or QW_EXIT_FAIL with a message when the
 * interpreter is not found or cannot run in the mode(s) tried.  Not thread
 * safe: call it before starting threads. */
int qw_sandbox_probe(qw_sandbox_mode want, const char *python, qw_sandbox_mode *mode);

/* One line describing the mode for a message ("user, mount, PID and
 * network namespaces" …). */
const char *qw_sandbox_mode_name(qw_sandbox_mode mode);

/* Run `program` (text, `len` bytes) under the probed mode.  `marker_fd`,
 * when >= 3 and < 256, is a descriptor number the program finds open for
 * writing (a pipe back to the caller); what it writes there is returned in
 * r->marker, apart from the output, so a harness can append code that
 * reports completion through a channel the program under test does not
 * know of.  Fills *r (the caller frees r->out and r->marker) and returns
 * 0; a failure to start (no fork, no temporary directory) is r->end ==
 * QW_RUN_ERROR with 0 returned as well, so the caller decides.  When
 * qw_sandbox_run returns, every process of the run is dead and the
 * temporary directory is gone. */
int qw_sandbox_run(const qw_sandbox_opts *o, const char *program, size_t len, int marker_fd, qw_sandbox_result *r);

void qw_sandbox_result_free(qw_sandbox_result *r);

#endif
