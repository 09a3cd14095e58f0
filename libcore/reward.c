/* reward.c — verifiers: math answers, the think format, code in the
 * sandbox, and reward programs as coprocesses (qw/reward.h). */
#define _GNU_SOURCE
#include "qw/reward.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qw/cli.h"

/* ---- math: finding the answer ---- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The last occurrence of `pat` in s[0..n) at or before `before` (exclusive
 * end), or -1; case-insensitive when `icase`. */
static long find_last(const char *s, size_t n, const char *pat, int icase)
{
    size_t m = strlen(pat);
    if (m > n) return -1;
    for (size_t i = n - m + 1; i-- > 0;)
        if (icase ? !strncasecmp(s + i, pat, m) : !memcmp(s + i, pat, m)) return (long)i;
    return -1;
}

/* A plain number at s[i..n): digits with thousands separators (",ddd"
 * groups) and a decimal part, or ".ddd".  Returns its end, or i. */
static size_t scan_plain(const char *s, size_t n, size_t i)
{
    size_t j = i;
    while (j < n && is_digit(s[j])) j++;
    if (j > i)
        while (j + 3 < n && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) &&
               is_digit(s[j + 3]) && !(j + 4 < n && is_digit(s[j + 4])))
            j += 4;
    if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
        j++;
        while (j < n && is_digit(s[j])) j++;
    }
    return j;
}

static size_t skip_prefix(const char *s, size_t n, size_t i, const char *p)
{
    size_t m = strlen(p);
    return i + m <= n && !memcmp(s + i, p, m) ? i + m : i;
}

/* A number token at s[i..n): [-|U+2212][$|\$] (\frac{P}{P} | P[/P]) [%|\%].
 * Returns its end, or i when none starts there. */
static size_t scan_number(const char *s, size_t n, size_t i)
{
    size_t j = i;
    if (j < n && s[j] == '-') j++;
    else j = skip_prefix(s, n, j, "\xe2\x88\x92");
    size_t k = skip_prefix(s, n, j, "\\$");
    j = k != j ? k : (j < n && s[j] == '$' ? j + 1 : j);
    size_t body = j;
    static const char *const fracs[] = { "\\frac{", "\\dfrac{", "\\tfrac{", NULL };
    for (int f = 0; fracs[f]; f++) {
        size_t a = skip_prefix(s, n, j, fracs[f]);
        if (a == j) continue;
        size_t a2 = a < n && s[a] == '-' ? a + 1 : a;
        size_t ae = scan_plain(s, n, a2);
        if (ae == a2 || ae + 1 >= n || s[ae] != '}' || s[ae + 1] != '{') return i;
        size_t be = scan_plain(s, n, ae + 2);
        if (be == ae + 2 || be >= n || s[be] != '}') return i;
        j = be + 1;
        goto suffix;
    }
    j = scan_plain(s, n, j);
    if (j == body) return i;
    if (j + 1 < n && s[j] == '/' && is_digit(s[j + 1])) j = scan_plain(s, n, j + 1);
suffix:
    k = skip_prefix(s, n, j, "\\%");
    if (k != j) return k;
    return j < n && s[j] == '%' ? j + 1 : j;
}

/* The first number token at or after i, skipping spaces, ':', '*' and
 * '=' (as in "#### 18", "The answer is: **18**"). */
static int number_after(const char *s, size_t n, size_t i, qw_buf *out)
{
    while (i < n && (isspace((unsigned char)s[i]) || s[i] == ':' || s[i] == '*' || s[i] == '=')) i++;
    size_t e = scan_number(s, n, i);
    if (e == i) return 0;
    qw_buf_add(out, s + i, e - i);
    return 1;
}

/* The content of the last \boxed{…} or \fbox{…} (braces nested), or of
 * "\boxed X" up to white space or '$'. */
