/* signals.c — record SIGINT/SIGTERM for the training loop to poll. */
#include "qw/signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t got;

static void on_signal(int sig) { got = sig; }

void qw_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    got = 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int qw_signals_stop(void) { return got; }

int qw_signals_status(int sig) { return 128 + sig; }
