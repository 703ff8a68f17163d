/* luar: parses the command line and dispatches to host/cli. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
    return luar_cli_main(argc, argv);
}