static int last_boxed(const char *s, size_t n, qw_buf *out)
{
    size_t lim = n;
    for (;;) {
        long b = find_last(s, lim, "\\boxed", 0), f = find_last(s, lim, "\\fbox", 0);
        long at = b > f ? b : f;
        if (at < 0) return 0;
        size_t i = (size_t)at + (b > f ? 6 : 5);
        while (i < n && s[i] == ' ') i++;
        if (i < n && s[i] == '{') {
            int depth = 0;
            size_t j = i;
            for (; j < n; j++) {
                if (s[j] == '\\' && j + 1 < n && (s[j + 1] == '{' || s[j + 1] == '}')) { j++; continue; }
                if (s[j] == '{') depth++;
                else if (s[j] == '}' && --depth == 0) break;
            }
            if (j < n) {
                qw_buf_add(out, s + i + 1, j - i - 1);
                return 1;
            }
        } else if (i > (size_t)at + 5 && i < n && s[i - 1] == ' ') {
            size_t j = i;
            while (j < n && !isspace((unsigned char)s[j]) && s[j] != '$') j++;
            if (j > i) {
                qw_buf_add(out, s + i, j - i);
                return 1;
            }
        }
        lim = (size_t)at;   /* unbalanced: try an earlier one */
    }
}

qw_math_form qw_math_extract(const char *s, size_t n, qw_buf *out)
{
    if (last_boxed(s, n, out)) return QW_MATH_BOXED;
    long h = find_last(s, n, "####", 0);
    if (h >= 0 && number_after(s, n, (size_t)h + 4, out)) return QW_MATH_HASHES;
    long a = find_last(s, n, "the answer is", 1);
    if (a >= 0 && number_after(s, n, (size_t)a + 13, out)) return QW_MATH_ANSWER_IS;
    size_t last = 0, last_end = 0;
    for (size_t i = 0; i < n;) {
        int sign_ok = i == 0 || !(isalnum((unsigned char)s[i - 1]) || s[i - 1] == ')' || s[i - 1] == '.');
        if ((s[i] == '-' || (unsigned char)s[i] == 0xe2) && !sign_ok) { i++; continue; }
        if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.') && is_digit(s[i])) { i++; continue; }
        size_t e = scan_number(s, n, i);
        if (e > i) {
            last = i, last_end = e;
            i = e;
        } else {
            i++;
        }
    }
    if (last_end > last) {
        qw_buf_add(out, s + last, last_end - last);
        return QW_MATH_LAST_NUMBER;
    }
    return QW_MATH_NONE;
}

static void trim_add(const char *s, size_t n, qw_buf *out)
{
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    qw_buf_add(out, s, n);
}

void qw_math_gold(const char *s, size_t n, qw_buf *out)
{
    long h = find_last(s, n, "####", 0);
    if (h >= 0) {
        const char *p = s + h + 4, *nl = memchr(p, '\n', n - (size_t)h - 4);
        trim_add(p, nl ? (size_t)(nl - p) : n - (size_t)h - 4, out);
        return;
    }
    if (last_boxed(s, n, out)) return;
    trim_add(s, n, out);
}

/* ---- math: normalising ---- */

static void replace_all(qw_buf *b, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    qw_buf r = {0};
    for (size_t i = 0; i < b->n;) {
        if (i + fl <= b->n && !memcmp(b->p + i, from, fl)) {
            qw_buf_add(&r, to, tl);
            i += fl;
        } else {
            qw_buf_addc(&r, b->p[i++]);
        }
    }
    qw_buf_free(b);
    *b = r;
}

/* Remove every \cmd{…} group (`keep`: keep its content instead). */
static void drop_groups(qw_buf *b, const char *cmd, int keep)
{
    size_t cl = strlen(cmd);
    qw_buf r = {0};
    for (size_t i = 0; i < b->n;) {
        if (i + cl < b->n && !memcmp(b->p + i, cmd, cl) && b->p[i + cl] == '{') {
            size_t j = i + cl;
            int depth = 0;
            for (; j < b->n; j++) {
                if (b->p[j] == '{') depth++;
                else if (b->p[j] == '}' && --depth == 0) break;
            }
            if (j < b->n) {
                if (keep) qw_buf_add(&r, b->p + i + cl + 1, j - i - cl - 1);
                i = j + 1;
                continue;
            }
        }
        qw_buf_addc(&r, b->p[i++]);
    }
    qw_buf_free(b);
    *b = r;
}

typedef __int128 i128;
#define BIG ((i128)1000000000000000000 * (i128)1000000000000000000)   /* 10^36 */

/* A plain number's exact value num/den (den a power of ten); 0 when it has
 * too many digits. */
static int plain_value(const char *s, size_t n, i128 *num, i128 *den)
{
    i128 v = 0, d = 1;
    int frac = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ',') continue;
        if (s[i] == '.') { frac = 1; continue; }
        if (v >= BIG / 10 || d >= BIG / 10) return 0;
        v = v * 10 + (s[i] - '0');
        if (frac) d *= 10;
    }
    *num = v, *den = d;
    return 1;
}

