/* qw/signals.h — stop a training run cleanly on SIGINT or SIGTERM.
 *
 * qw_signals_install sets handlers that only record the signal; the
 * training loop polls qw_signals_stop() between steps and, when it is
 * non-zero, saves a checkpoint and ends with the status
 * qw_signals_status(sig): 128 + the signal number (130 for SIGINT, 143
 * for SIGTERM), the status a shell reports for a program killed by that
 * signal.  A stopped run is unfinished, so it must not exit 0: make,
 * schedulers and scripts would take it for done (and start the next stage
 * from a partial one); they resume it with --resume instead.  The handler
 * is one-shot: a second SIGINT or SIGTERM takes the default action, so an
 * impatient user can still kill a run that is stuck.
 *
 * Under mpirun the signal reaches every rank, but not necessarily between
 * the same two steps: reduce the flag across ranks (qw_comm_allreduce_f64
 * of 0/1) each step so all ranks stop at the same step.
 *
 * Async-signal-safe; nothing here fails.
 */
#ifndef QW_SIGNALS_H
#define QW_SIGNALS_H

void qw_signals_install(void);
/* The signal received (SIGINT or SIGTERM) since install, or 0. */
int qw_signals_stop(void);
/* The exit status of a run stopped by signal sig after saving: 128 + sig. */
int qw_signals_status(int sig);

#endif
