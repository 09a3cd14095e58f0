/* test_signals.c — SIGTERM/SIGINT are recorded once, then take the default
 * action (checked in a child, which a second signal must kill); a stopped
 * run's status is 128 + the signal. */
#include "qwtest.h"
#include "qw/signals.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(first_signal_is_recorded)
{
    qw_signals_install();
    CHECK(qw_signals_stop() == 0);
    raise(SIGTERM);
    CHECK(qw_signals_stop() == SIGTERM);
    qw_signals_install();
    CHECK(qw_signals_stop() == 0);
    raise(SIGINT);
    CHECK(qw_signals_stop() == SIGINT);
}

TEST(second_signal_kills)
{
    pid_t pid = fork();
    if (pid == 0) {
        qw_signals_install();
        raise(SIGINT);
        if (qw_signals_stop() != SIGINT) _exit(3);
        raise(SIGINT);
        _exit(4);   /* not reached: the default action ends the process */
    }
    int ws;
    CHECK(waitpid(pid, &ws, 0) == pid);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGINT);
}

/* a stopped run exits as a program killed by the signal would */
TEST(stop_status)
{
    CHECK(qw_signals_status(SIGINT) == 130);
    CHECK(qw_signals_status(SIGTERM) == 143);
}

int main(void)
{
    PLAN(3);
    RUN(first_signal_is_recorded);
    RUN(second_signal_kills);
    RUN(stop_status);
    return qwtest_finish();
}