static i128 gcd128(i128 a, i128 b)
{
    while (b) { i128 t = a % b; a = b; b = t; }
    return a;
}

static void add_i128(qw_buf *out, i128 v)
{
    char tmp[48];
    int k = 0;
    if (v == 0) tmp[k++] = '0';
    while (v > 0) { tmp[k++] = (char)('0' + (int)(v % 10)); v /= 10; }
    while (k) qw_buf_addc(out, tmp[--k]);
}

/* Digits of a plain number, for numbers too big for the fraction: leading
 * zeros and a decimal part's trailing zeros removed. */
static void add_plain_digits(qw_buf *out, const char *s, size_t n)
{
    qw_buf d = {0};
    for (size_t i = 0; i < n; i++) if (s[i] != ',') qw_buf_addc(&d, s[i]);
    const char *p = qw_buf_cstr(&d), *dot = strchr(p, '.');
    size_t e = d.n;
    if (dot) {
        while (e > (size_t)(dot - p) + 1 && p[e - 1] == '0') e--;
        if (p[e - 1] == '.') e--;
    }
    size_t b = 0;
    while (b + 1 < e && p[b] == '0' && p[b + 1] != '.') b++;
    qw_buf_add(out, p + b, e - b);
    qw_buf_free(&d);
}

/* s (white space removed) as a number, written to *out; 0 when it is not one. */
static int number_value(const char *s, size_t n, qw_buf *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    const char *a = NULL, *b = NULL;
    size_t an = 0, bn = 0;
    if (i + 6 <= n && !memcmp(s + i, "\\frac{", 6)) {
        size_t a0 = i + 6, ae = scan_plain(s, n, a0);
        if (ae == a0 || ae + 1 >= n || s[ae] != '}' || s[ae + 1] != '{') return 0;
        size_t be = scan_plain(s, n, ae + 2);
        if (be == ae + 2 || be + 1 != n || s[be] != '}') return 0;
        a = s + a0, an = ae - a0, b = s + ae + 2, bn = be - ae - 2;
    } else {
        size_t ae = scan_plain(s, n, i);
        if (ae == i) return 0;
        a = s + i, an = ae - i;
        if (ae < n) {
            if (s[ae] != '/') return 0;
            size_t be = scan_plain(s, n, ae + 1);
            if (be == ae + 1 || be != n) return 0;
            b = s + ae + 1, bn = be - ae - 1;
        }
    }
    i128 an_, ad, bn_ = 1, bd = 1;
    int ok = plain_value(a, an, &an_, &ad) && (!b || plain_value(b, bn, &bn_, &bd));
    if (ok && b && (bn_ == 0 || an_ > BIG / 100 / (bd ? bd : 1) || bn_ > BIG / 100 / (ad ? ad : 1))) ok = 0;
    if (!ok) {
        if (b) return 0;   /* a huge fraction: compared as text */
        if (neg) qw_buf_addc(out, '-');
        add_plain_digits(out, a, an);
        return 1;
    }
    i128 num = an_ * bd, den = ad * bn_;
    i128 g = gcd128(num, den);
    if (g > 1) num /= g, den /= g;
    if (neg && num != 0) qw_buf_addc(out, '-');
    add_i128(out, num);
    if (den != 1) {
        qw_buf_addc(out, '/');
        add_i128(out, den);
    }
    return 1;
}

