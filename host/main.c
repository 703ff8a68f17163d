/* luar: parses the command line and dispatches to host/cli. */
#include "cli/cli.h"

#include <signal.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* A supervisor's worker holds SIGHUP (a reload) until its handler is in place: the
     * default action would end a worker that is still loading its scripts when a reload
     * arrives. Blocked, the signal waits; serve unblocks it once the loop watches it. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--worker-id") == 0 || strncmp(argv[i], "--worker-id=", 12) == 0) {
            sigset_t hup;
            sigemptyset(&hup);
            sigaddset(&hup, SIGHUP);
            sigprocmask(SIG_BLOCK, &hup, NULL);
            break;
        }
    return luar_cli_main(argc, argv);
}