int qw_math_normalize(const char *s, size_t n, qw_buf *out)
{
    qw_buf t = {0};
    qw_buf_add(&t, s, n);
    static const char *const pairs[][2] = {
        { "\xe2\x88\x92", "-" }, { "\\dfrac", "\\frac" }, { "\\tfrac", "\\frac" }, { "\\left", "" },
        { "\\right", "" }, { "\\displaystyle", "" }, { "\\!", "" }, { "\\,", "" }, { "\\;", "" }, { "\\:", "" },
        { "\\ ", "" }, { "\\$", "" }, { "\\%", "" }, { "$", "" }, { "%", "" }, { "^\\circ", "" },
        { "^{\\circ}", "" }, { "\\(", "" }, { "\\)", "" }, { "\\[", "" }, { "\\]", "" }, { NULL, NULL },
    };
    for (int i = 0; pairs[i][0]; i++) replace_all(&t, pairs[i][0], pairs[i][1]);
    /* a \text{…} unit goes; a lone \text{yes} keeps its content */
    qw_buf probe = {0};
    qw_buf_add(&probe, t.p, t.n);
    drop_groups(&probe, "\\text", 0);
    drop_groups(&probe, "\\mbox", 0);
    int only_text = 1;
    for (size_t i = 0; i < probe.n; i++) if (!isspace((unsigned char)probe.p[i])) only_text = 0;
    qw_buf_free(&probe);
    drop_groups(&t, "\\text", only_text);
    drop_groups(&t, "\\mbox", only_text);
    /* white space out */
    size_t w = 0;
    for (size_t i = 0; i < t.n; i++) if (!isspace((unsigned char)t.p[i])) t.p[w++] = t.p[i];
    t.n = w;
    while (t.n && t.p[t.n - 1] == '.') t.n--;
    /* a short "x =" in front */
    const char *eq = t.n ? memchr(t.p, '=', t.n) : NULL;
    if (eq && eq - t.p <= 2 && !memchr(eq + 1, '=', t.n - (size_t)(eq - t.p) - 1)) {
        size_t k = (size_t)(eq - t.p) + 1;
        memmove(t.p, t.p + k, t.n - k);
        t.n -= k;
    }
    int num = number_value(t.p ? t.p : "", t.n, out);
    if (!num) qw_buf_add(out, t.p, t.n);
    qw_buf_free(&t);
    return num;
}

int qw_math_equal(const char *a, size_t na, const char *b, size_t nb)
{
    qw_buf x = {0}, y = {0};
    qw_math_normalize(a, na, &x);
    qw_math_normalize(b, nb, &y);
    int eq = x.n == y.n && (x.n == 0 || !memcmp(x.p, y.p, x.n));
    qw_buf_free(&x);
    qw_buf_free(&y);
    return eq;
}

/* ---- think ---- */

int qw_think_format(const char *c)
{
    if (strncmp(c, "<think>", 7)) return 0;
    if (strstr(c + 7, "<think>")) return 0;
    return strstr(c + 7, "</think>") != NULL;
}

/* ---- code ---- */

const char *qw_code_verdict_name(qw_code_verdict v)
{
    static const char *const names[] = { "passed", "failed", "timeout", "error" };
    return v <= QW_CODE_ERROR ? names[v] : "error";
}

int qw_code_run(const qw_sandbox_opts *o, const char *prompt, const char *completion, const char *test,
                const char *entry_point, qw_code_result *r)
{
    memset(r, 0, sizeof *r);
    unsigned char rnd[17];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return qw_error(QW_EXIT_FAIL, "getrandom: %s", strerror(errno));
    char nonce[33];
    for (int i = 0; i < 16; i++) snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
    int fd = 3 + rnd[16] % 250;
    qw_buf p = {0};
    qw_buf_adds(&p, prompt);
    qw_buf_adds(&p, completion);
    qw_buf_adds(&p, "\n");
    qw_buf_adds(&p, test);
    qw_buf_adds(&p, "\ncheck(");
    qw_buf_adds(&p, entry_point);
    qw_buf_adds(&p, ")\n");
    char tail[128];
    snprintf(tail, sizeof tail, "import os as _qw_os\n_qw_os.write(%d, b'%s')\n", fd, nonce);
    qw_buf_adds(&p, tail);
    qw_sandbox_result sr;
    qw_sandbox_run(o, p.p, p.n, fd, &sr);
    qw_buf_free(&p);
    qw_buf out = {0};
    switch (sr.end) {
    case QW_RUN_EXITED:
        r->verdict = sr.exit_status == 0 && sr.term_signal == 0 && !strcmp(sr.marker, nonce) ? QW_CODE_PASSED
                                                                                              : QW_CODE_FAILED;
        break;
    case QW_RUN_TIMEOUT: r->verdict = QW_CODE_TIMEOUT; break;
    default: r->verdict = QW_CODE_ERROR; break;
    }
    if (sr.end == QW_RUN_ERROR || sr.end == QW_RUN_CANCELLED) {
        qw_buf_adds(&out, sr.end == QW_RUN_ERROR ? sr.error : "cancelled");
    } else {
        qw_buf_add(&out, sr.out, sr.out_len);
        if (sr.out_total > sr.out_len) {
            char note[96];
            snprintf(note, sizeof note, "\n[%zu more bytes of output not kept]", sr.out_total - sr.out_len);
            qw_buf_adds(&out, note);
        }
    }
    r->output = qw_strdup(qw_buf_cstr(&out));
    r->wall = sr.wall;
    qw_buf_free(&out);
    qw_sandbox_result_free(&sr);
    return 0;
}

void qw_code_result_free(qw_code_result *r)
{
    free(r->output);
    r->output = NULL;
}

/* ---- cmd: a coprocess ---- */

struct qw_coproc {
    pid_t pid;
    int in_fd, out_fd;
    qw_buf pending;           /* bytes read past the last reply */
    int status, reaped;
};

int qw_coproc_start(const char *cmd, qw_coproc **out)
{
    int in[2], outp[2];
    if (pipe2(in, O_CLOEXEC)) return qw_error(QW_EXIT_FAIL, "pipe: %s", strerror(errno));
    if (pipe2(outp, O_CLOEXEC)) {
        close(in[0]), close(in[1]);
        return qw_error(QW_EXIT_FAIL, "pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) return qw_error(QW_EXIT_FAIL, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        if (dup2(in[0], 0) < 0 || dup2(outp[1], 1) < 0) _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(in[0]);
    close(outp[1]);
    qw_coproc *c = qw_calloc(1, sizeof *c);
    c->pid = pid, c->in_fd = in[1], c->out_fd = outp[0];
    *out = c;
    return 0;
}

static void describe_end(qw_coproc *c, int wait_s, char *buf, size_t n)
{
    if (!c->reaped) {
        for (int i = 0; i < wait_s * 100; i++) {
            if (waitpid(c->pid, &c->status, WNOHANG) == c->pid) { c->reaped = 1; break; }
            usleep(10000);
        }
    }
    if (!c->reaped) snprintf(buf, n, "it is still running");
    else if (WIFEXITED(c->status)) snprintf(buf, n, "it exited with status %d", WEXITSTATUS(c->status));
    else snprintf(buf, n, "it was killed by signal %d", WTERMSIG(c->status));
}

int qw_coproc_ask(qw_coproc *c, const char *line, size_t len, double timeout_s, const char *where, qw_buf *reply)
{
    char why[96];
    /* write, with SIGPIPE held back: a dead reader is an error here, not a reason to die */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int bad = 0;
    for (int part = 0; part < 2 && !bad; part++) {
        const char *p = part ? "\n" : line;
        size_t left = part ? 1 : len;
        while (left) {
            ssize_t w = write(c->in_fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { bad = errno ? errno : EIO; break; }
            p += w, left -= (size_t)w;
        }
    }
    if (bad == EPIPE) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (bad) {
        describe_end(c, 2, why, sizeof why);
        return qw_error(QW_EXIT_DATA, "%s: the reward program stopped reading (%s): %s", where, strerror(bad), why);
    }
    double end = qw_now() + timeout_s;
    for (;;) {
        char *nl = c->pending.n ? memchr(c->pending.p, '\n', c->pending.n) : NULL;
        if (nl) {
            size_t k = (size_t)(nl - c->pending.p);
            qw_buf_add(reply, c->pending.p, k && nl[-1] == '\r' ? k - 1 : k);
            memmove(c->pending.p, nl + 1, c->pending.n - k - 1);
            c->pending.n -= k + 1;
            return 0;
        }
        double left = end - qw_now();
        if (left <= 0) {
            kill(-c->pid, SIGKILL);
            return qw_error(QW_EXIT_DATA, "%s: no reply from the reward program within %g s (it was killed)", where,
                            timeout_s);
        }
        struct pollfd pf = { c->out_fd, POLLIN, 0 };
        int pr = poll(&pf, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) return qw_error(QW_EXIT_FAIL, "poll: %s", strerror(errno));
        if (pr <= 0) continue;
        char buf[65536];
        ssize_t n = read(c->out_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            describe_end(c, 2, why, sizeof why);
            return qw_error(QW_EXIT_DATA, "%s: the reward program ended before replying (%s)", where, why);
        }
        qw_buf_add(&c->pending, buf, (size_t)n);
    }
}

void qw_coproc_end(qw_coproc *c)
{
    if (!c) return;
    close(c->in_fd);
    char why[96];
    describe_end(c, 5, why, sizeof why);
    kill(-c->pid, SIGKILL);
    if (!c->reaped) waitpid(c->pid, &c->status, 0);
    close(c->out_fd);
    qw_buf_free(&c->pending);
    free(c);
}
